"""The console's JSON API on a running `cascata up`: topology, status shared with `cascata
status`, the browsers, the failure inspector and its one write, and every refusal."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from cascata.local.emulator import external
from cascata.local.serve import UpOptions, status
from cascata.producer import Outgoing, produce
from payments.pipeline import PIPELINE
from tests.support.events import payment
from tests.support.up import running_up

pytestmark = pytest.mark.pipeline

STAGE = "consoleapi"
T = TypeVar("T")


def call(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, dict(response.headers), _json(raw)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), _json(exc.read())


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def get(url: str) -> Any:
    code, _, body = call("GET", url)
    assert code == 200, (url, code, body)
    return body


def post(url: str, value: Any) -> tuple[int, Any]:
    code, _, body = call("POST", url, json.dumps(value).encode(),
                         {"Content-Type": "application/json"})
    return code, body


def eventually(probe: Callable[[], T | None], *, timeout_s: float = 120,
               what: str = "the condition") -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout_s} s"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def up() -> Iterator[dict[str, Any]]:
    with running_up(UpOptions(port=0, api_port=0, stage=STAGE, console_port=0),
                    timeout_s=120) as endpoints:
        aws = external(endpoints["aws_endpoint_url"])
        raw = PIPELINE.physical_name("payments-raw", stage=STAGE)
        events = [Outgoing("alice", json.dumps(payment(f"c{i}", amount_minor=100)).encode())
                  for i in range(40)]
        events.append(Outgoing("mallory", json.dumps({"type": "payment.made"}).encode()))
        assert produce(aws.client("kinesis"), raw, events).sent == 41
        console = endpoints["console_url"]
        eventually(lambda: _settled(console), what="the pipeline settling")
        yield endpoints


def _settled(console: str) -> bool:
    now = get(f"{console}/api/status")
    balances = get(f"{console}/api/views/balances?key=bob")["items"]
    return (now["lag_records"] == 0 and now["quarantined"].get("validate") == 1
            and bool(balances) and balances[0]["balances"] == {"USD": 4000})


def test_the_topology_is_the_declaration(up: dict[str, Any]) -> None:
    overview = get(f"{up['console_url']}/api/overview")
    nodes = {n["id"]: n for n in overview["topology"]["nodes"]}
    assert {n["name"] for n in nodes.values() if n["kind"] == "processor"} == {
        p.name for p in PIPELINE.processors}
    for kind, declared in (("stream", PIPELINE.streams), ("table", PIPELINE.tables),
                           ("bucket", PIPELINE.buckets), ("topic", PIPELINE.topics),
                           ("scheduled", PIPELINE.scheduled), ("api", PIPELINE.apis)):
        assert {n["name"] for n in nodes.values() if n["kind"] == kind} == {
            d.name for d in declared}
    edges = {e["id"]: e for e in overview["topology"]["edges"]}
    assert all(e["from"] in nodes and e["to"] in nodes for e in edges.values())
    # profiles reads two streams; fraud-detect reads the profiles view; validate quarantines.
    assert edges["stream:customers->processor:profiles"]["kind"] == "source"
    assert edges["stream:payments-validated->processor:profiles"]["kind"] == "source"
    assert edges["table:profiles->processor:fraud-detect"]["kind"] == "read"
    assert edges["processor:validate->bucket:quarantine"]["kind"] == "write"
    assert edges["processor:balances->bucket:failures"]["kind"] == "on_failure"
    assert edges["archive:payments-raw->bucket:archive"]["kind"] == "write"
    assert overview["endpoints"]["console_url"] == up["console_url"]


def test_status_is_the_document_cascata_status_prints(up: dict[str, Any]) -> None:
    def same() -> bool:
        mine = get(f"{up['console_url']}/api/status")
        theirs = status(up["aws_endpoint_url"], stage=STAGE)
        for report in (mine, theirs):
            report.pop("report_age_s")
            for processor in report["processors"]:
                processor.pop("records_in_per_s")  # sampled at different moments
            for edge in report["edges"]:
                edge.pop("per_s")
        return mine == theirs

    # The status command reads the report `up` publishes every second: they agree once the
    # latest one is out.
    eventually(same, timeout_s=30, what="console and status agreeing")
    report = get(f"{up['console_url']}/api/status")
    mappings = {p["mapping"]: p for p in report["processors"]}
    assert mappings["validate/payments-raw"]["records_in"] == 41
    assert mappings["balances/ledger-entries"]["records_in"] == 80
    assert report["quarantined"]["validate"] == 1
    edges = {e["id"]: e for e in report["edges"]}
    assert edges["stream:payments-raw->processor:validate"]["records"] == 41
    assert edges["processor:validate->stream:payments-validated"]["records"] == 40
    assert edges["processor:validate->bucket:quarantine"]["records"] == 1
    assert edges["processor:postings->stream:ledger-entries"]["records"] == 80
    assert edges["table:profiles->processor:fraud-detect"]["records"] is None


def test_rates_follow_the_records_that_flow(up: dict[str, Any]) -> None:
    aws = external(up["aws_endpoint_url"])
    raw = PIPELINE.physical_name("payments-raw", stage=STAGE)

    def flowing() -> dict[str, Any] | None:
        produce(aws.client("kinesis"), raw, [
            Outgoing("carol", json.dumps(payment(f"r{time.monotonic_ns()}-{i}", payer="carol",
                                                 amount_minor=1)).encode()) for i in range(20)])
        edges = {e["id"]: e for e in get(f"{up['console_url']}/api/status")["edges"]}
        read = edges["stream:payments-raw->processor:validate"]
        wrote = edges["processor:validate->stream:payments-validated"]
        return edges if read["per_s"] > 0 and wrote["per_s"] > 0 else None

    eventually(flowing, timeout_s=60, what="rates above zero while records flow")


def test_the_stream_browser_shows_the_last_records_decoded(up: dict[str, Any]) -> None:
    console = up["console_url"]
    streams = {s["name"]: s for s in get(f"{console}/api/streams")["streams"]}
    assert set(streams) == {s.name for s in PIPELINE.streams}
    raw = streams["payments-raw"]
    busy = max(raw["shards"], key=lambda s: s["records"])
    answer = get(f"{console}/api/streams/payments-raw/records?shard={busy['id']}&limit=5")
    assert len(answer["records"]) == 5
    newest = answer["records"][0]
    assert newest["sequence"] == str(busy["records"]) or int(newest["sequence"]) >= 1
    assert [int(r["sequence"]) for r in answer["records"]] == sorted(
        (int(r["sequence"]) for r in answer["records"]), reverse=True)
    assert all(r["json"]["type"] for r in answer["records"] if "json" in r)
    code, _, body = call("GET", f"{console}/api/streams/payments-raw/records?shard=nope")
    assert code == 404 and "shardId-" in body["error"]
    code, _, body = call("GET", f"{console}/api/streams/nowhere/records")
    assert code == 404 and "payments-raw" in body["error"]
    code, _, body = call("GET", f"{console}/api/streams/payments-raw/records?limit=100000")
    assert code == 400 and "limit" in body["error"]


def test_the_view_browser_looks_up_and_pages(up: dict[str, Any]) -> None:
    console = up["console_url"]
    eventually(lambda: get(f"{console}/api/status")["lag_records"] == 0, what="a quiet pipeline")
    bob = get(f"{console}/api/views/balances?key=bob")
    assert bob["version"] == "v1" and bob["items"][0]["balances"]["USD"] >= 4000
    assert get(f"{console}/api/views/balances?key=nobody")["items"] == []
    # Paging through a table visits every item once.
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        url = f"{console}/api/views/profiles?limit=1"
        page = get(url + (f"&cursor={cursor}" if cursor else ""))
        seen += [item["customer_id"] for item in page["items"]]
        cursor = page["cursor"]
        if not cursor:
            break
    total = get(f"{console}/api/status")["views"]["profiles"]
    assert len(seen) == len(set(seen)) == total
    # A table with a sort key: the key's items, newest first.
    alerts = get(f"{console}/api/views/alerts-view?key=alice")
    assert alerts["items"] == sorted(alerts["items"], key=lambda i: i["alert_key"],
                                     reverse=True)
    for bad, status_code, words in (
            ("balances?cursor=bm90IGEga2V5", 400, "cursor"),
            ("balances?cursor=" + base64.urlsafe_b64encode(
                b'{"account_id":{"N":"1"}}').decode().rstrip("="), 400, "cursor"),
            ("balances?version=latest", 400, "version"),
            ("balances?key=bob&version=v7", 404, "v7"),
            ("nowhere?key=bob", 404, "balances"),
            ("balances?key=" + "x" * 2000, 400, "longer than"),
            ("balances?limit=0", 400, "limit")):
        code, _, body = call("GET", f"{console}/api/views/{bad}")
        assert code == status_code and words in body["error"], (bad, code, body)


def test_the_inspector_lists_a_quarantined_record_and_sends_a_fix_back(
        up: dict[str, Any]) -> None:
    console = up["console_url"]
    listing = get(f"{console}/api/failures?kind=quarantine")
    assert listing["total"] == 1
    entry = listing["entries"][0]
    assert entry["processor"] == "validate"
    assert entry["reason"]["field"] == "event_id" and entry["reason"]["code"] == "missing"
    assert entry["source"]["stream"] == "payments-raw"
    assert entry["records"][0]["partition_key"] == "mallory"
    assert entry["records"][0]["json"] == {"type": "payment.made"}
    assert get(f"{console}/api/failures?kind=quarantine&processor=balances")["total"] == 0
    # Refused: not JSON, not an object, a wrong record index, an id of no entry.
    for body, words in (({"id": entry["id"], "data": "{not json"}, "not JSON"),
                        ({"id": entry["id"], "data": "[1]"}, "JSON object"),
                        ({"id": entry["id"], "data": "{}", "record": 3}, "record 3"),
                        ({"id": "archive/payments/x.json", "data": "{}"}, "not a quarantine"),
                        ({"id": entry["id"], "data": "{}", "extra": 1}, "unknown field"),
                        ({"id": entry["id"], "data": 5}, "strings")):
        code, answer = post(f"{console}/api/failures/resend", body)
        assert code == 400 and words in answer["error"], (body, answer)
    # The fix: a valid payment from mallory to bob goes back to payments-raw.
    fixed = payment("fixed-1", payer="mallory", payee="bob", amount_minor=7)
    code, sent = post(f"{console}/api/failures/resend",
                      {"id": entry["id"], "data": json.dumps(fixed)})
    assert code == 200, sent
    assert sent["stream"] == "payments-raw" and sent["sequence"]
    eventually(lambda: get(f"{console}/api/views/balances?key=mallory")["items"],
               what="the fixed payment reaching the balances view")
    mallory = get(f"{console}/api/views/balances?key=mallory")["items"][0]
    assert mallory["balances"] == {"USD": -7}
    # Sent once: the entry says so, and a second send needs "again".
    assert get(f"{console}/api/failures/entry?id={entry['id']}")["resent"]["sequence"] == (
        sent["sequence"])
    [listed] = get(f"{console}/api/failures?kind=quarantine")["entries"]
    assert listed["resent"]["sequence"] == sent["sequence"]
    code, answer = post(f"{console}/api/failures/resend",
                        {"id": entry["id"], "data": json.dumps(fixed)})
    assert code == 409 and "again" in answer["error"]


def test_on_failure_records_are_listed_with_their_batch(up: dict[str, Any]) -> None:
    """An on-failure record as the event source mapping writes it to the failures bucket
    (`esm_destinations`): the inspector names the mapping, the condition and the records."""
    from cascata.local.esm_destinations import s3_failure_key

    console = up["console_url"]
    aws = external(up["aws_endpoint_url"])
    report = get(f"{console}/api/status")
    assert report["processors"]
    bucket = PIPELINE.physical_name("failures", stage=STAGE)
    stream = PIPELINE.physical_name("ledger-entries", stage=STAGE)
    uuid = _mapping_uuid(aws, "balances/ledger-entries")
    data = json.dumps({"event_id": "e1", "type": "ledger.entry"}).encode()
    arn = f"arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"
    body = {
        "requestContext": {"requestId": "r1", "functionArn": "arn:aws:lambda:x",
                           "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": "Unhandled"},
        "version": "1.0", "timestamp": "2026-12-04T10:00:00.000Z",
        "KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": "5",
                             "endSequenceNumber": "5", "batchSize": 1, "streamArn": arn},
        "payload": {"Records": [{"kinesis": {"data": base64.b64encode(data).decode(),
                                             "partitionKey": "alice", "sequenceNumber": "5",
                                             "approximateArrivalTimestamp": 1796378400.0},
                                 "eventSourceARN": arn}]},
    }
    key = s3_failure_key(uuid, "shardId-000000000000", time.time(), "u-1")
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    listing = get(f"{console}/api/failures?kind=on_failure")
    assert listing["total"] == 1
    entry = listing["entries"][0]
    assert entry["mapping"] == "balances/ledger-entries" and entry["processor"] == "balances"
    assert entry["reason"]["code"] == "RetryAttemptsExhausted"
    assert "6 invocation" in entry["reason"]["reason"]
    assert entry["source"] == {"stream": "ledger-entries", "shard": "shardId-000000000000",
                               "sequence": "5", "end_sequence": "5"}
    assert entry["records"][0]["json"] == {"event_id": "e1", "type": "ledger.entry"}
    assert get(f"{console}/api/failures?kind=on_failure&processor=validate")["total"] == 0


def _declared_length_only(console: str, length: int) -> int:
    """The status of a POST that announces `length` bytes and sends none."""
    import http.client

    host, port = console.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", "/api/failures/resend")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def _mapping_uuid(aws: Any, mapping: str) -> str:
    from cascata.local.runtime import STATUS_KEY

    bucket = PIPELINE.physical_name("failures", stage=STAGE)
    report = json.loads(aws.client("s3").get_object(Bucket=bucket, Key=STATUS_KEY)["Body"]
                        .read())
    return str(report["mappings"][mapping]["uuid"])


def test_versions_and_their_diff(up: dict[str, Any]) -> None:
    console = up["console_url"]
    answer = get(f"{console}/api/versions")
    assert answer["live"] == "v1" and answer["versions"][0]["version"] == "v1"
    same = get(f"{console}/api/versions/diff?a=v1&b=v1")
    assert same["total_differences"] == 0 and "balances" in same["views"]
    code, _, body = call("GET", f"{console}/api/versions/diff?a=v1&b=v9")
    assert code == 404 and "v9" in body["error"]
    code, _, body = call("GET", f"{console}/api/versions/diff?a=v1")
    assert code == 400 and "b is required" in body["error"]


def test_the_console_answers_this_machine_only_and_refuses_what_it_does_not_serve(
        up: dict[str, Any]) -> None:
    console = up["console_url"]
    code, headers, body = call("GET", f"{console}/")
    assert code == 200 and "cascata console" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert not any(h.lower().startswith("access-control-") for h in headers)
    assert call("GET", f"{console}/static/console.js")[0] == 200
    # Other origins and other host names (DNS rebinding) are refused before anything runs.
    port = console.rsplit(":", 1)[1]
    for headers_sent in ({"Origin": "http://evil.example"},
                         {"Host": f"evil.example:{port}"},
                         {"Origin": f"http://127.0.0.1:{int(port) + 1}"}):
        code, _, _ = call("POST", f"{console}/api/failures/resend", b"{}",
                          {"Content-Type": "application/json", **headers_sent})
        assert code == 403, headers_sent
        assert call("GET", f"{console}/api/status", headers=headers_sent)[0] == 403
    # The page's own origin may post.
    code, _, body = call("POST", f"{console}/api/failures/resend", b"{}",
                         {"Content-Type": "application/json", "Origin": console})
    assert code == 400 and "strings" in body["error"]
    # A form post (no preflight in a browser) is not JSON: refused.
    code, _, body = call("POST", f"{console}/api/failures/resend", b"id=x",
                         {"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 415
    assert _declared_length_only(console, 5 * 1024 * 1024) == 413
    assert call("GET", f"{console}/api/failures/resend")[0] == 405
    assert call("DELETE", f"{console}/api/status")[0] == 405
    assert call("GET", f"{console}/api/nothing")[0] == 404
    assert call("GET", f"{console}/static/../../etc/passwd")[0] == 404
    assert call("GET", f"{console}/api/status?x={'y' * 5000}")[0] == 414
    code, _, body = call("GET", f"{console}/api/failures?kind=everything")
    assert code == 400 and "quarantine or on_failure" in body["error"]


def test_an_unreadable_failure_entry_is_listed_not_a_server_error(up: dict[str, Any]) -> None:
    console = up["console_url"]
    aws = external(up["aws_endpoint_url"])
    bucket = PIPELINE.physical_name("quarantine", stage=STAGE)
    key = "quarantine/postings/2026/12/04/x/shardId-000000000000/00000000000000000009.json"
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"\xff not json")
    listing = get(f"{console}/api/failures?kind=quarantine&processor=postings")
    assert listing["total"] == 1
    assert listing["entries"][0]["reason"]["code"] == "unreadable"
    code, answer = post(f"{console}/api/failures/resend",
                        {"id": f"quarantine/{key}", "data": "{}"})
    assert code == 400 and "0 record" in answer["error"]
    aws.client("s3").delete_object(Bucket=bucket, Key=key)


def test_table_sizes_follow_the_version_readers_use(up: dict[str, Any]) -> None:
    """After a promote, the sizes on the status (and the console) are the live version's."""
    from cascata.local.observe import live_tables

    aws = external(up["aws_endpoint_url"])
    ddb = aws.client("dynamodb")
    names = {r: PIPELINE.physical_name(r, stage=STAGE) for r in PIPELINE.resources()}
    assert live_tables(PIPELINE, ddb, names, stage=STAGE, account=aws.account,
                       region=aws.region) == ("v1", names)
    v2 = PIPELINE.for_version("v2")
    copy = v2.physical_name("balances", stage=STAGE)
    ddb.create_table(TableName=copy, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "account_id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "account_id",
                                            "AttributeType": "S"}])
    ddb.put_item(TableName=copy, Item={"account_id": {"S": "only-in-v2"}})
    registry = names["versions"]
    ddb.put_item(TableName=registry, Item={"version": {"S": "@live"}, "live": {"S": "v2"}})
    try:
        live, tables = live_tables(PIPELINE, ddb, names, stage=STAGE, account=aws.account,
                                   region=aws.region)
        assert live == "v2" and tables["balances"] == copy
        assert tables["versions"] == registry  # the registry is not versioned
        report = get(f"{up['console_url']}/api/status")
        assert report["views_version"] == "v2" and report["views"]["balances"] == 1
        # Only balances was made for v2 here: the others are reported missing, not an error.
        assert report["views"]["profiles"] is None
        assert status(up["aws_endpoint_url"], stage=STAGE)["views"] == report["views"]
    finally:
        ddb.delete_item(TableName=registry, Key={"version": {"S": "@live"}})
