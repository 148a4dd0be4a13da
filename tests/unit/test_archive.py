"""The archive layout, the Firehose transformation and the republish order."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascata_runtime.archive import (
    RawRecord,
    archive_entry,
    declared_stream,
    decode_object,
    encode_object,
    firehose_transform,
    line_bytes,
    object_key,
)
from cascata_runtime.republish import (
    Bounds,
    RepublishState,
    cursor_of,
    put_in_order,
    requests,
)


def raw(data: bytes, *, arrival_ms: int = 1_764_064_800_000, seq: str = "42") -> RawRecord:
    return RawRecord("payments-raw", "shardId-000000000001", seq, "alice", arrival_ms, data)


EVENT = json.dumps({"event_id": "e1", "type": "payment.made", "version": 1, "key": "alice",
                    "occurred_at": "2026-11-02T09:15:00.123Z", "data": {}}).encode()


def test_an_event_is_partitioned_by_its_event_date_and_hour_and_keeps_its_bytes() -> None:
    entry = archive_entry(raw(EVENT))
    assert entry.partition.prefix == "events/stream=payments-raw/date=2026-11-02/hour=09/"
    assert entry.line["event_id"] == "e1" and entry.line["type"] == "payment.made"
    assert entry.line["shard_id"] == "shardId-000000000001"
    assert entry.line["sequence_number"] == "42"
    assert line_bytes(entry.line) == EVENT


@pytest.mark.parametrize(("data", "code"), [
    (b"not json", "not_json"),
    (b"[1, 2]", "not_object"),
    (b'{"occurred_at": "yesterday"}', "invalid_time"),
    (b'{"event_id": "x"}', "invalid_time"),
    (b"\xff\xfe", "not_utf8"),
])
def test_anything_else_goes_to_errors_by_arrival_time_with_the_reason(data: bytes,
                                                                      code: str) -> None:
    entry = archive_entry(raw(data, arrival_ms=1_764_064_800_000))  # 2025-11-25T10:00Z
    assert entry.partition.prefix == "errors/stream=payments-raw/date=2025-11-25/hour=10/"
    assert entry.line["error"]["code"] == code
    assert line_bytes(entry.line) == data


@given(st.binary(max_size=300))
def test_no_bytes_are_lost_or_changed(data: bytes) -> None:
    entry = archive_entry(raw(data))
    [line] = list(decode_object(encode_object([entry])))
    assert line_bytes(line) == data


def test_object_names_are_deterministic_so_a_retried_batch_overwrites() -> None:
    entry = archive_entry(raw(EVENT))
    assert object_key(entry.partition, "shardId-1", "10", "20") == object_key(
        entry.partition, "shardId-1", "10", "20")
    assert encode_object([entry]) == encode_object([entry])


def test_the_firehose_transformation_returns_partition_keys_and_never_fails() -> None:
    event = {
        "sourceKinesisStreamArn": "arn:aws:kinesis:eu-west-1:1:stream/cascata-prod-payments-raw",
        "records": [
            {"recordId": "1", "data": base64.b64encode(EVENT).decode(),
             "approximateArrivalTimestamp": 1_764_064_800_000,
             "kinesisRecordMetadata": {"shardId": "shardId-000000000000", "partitionKey": "alice",
                                       "sequenceNumber": "495", "approximateArrivalTimestamp":
                                       1_764_064_800_000}},
            {"recordId": "2", "data": base64.b64encode(b"junk").decode(),
             "approximateArrivalTimestamp": 1_764_064_800_000},
        ],
    }
    result = firehose_transform(event, stage="prod")
    first, second = result["records"]
    assert first["result"] == second["result"] == "Ok"
    assert first["metadata"]["partitionKeys"] == {
        "kind": "events", "stream": "payments-raw", "date": "2026-11-02", "hour": "09"}
    line = json.loads(base64.b64decode(first["data"]))
    assert line["sequence_number"] == "495" and line_bytes(line) == EVENT
    assert second["metadata"]["partitionKeys"]["kind"] == "errors"
    with pytest.raises(ValueError):
        firehose_transform({"no": "records"})
    named = firehose_transform(event, stream="customers")["records"][0]
    assert named["metadata"]["partitionKeys"]["stream"] == "customers"


def test_declared_stream_names_are_recovered_from_physical_ones() -> None:
    assert declared_stream("cascata-dev-customers", app="cascata", stage="dev") == "customers"
    assert declared_stream("other", app="cascata", stage="dev") == "other"


def line(key: str, arrival: int, seq: int, size: int = 10) -> dict[str, Any]:
    return {"stream": "payments-raw", "shard_id": "s", "sequence_number": str(seq),
            "partition_key": key, "arrival_ms": arrival, "data": "x" * size}


def test_a_request_never_holds_one_key_twice_and_keeps_the_order() -> None:
    lines = [line(k, i, i) for i, k in enumerate("aabcaab")]
    batches = list(requests(lines))
    assert [b for batch in batches for b in batch] == lines
    for batch in batches:
        keys = [b["partition_key"] for b in batch]
        assert len(keys) == len(set(keys))


def test_requests_respect_the_put_records_limits() -> None:
    lines = [line(f"k{i}", i, i) for i in range(1200)]
    assert [len(b) for b in requests(lines)] == [500, 500, 200]
    big = [line(f"k{i}", i, i, size=1_000_000) for i in range(9)]
    assert all(sum(len(b["data"]) for b in batch) <= 4 * 1024 * 1024
               for batch in requests(big))


class FlakyKinesis:
    def __init__(self, failures: list[set[int]],
                 code: str = "ProvisionedThroughputExceededException") -> None:
        self.failures = failures
        self.code = code
        self.stored: list[bytes] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        fail = self.failures.pop(0) if self.failures else set()
        out = []
        for i, record in enumerate(Records):
            if i in fail:
                out.append({"ErrorCode": self.code, "ErrorMessage": "slow down"})
            else:
                self.stored.append(record["Data"])
                out.append({"SequenceNumber": "1", "ShardId": "s"})
        return {"Records": out, "FailedRecordCount": len(fail)}


def test_throttled_entries_are_retried_until_stored() -> None:
    kinesis = FlakyKinesis([{0, 2}, {1}])
    batch = [line(k, i, i) for i, k in enumerate("abc")]
    put_in_order(kinesis, "s", batch, sleep=lambda s: None)
    assert sorted(kinesis.stored) == sorted(line_bytes(b) for b in batch)


def test_a_refused_entry_is_an_error_not_a_silent_loss() -> None:
    kinesis = FlakyKinesis([{0}], code="ValidationException")
    with pytest.raises(RuntimeError, match="refused"):
        put_in_order(kinesis, "s", [line("a", 1, 1)], sleep=lambda s: None)


def test_the_republish_state_survives_a_round_trip() -> None:
    state = RepublishState(cursors={"payments-raw": cursor_of(line("a", 5, 9)),
                                    "customers": None}, published=3)
    again = RepublishState.from_json(state.to_json())
    assert again == state and RepublishState.from_json(None) == RepublishState()


def test_bounds_are_half_open() -> None:
    bounds = Bounds(since_ms=10, until_ms=20)
    assert [bounds.holds(t) for t in (9, 10, 19, 20)] == [False, True, True, False]


def test_the_republish_lambda_works_in_invocations_and_marks_the_version_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    from moto import mock_aws

    from cascata.versions import Registry
    from cascata_runtime import republish as module
    from cascata_runtime.archive import group_by_partition

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="archive")
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName="raw-v2", ShardCount=1)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="versions", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "version", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "version",
                                                "AttributeType": "S"}])
        records = [raw(json.dumps({"occurred_at": "2026-11-02T09:00:00Z", "n": i}).encode(),
                       arrival_ms=1_764_064_800_000 + i, seq=str(100 + i)) for i in range(30)]
        for partition, entries in group_by_partition(archive_entry(r) for r in records).items():
            s3.put_object(Bucket="archive", Key=object_key(partition, "s", "100", "129"),
                          Body=encode_object(entries))
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("REPLAY_VERSION", "v2")
        monkeypatch.setenv("VERSIONS_TABLE", "versions")
        monkeypatch.setenv("ARCHIVE_BUCKET", "archive")
        monkeypatch.setenv("REPLAY_STREAMS", json.dumps({"payments-raw": "raw-v2"}))
        monkeypatch.setenv("REPLAY_UNTIL", "2030-01-01T00:00:00Z")

        class Context:
            def __init__(self, calls_left: int) -> None:
                self.calls = calls_left

            def get_remaining_time_in_millis(self) -> int:
                self.calls -= 1
                return 900_000 if self.calls >= 0 else 1_000

        # Time for two requests; one key throughout, so each request carries one record.
        first = module.handler({"version": "v2"}, Context(2))
        assert first == {"done": False, "published": 2}
        record = Registry(ddb, "versions").get("v2")
        assert record is not None and record.state == "building"
        second = module.handler({"version": "v2"}, Context(100))
        assert second == {"done": True, "published": 28}
        assert module.handler({"version": "v2"}, Context(100)) == {"done": True, "published": 0}
        record = Registry(ddb, "versions").get("v2")
        assert record is not None and record.state == "ready" and record.records == 30
        shard = kinesis.list_shards(StreamName="raw-v2")["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName="raw-v2", ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        stored = kinesis.get_records(ShardIterator=iterator)["Records"]
        assert [json.loads(r["Data"])["n"] for r in stored] == list(range(30))


def test_a_record_nested_too_deeply_to_parse_is_archived_as_an_error() -> None:
    entry = archive_entry(raw(b"[" * 5000))
    assert entry.partition.kind == "errors" and entry.line["error"]["code"] == "too_deep"
