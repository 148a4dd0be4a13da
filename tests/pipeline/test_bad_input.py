"""Bad input at every entry point, and what each gets: the table in docs/bad-input.md.

Every case here is a row of that table (a test checks they agree), tried for real: the ingest and
query APIs over HTTP on the local front, `cascata invoke` with event files, `cascata produce`
with JSONL files, and records put on every declared stream with every processor running. Each
gets a clear error or a quarantine entry with its reason; none crashes a batch, none sends a
batch to an on-failure destination, none loses the valid events beside it.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cascata.local.http import LocalHttpServer, serve
from cascata.testing import LocalPipeline
from payments.pipeline import PIPELINE
from tests.pipeline.bad_input_cases import CASES, case, deep
from tests.support.events import payment

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bad-input.md"


@pytest.fixture(scope="module")
def local() -> Iterator[LocalPipeline]:
    with LocalPipeline(PIPELINE, stage="badin") as running:
        yield running


@pytest.fixture(scope="module")
def front(local: LocalPipeline) -> Iterator[LocalHttpServer]:
    server = serve(dict(local.runtime.routes()), port=0, context=local.runtime.route_context)
    try:
        yield server
    finally:
        server.shutdown()


def call(front: LocalHttpServer, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(front.host, front.port, timeout=60)
    conn.request(method, path, body=body,
                 headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def events_body(*events: Any) -> bytes:
    return json.dumps(list(events)).encode()


# --- the ingest API (POST /events) ------------------------------------------------------------


@case("ingest API", "a body over 1 MiB", "413 `payload_too_large`")
@case("ingest API", "501 events in one request", "400 `too_many_events`")
@case("ingest API", "a body that is not JSON", "400 `malformed_json`")
@case("ingest API", "a body that is not UTF-8", "400 `malformed_json` (not UTF-8)")
@case("ingest API", "`NaN` or `Infinity` in the body", "400 `malformed_json`")
@case("ingest API", "a body nested over 512 levels", "400 `malformed_json` (too deep)")
@case("ingest API", "a content type other than JSON", "415 `unsupported_media_type`")
def test_the_ingest_api_refuses_a_body_it_cannot_read(front: LocalHttpServer) -> None:
    big = events_body(payment(note="x" * (1024 * 1024)))
    assert call(front, "POST", "/events", big)[0] == 413
    status, answer = call(front, "POST", "/events",
                          events_body(*[payment(f"e{i}") for i in range(501)]))
    assert (status, answer["error"]) == (400, "too_many_events")
    for body, fragment in ((b"[{not json", "not JSON"), (b'["\xff"]', "not UTF-8"),
                           (b'[{"a":NaN}]', "NaN"), (b"[" * 600 + b"]" * 600, "levels deep")):
        status, answer = call(front, "POST", "/events", body)
        assert (status, answer["error"]) == (400, "malformed_json"), body[:20]
        assert fragment in answer["message"]
    status, answer = call(front, "POST", "/events", events_body(payment("ct")),
                          {"Content-Type": "text/plain"})
    assert (status, answer["error"]) == (415, "unsupported_media_type")


@case("ingest API", "one event nested over 32 levels, beside valid ones",
      "207; that event `rejected` with `too_deep`, the others accepted")
@case("ingest API", "one event with a lone surrogate (`\"\\ud800\"`), beside valid ones",
      "207; that event `rejected` with `invalid_text`, the others accepted")
@case("ingest API", "one event dated year 0001, beside valid ones",
      "200; `validate` quarantines it with `event_time_too_early`")
def test_one_bad_event_does_not_cost_the_others(local: LocalPipeline,
                                                front: LocalHttpServer) -> None:
    good = [payment(f"ok-{i}", payer=f"good-{i}", amount_minor=100) for i in range(3)]
    nested = payment("nested", note=deep(500))
    body = json.dumps([good[0], nested, good[1]]).encode()
    body = body[:-1] + b',{"event_id":"lone","note":"\\ud800"},' + json.dumps(good[2]).encode() \
        + b"]"
    status, answer = call(front, "POST", "/events", body)
    assert status == 207
    verdicts = [(r["status"], r.get("code")) for r in answer["results"]]
    assert verdicts == [("accepted", None), ("rejected", "too_deep"), ("accepted", None),
                        ("rejected", "invalid_text"), ("accepted", None)]
    status, answer = call(front, "POST", "/events",
                          events_body(payment("ancient", occurred_at="0001-01-01T00:00:00Z")))
    assert status == 200
    local.drain()
    for i in range(3):
        balance = local.item("balances", account_id=f"good-{i}")
        assert balance is not None, f"good-{i}"
    [ancient] = [q for q in local.quarantined("validate")
                 if q.get("data_text") and '"ancient"' in q["data_text"]]
    assert ancient["reason"]["code"] == "event_time_too_early"


@case("ingest API", "an event with a 900 KB string in a field its schema does not know",
      "accepted; `validate` carries only the fields of its schema, so no view stores it")
def test_a_huge_unknown_field_goes_no_further_than_the_raw_stream(
    local: LocalPipeline, front: LocalHttpServer
) -> None:
    status, _ = call(front, "POST", "/events", events_body(
        payment("huge-note", payer="huge-payer", amount_minor=7, note="x" * 900_000)))
    assert status == 200
    local.drain()
    [validated] = [r for r in local.records("payments-validated")
                   if isinstance(r, dict) and r.get("key") == "huge-payer"]
    assert len(json.dumps(validated)) < 4096
    assert local.item("balances", account_id="huge-payer") is not None
    assert local.failures() == []


@case("ingest API", "a chunked body with a chunk size of `-1`", "400, at once")
@case("ingest API", "a request from a web page (a foreign `Origin`)", "403, no CORS headers")
@case("ingest API", "a request to a rebound DNS name (a foreign `Host`)", "403")
def test_the_front_refuses_what_no_local_program_sends(front: LocalHttpServer) -> None:
    with socket.create_connection((front.host, front.port), timeout=10) as sock:
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 400")
    assert call(front, "POST", "/events", events_body(payment("o")),
                {"Origin": "http://attacker.example"})[0] == 403
    assert call(front, "GET", "/accounts/alice", None,
                {"Host": "rebound.attacker.example"})[0] == 403


# --- the query API ----------------------------------------------------------------------------


@case("query API", "an account id shaped like an injection (`a' OR '1'='1`, `../x`, `%00`)",
      "400 `invalid_parameter` naming the id")
@case("query API", "a cursor that is not one the API returned (garbage, another account's, "
      "1,530 `[` in base64)", "400 `invalid_parameter` naming the cursor")
@case("query API", "`limit` of 0, -1, 10^9 or `1e3`", "400 `invalid_parameter` naming limit")
def test_the_query_api_refuses_bad_parameters(front: LocalHttpServer) -> None:
    for ident in ("a'%20OR%20'1'%3D'1", "..%2Fx", "%00", "x" * 65, "%F0%9F%98%80"):
        status, answer = call(front, "GET", f"/accounts/{ident}")
        assert (status, answer.get("parameter")) == (400, "id"), (ident, answer)
    other = base64.urlsafe_b64encode(json.dumps(
        {"account_id": "mallory", "alert_key": "2026"}).encode()).decode().rstrip("=")
    brackets = base64.urlsafe_b64encode(b"[" * 1530).decode().rstrip("=")
    for cursor in ("garbage!", other, brackets, "A" * 5000):
        status, answer = call(front, "GET", f"/accounts/alice/alerts?cursor={cursor}")
        assert (status, answer.get("parameter")) == (400, "cursor"), cursor[:20]
    for limit in ("0", "-1", "1000000000", "1e3"):
        status, answer = call(front, "GET", f"/accounts/alice/alerts?limit={limit}")
        assert (status, answer.get("parameter")) == (400, "limit"), limit


# --- records on every stream -------------------------------------------------------------------


BAD_RECORDS: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"{nope", "not_json"),
    "not UTF-8": (b'{"a":"\xff\xfe"}', "not_utf8"),
    "nested": (json.dumps({"event_id": "deep", "n": deep(40)}).encode(), "too_deep"),
    "lone surrogate": (b'{"event_id":"lone","n":"\\ud800"}', "invalid_text"),
    "an array": (b"[1,2]", "not_object"),
    "NaN": (b'{"a":NaN}', "not_json"),
}


@case("records on every stream", "not JSON, not UTF-8, nested over 32 levels, a lone "
      "surrogate, `NaN`, not an object",
      "each reading processor quarantines it with `not_json`, `not_utf8`, `too_deep`, "
      "`invalid_text` or `not_object`; the batch goes on")
@case("records on every stream", "a record of 1 MiB (Kinesis's limit), valid JSON but not an "
      "event", "quarantined with the envelope's reason (`missing`)")
def test_every_processor_quarantines_what_it_cannot_read(local: LocalPipeline) -> None:
    readers: dict[str, list[str]] = {}
    for processor in PIPELINE.processors:
        for source in processor.sources:
            readers.setdefault(source.stream, []).append(processor.name)
    key = "bad-input"
    padding = b'{"pad":"' + b"x" * (1024 * 1024 - 10 - len(key)) + b'"}'
    assert len(padding) + len(key) == 1024 * 1024  # Kinesis's limit: data and key together
    for stream in readers:
        payloads = [raw for raw, _ in BAD_RECORDS.values()] + [padding]
        local.produce(stream, payloads, key=key)
    local.drain()
    assert local.failures() == []
    quarantined = local.quarantined()
    for stream, processors in readers.items():
        physical = local.name(stream)
        for processor in processors:
            codes = sorted(q["reason"]["code"] for q in quarantined
                           if q["processor"] == processor and q["source"]["stream"] == physical
                           and q.get("partition_key") == key)
            want = sorted([code for _, code in BAD_RECORDS.values()] + ["missing"])
            assert codes == want, (stream, processor)
    for q in quarantined:
        assert q["data_base64"], q["reason"]  # what arrived is kept, whatever it was


# --- the table ---------------------------------------------------------------------------------


def test_the_docs_table_is_these_cases() -> None:
    rows = set()
    text = DOC.read_text(encoding="utf-8")
    for line in text[text.index("## What each bad input gets"):].splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 3 and not set(cells[0]) <= {"-", " "} and cells[0] != "Entry point":
            rows.add(tuple(c.replace("\\|", "|") for c in cells))
    from tests.local import test_endpoints_guard  # noqa: F401  (their rows register on import)
    from tests.pipeline import test_bad_input_cli, test_kpl  # noqa: F401

    wanted = {(c.entry, c.given, c.gets) for c in CASES}
    assert wanted - rows == set(), "rows missing from docs/bad-input.md"
    assert rows - wanted == set(), "rows in docs/bad-input.md that no test tries"
