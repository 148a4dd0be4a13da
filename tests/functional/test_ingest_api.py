"""The ingest API on moto: POST /events -> the raw stream, with a status per event.

Requests are API Gateway HTTP API v2 events; the raw stream is a moto Kinesis stream read back
shard by shard. Failures of PutRecords are injected in front of moto (which never fails an
entry by itself).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from cascata.local.http import serve
from cascata_runtime.emitter import KinesisSink
from payments.domain import ingest as domain
from payments.handlers import ingest
from payments.settings import IngestSettings
from tests.support.events import LambdaContext, http_event, payment
from tests.support.fakes import MemorySink

RAW = "cascata-test-payments-raw"
CTX = LambdaContext("cascata-test-ingest")
JSON = {"content-type": "application/json"}


class Raw:
    def __init__(self) -> None:
        self.kinesis = boto3.client("kinesis", region_name="us-east-1")
        self.kinesis.create_stream(StreamName=RAW, ShardCount=2)

    def records(self) -> list[dict[str, Any]]:
        out = []
        for shard in self.kinesis.list_shards(StreamName=RAW)["Shards"]:
            it = self.kinesis.get_shard_iterator(StreamName=RAW, ShardId=shard["ShardId"],
                                                 ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            for r in self.kinesis.get_records(ShardIterator=it, Limit=10_000)["Records"]:
                out.append({"key": r["PartitionKey"], "event": json.loads(r["Data"])})
        return out


@pytest.fixture
def raw() -> Iterator[Raw]:
    with mock_aws():
        yield Raw()


class FailingKinesis:
    """Fails the entries whose partition key is in `keys` (for `times` attempts, or always)."""

    def __init__(self, real: Any, keys: set[str], times: int | None = None) -> None:
        self.real = real
        self.keys = keys
        self.times = times
        self.calls = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        failing = self.times is None or self.calls <= self.times
        keep = [r for r in Records if not (failing and r["PartitionKey"] in self.keys)]
        written = iter(self.real.put_records(StreamName=StreamName, Records=keep)["Records"]
                       if keep else [])
        results = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
            if failing and r["PartitionKey"] in self.keys else next(written)
            for r in Records
        ]
        return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}


def handler_for(kinesis: Any = None, sink: Any = None) -> Any:
    return ingest.make_handler(ingest.Dependencies(
        raw_stream=RAW, sink=sink or KinesisSink(kinesis, sleep=lambda _s: None)
    ))


def post(body: Any, *, headers: dict[str, str] | None = None, is_base64: bool = False,
         method: str = "POST", path: str = "/events") -> dict[str, Any]:
    return http_event(method, path, route_key="$default" if path != "/events" or method != "POST"
                      else None, body=body, headers=JSON if headers is None else headers,
                      is_base64=is_base64)


def call(handle: Any, event: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    response = handle(event, CTX)
    assert response["headers"]["content-type"] == "application/json"
    assert "Traceback" not in response["body"]
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def test_valid_events_are_written_to_the_raw_stream_keyed_by_their_key(raw: Raw) -> None:
    # Given two payments, one carrying a field no schema knows yet
    events = [payment("e1"), payment("e2", payer="carol", currency="EUR", trace="t-1")]
    # When they are posted
    status, body, _ = call(handler_for(raw.kinesis), post(events))
    # Then both are accepted and on the stream as sent, keyed by payer
    assert status == 200
    assert body == {"accepted": 2, "rejected": 0, "results": [
        {"index": 0, "event_id": "e1", "status": "accepted", "reason": None},
        {"index": 1, "event_id": "e2", "status": "accepted", "reason": None},
    ]}
    written = {r["event"]["event_id"]: r for r in raw.records()}
    assert written["e2"]["key"] == "carol"
    assert written["e2"]["event"] == events[1]
    assert written["e1"]["event"] == events[0]


def test_events_with_a_bad_envelope_are_rejected_one_by_one_with_a_207(raw: Raw) -> None:
    # Given a valid event between an envelope without event_id, a non-object and a bad time
    events: list[Any] = [
        {k: v for k, v in payment("x").items() if k != "event_id"},
        payment("ok"),
        "not an object",
        payment("late", occurred_at="yesterday"),
    ]
    # When they are posted
    status, body, _ = call(handler_for(raw.kinesis), post(events))
    # Then the valid one is written and each other is rejected with its field and code
    assert status == 207
    assert body["accepted"] == 1 and body["rejected"] == 3
    by_index = {r["index"]: r for r in body["results"]}
    assert by_index[0] | {"reason": "-"} == {"index": 0, "event_id": None, "status": "rejected",
                                             "reason": "-", "code": "missing",
                                             "field": "event_id"}
    assert by_index[1]["status"] == "accepted"
    assert by_index[2]["code"] == "not_object"
    assert (by_index[3]["event_id"], by_index[3]["field"]) == ("late", "occurred_at")
    assert [r["event"]["event_id"] for r in raw.records()] == ["ok"]


def test_a_data_error_is_left_to_validate_and_its_quarantine(raw: Raw) -> None:
    # Given a well-formed envelope whose amount is a float
    status, _, _ = call(handler_for(raw.kinesis), post([payment("f", amount_minor=1.5)]))
    # Then ingest accepts it (validate quarantines it with the reason)
    assert status == 200
    assert raw.records()[0]["event"]["data"]["amount_minor"] == 1.5


def test_the_same_event_id_twice_in_a_request_is_written_once(raw: Raw) -> None:
    events = [payment("d1"), payment("d2"), payment("d1")]
    status, body, _ = call(handler_for(raw.kinesis), post(events))
    assert status == 200
    assert body["results"][2] == {"index": 2, "event_id": "d1", "status": "accepted",
                                  "reason": "same event_id as index 0; written once"}
    assert sorted(r["event"]["event_id"] for r in raw.records()) == ["d1", "d2"]


@pytest.mark.parametrize(("body", "code"), [
    ('[{"event_id": "e1",', "malformed_json"),
    ("[NaN]", "malformed_json"),
    ("", "malformed_json"),
    ('{"events": []}', "not_an_array"),
    ('"text"', "not_an_array"),
    ("[]", "empty_batch"),
])
def test_a_body_that_is_not_a_json_array_of_events_is_a_400(
    raw: Raw, body: str, code: str
) -> None:
    status, answer, _ = call(handler_for(raw.kinesis), post(body))
    assert status == 400
    assert answer["error"] == code
    assert raw.records() == []


def test_a_body_that_is_not_utf8_is_a_400(raw: Raw) -> None:
    body = "[\"caf\u00e9\"]".encode("latin-1")
    status, answer, _ = call(handler_for(raw.kinesis), post(body, is_base64=True))
    assert status == 400 and answer["error"] == "malformed_json"
    event = post("", is_base64=True) | {"body": "%%%not base64"}
    status, answer, _ = call(handler_for(raw.kinesis), event)
    assert status == 400 and answer["error"] == "invalid_body"


def test_up_to_500_events_are_accepted_and_501_refused(raw: Raw) -> None:
    handle = handler_for(raw.kinesis)
    status, body, _ = call(handle, post([payment(f"p{i}") for i in range(501)]))
    assert status == 400 and body["error"] == "too_many_events"
    assert raw.records() == []
    status, body, _ = call(handle, post([payment(f"p{i}") for i in range(500)]))
    assert status == 200 and body["accepted"] == 500
    assert len(raw.records()) == 500


def _padded(size: int) -> str:
    """A valid array of one event padded with spaces to exactly `size` bytes."""
    text = json.dumps([payment("big")])
    return text[:-1] + " " * (size - len(text)) + "]"


def test_a_body_of_exactly_1_mib_is_accepted_and_one_byte_more_is_a_413(raw: Raw) -> None:
    handle = handler_for(raw.kinesis)
    status, _, _ = call(handle, post(_padded(domain.MAX_BODY_BYTES)))
    assert status == 200
    status, body, _ = call(handle, post(_padded(domain.MAX_BODY_BYTES + 1)))
    assert status == 413 and body["error"] == "payload_too_large"
    assert len(raw.records()) == 1


def test_the_size_limit_applies_to_the_decoded_body_when_base64_encoded(raw: Raw) -> None:
    handle = handler_for(raw.kinesis)
    # 1 MiB decoded is about 1.33 MiB encoded: still accepted
    status, _, _ = call(handle, post(_padded(domain.MAX_BODY_BYTES), is_base64=True))
    assert status == 200
    status, _, _ = call(handle, post(_padded(domain.MAX_BODY_BYTES + 1), is_base64=True))
    assert status == 413
    status, _, _ = call(handle, post(_padded(3 * domain.MAX_BODY_BYTES), is_base64=True))
    assert status == 413


def test_a_multibyte_body_is_measured_in_bytes(raw: Raw) -> None:
    # 300k characters of 4 bytes each: 1.2 MB, though under a million characters
    body = json.dumps([payment("m", note="\U0001f4b6" * 300_000)], ensure_ascii=False)
    assert len(body) < domain.MAX_BODY_BYTES < len(body.encode())
    status, _, _ = call(handler_for(raw.kinesis), post(body))
    assert status == 413


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1",
    "application/jsonx",
])
def test_a_content_type_that_is_not_json_is_a_415(raw: Raw, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    status, body, _ = call(handler_for(raw.kinesis), post([payment("c")], headers=headers))
    assert status == 415 and body["error"] == "unsupported_media_type"
    assert raw.records() == []


@pytest.mark.parametrize("content_type", [
    "application/json", "Application/JSON; charset=UTF-8", "application/cloudevents-batch+json",
])
def test_json_content_types_are_accepted(raw: Raw, content_type: str) -> None:
    status, _, _ = call(handler_for(raw.kinesis),
                        post([payment("c")], headers={"Content-Type": content_type}))
    assert status == 200


def test_events_the_stream_refuses_after_retries_are_a_503_to_resend(raw: Raw) -> None:
    # Given a stream that keeps refusing bob's records (his shard is hot)
    kinesis = FailingKinesis(raw.kinesis, keys={"bob"})
    events = [payment("a1"), payment("b1", payer="bob", payee="alice"), payment("a2")]
    # When they are posted
    status, body, headers = call(handler_for(kinesis), post(events))
    # Then the others are written, bob's is rejected "not written, retry" and it is a 503
    assert status == 503 and headers["retry-after"] == "1"
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted"]
    assert body["results"][1]["reason"] == "not written, retry"
    assert body["results"][1]["code"] == "not_written"
    assert kinesis.calls == 6  # the sink retried the failed entry before giving up
    assert sorted(r["event"]["event_id"] for r in raw.records()) == ["a1", "a2"]
    # And resending just the rejected one once the shard cooled down succeeds
    kinesis.keys.clear()
    status, _, _ = call(handler_for(kinesis), post([events[1]]))
    assert status == 200
    assert sorted(r["event"]["event_id"] for r in raw.records()) == ["a1", "a2", "b1"]


def test_a_transient_partial_failure_is_retried_and_answered_200(raw: Raw) -> None:
    kinesis = FailingKinesis(raw.kinesis, keys={"alice"}, times=2)
    status, body, _ = call(handler_for(kinesis), post([payment("a1"), payment("a2")]))
    assert status == 200 and body["accepted"] == 2
    assert sorted(r["event"]["event_id"] for r in raw.records()) == ["a1", "a2"]


def test_a_duplicate_shares_the_fate_of_the_event_it_repeats(raw: Raw) -> None:
    kinesis = FailingKinesis(raw.kinesis, keys={"alice"})
    status, body, _ = call(handler_for(kinesis), post([payment("a1"), payment("a1")]))
    assert status == 503
    assert [r["status"] for r in body["results"]] == ["rejected", "rejected"]


def test_a_stream_that_cannot_be_reached_rejects_every_event_with_a_503(raw: Raw) -> None:
    class Down:
        def emit(self, stream: str, records: Any) -> Any:
            raise ConnectionError("no route to host")

    status, body, _ = call(handler_for(sink=Down()), post([payment("a"), {"bad": 1}]))
    assert status == 503
    assert [(r["status"], r["code"]) for r in body["results"]] == [
        ("rejected", "not_written"), ("rejected", "missing")
    ]


def test_a_missing_stream_is_a_503_not_a_stack_trace(raw: Raw) -> None:
    handle = ingest.make_handler(ingest.Dependencies(
        raw_stream="no-such-stream", sink=KinesisSink(raw.kinesis, sleep=lambda _s: None)))
    status, body, _ = call(handle, post([payment("a")]))
    assert status == 503
    assert body["results"][0]["reason"] == "not written, retry"


def test_an_unknown_route_is_a_404_and_a_get_on_events_a_405(raw: Raw) -> None:
    handle = handler_for(raw.kinesis)
    status, body, _ = call(handle, post([payment("a")], path="/event"))
    assert status == 404 and body["error"] == "not_found"
    status, body, headers = call(handle, post(None, method="GET"))
    assert status == 405 and headers["allow"] == "POST"


def test_dependencies_write_to_the_stream_named_in_the_settings(raw: Raw) -> None:
    deps = ingest.dependencies(IngestSettings(raw_stream=RAW, stage="test"),
                               client=lambda _s: raw.kinesis)
    status, _, _ = call(ingest.make_handler(deps), post([payment("s")]))
    assert status == 200 and len(raw.records()) == 1


def test_ingest_behind_the_local_http_front(raw: Raw) -> None:
    # Given the ingest function served by the local front, as `cascata up` serves it
    server = serve({"POST /events": handler_for(raw.kinesis)}, port=0)
    try:
        # When a producer posts over HTTP
        request = urllib.request.Request(
            f"{server.url}/events", method="POST", headers=JSON,
            data=json.dumps([payment("h1"), {"event_id": "bad"}]).encode())
        with urllib.request.urlopen(request, timeout=10) as answer:
            # Then the answer is the handler's 207, and the valid event is on the stream
            assert answer.status == 207
            assert answer.headers["content-type"] == "application/json"
            body = json.loads(answer.read())
        assert [r["status"] for r in body["results"]] == ["accepted", "rejected"]
        assert [r["event"]["event_id"] for r in raw.records()] == ["h1"]
        # And a body over 1 MiB is refused by the function, not by the 10 MB front
        big = urllib.request.Request(f"{server.url}/events", method="POST", headers=JSON,
                                     data=_padded(domain.MAX_BODY_BYTES + 10).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(big, timeout=10)
        assert refused.value.code == 413
        assert json.loads(refused.value.read())["error"] == "payload_too_large"
    finally:
        server.shutdown()


# --------------------------------------------------------------------------------------------
# Property: every element gets exactly one status, and exactly the accepted ones are written

_element = st.one_of(
    st.builds(lambda i, key: payment(f"id{i}", payer=key),
              st.integers(0, 15), st.sampled_from(["alice", "bob", "carol"])),
    st.builds(lambda i: {k: v for k, v in payment(f"id{i}").items() if k != "key"},
              st.integers(0, 15)),
    st.none() | st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@given(st.lists(_element, min_size=1, max_size=40), st.sets(st.integers(0, 39), max_size=5))
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_event_gets_one_status_and_only_accepted_ones_are_written(
    events: list[Any], failing: set[int]
) -> None:
    sink = MemorySink()
    sink.fail_tags = failing
    status, body, _ = call(handler_for(sink=sink), post(events))
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(events)))
    written = [json.loads(r.data) for r in sink.records.get(RAW, [])]
    written_ids = [e["event_id"] for e in written]
    # each event id is written at most once per request
    assert len(written_ids) == len(set(written_ids))
    accepted_ids = {r["event_id"] for r in results if r["status"] == "accepted"}
    assert accepted_ids == set(written_ids)
    assert body["accepted"] + body["rejected"] == len(events)
    not_written = any(r.get("code") == "not_written" for r in results)
    assert status == (503 if not_written else 200 if body["rejected"] == 0 else 207)
    for r in results:
        assert (r["status"] == "accepted") == (r.get("code") is None)


def test_a_base64_encoded_body_is_decoded_before_parsing() -> None:
    sink = MemorySink()
    status, body, _ = call(handler_for(sink=sink),
                           post(json.dumps([payment("b")]).encode(), is_base64=True))
    assert status == 200 and body["accepted"] == 1
    assert json.loads(sink.records[RAW][0].data)["event_id"] == "b"
