"""KPL-aggregated records and undecodable records through real handlers on moto.

A producer using the KPL (or aws-kinesis-agg) packs several events into one Kinesis record;
validate must see each one, the origin gate must treat a retried aggregate as copies, a failed
user record must retry its aggregate, and anything unreadable is quarantined with its bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from cascata_runtime.adapters import DynamoItemStore, S3ObjectStore
from cascata_runtime.envelope import SourcePosition
from cascata_runtime.lineage import Fences, input_lineages, parse_lineage
from payments.handlers import profiles
from tests.functional.conftest import BUCKET, RAW, VALIDATED, Aws
from tests.functional.test_validate import CTX, FailingEntries, gated_handler, handler_for
from tests.support.events import (
    LambdaContext,
    customer_registered,
    customer_updated,
    kinesis_event,
    payment,
)
from tests.support.kpl import MAGIC, aggregate_events, length_delimited, sealed, user_record

THREE = [payment("p1", payer="alice", payee="bob"), payment("p2", payer="bob", payee="carol"),
         payment("p3", payer="carol", payee="alice")]


def test_three_payments_in_one_aggregate_reach_the_validated_stream(aws: Aws) -> None:
    # Given one Kinesis record (sequence 5) aggregating three valid payments
    event = kinesis_event([aggregate_events(THREE)], start=5, keys=["agg-key"])
    # When validate runs
    assert handler_for(aws)(event, CTX) == {"batchItemFailures": []}
    # Then three events are on the validated stream, each under its own payer
    out = {r["event"]["event_id"]: r for r in aws.stream_records(VALIDATED)}
    assert {i: r["key"] for i, r in out.items()} == {"p1": "alice", "p2": "bob", "p3": "carol"}
    # And each names its own place in the aggregate
    for sub, event_id in enumerate(("p1", "p2", "p3")):
        assert out[event_id]["event"]["causation"] == {
            "stream": RAW, "shard": "shardId-000000000000", "sequence": "5",
            "subsequence": str(sub)}
    assert aws.quarantined() == []


def test_a_retried_aggregate_is_suppressed_exactly(aws: Aws) -> None:
    # Given the origin gate on, and a producer that put the same aggregate twice
    handle = gated_handler(aws)
    blob = aggregate_events(THREE)
    assert handle(kinesis_event([blob, payment("p4")]), CTX) == {"batchItemFailures": []}
    assert handle(kinesis_event([blob], start=7), CTX) == {"batchItemFailures": []}
    # Then each payment is on the validated stream once
    assert sorted(r["event"]["event_id"] for r in aws.stream_records(VALIDATED)) == [
        "p1", "p2", "p3", "p4"]


def test_a_failed_user_record_retries_its_aggregate_and_the_others_are_copies(
    aws: Aws
) -> None:
    # Given PutRecords keeps failing for bob's payments, the second of the aggregate
    kinesis = FailingEntries(aws.kinesis, {"bob"})
    event = kinesis_event([payment("p0", payer="dan"), aggregate_events(THREE),
                           payment("p4", payer="erin")], start=3)
    # When validate runs
    response = handler_for(aws, kinesis)(event, CTX)
    # Then the response names the aggregate's Kinesis record, once
    assert response == {"batchItemFailures": [{"itemIdentifier": "4"}]}
    first = {r["event"]["event_id"]: r["event"] for r in aws.stream_records(VALIDATED)}
    assert sorted(first) == ["p0", "p1", "p3", "p4"]
    # When Lambda retries from the aggregate and PutRecords works again
    assert handler_for(aws)({"Records": event["Records"][1:]}, CTX) == {
        "batchItemFailures": []}
    out = aws.stream_records(VALIDATED)
    assert sorted(r["event"]["event_id"] for r in out) == [
        "p0", "p1", "p1", "p2", "p3", "p3", "p4", "p4"]
    # Then a consumer's fences (one item seeing everything) admit every payment once: the
    # copies carry the lineage of the first emission, subsequence included
    lineages = input_lineages(
        [SourcePosition(VALIDATED, r["shard"], "1") for r in out],
        [parse_lineage(r["event"]["lineage"]) for r in out])
    fences = Fences()
    admitted = [r["event"]["event_id"] for r, lineage in zip(out, lineages, strict=True)
                if fences.admit(lineage)]
    assert sorted(admitted) == ["p0", "p1", "p2", "p3", "p4"]


MALFORMED = {
    "bad_digest": aggregate_events(THREE)[:-1] + b"\x00",
    "truncated": sealed(length_delimited(1, b"k") + length_delimited(3, user_record(0, b"x"))
                        [:-1]),
    "varint_overflow": sealed(length_delimited(1, b"k") + b"\x1a\x0b\x08"
                              + b"\xff" * 9 + b"\x02"),
    "key_index_out_of_table": sealed(length_delimited(1, b"k")
                                     + length_delimited(3, user_record(3, b"x"))),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_aggregate_is_quarantined_with_its_reason_and_bytes(
    aws: Aws, name: str
) -> None:
    blob = MALFORMED[name]
    assert blob.startswith(MAGIC)
    event = kinesis_event([blob, payment("ok")])
    assert handler_for(aws)(event, CTX) == {"batchItemFailures": []}
    [entry] = aws.quarantined()
    assert entry["reason"]["code"] == "kpl_malformed"
    assert "cannot be taken apart" in entry["reason"]["reason"]
    assert base64.b64decode(entry["data_base64"]) == blob
    assert entry["source"] == {"stream": RAW, "shard": "shardId-000000000000", "sequence": "1"}
    assert [r["event"]["event_id"] for r in aws.stream_records(VALIDATED)] == ["ok"]


def test_an_aggregate_with_one_bad_event_quarantines_that_event_only(aws: Aws) -> None:
    blob = aggregate_events([THREE[0], payment("bad", currency="ZZZ"), THREE[2]])
    assert handler_for(aws)(kinesis_event([blob], start=9), CTX) == {"batchItemFailures": []}
    [entry] = aws.quarantined()
    assert entry["source"]["subsequence"] == "1"
    assert entry["_key"].endswith("/00000000000000000009-000001.json")
    assert json.loads(entry["data_text"])["event_id"] == "bad"
    assert sorted(r["event"]["event_id"] for r in aws.stream_records(VALIDATED)) == ["p1", "p3"]


def test_invalid_base64_is_quarantined_with_what_arrived(aws: Aws) -> None:
    event = kinesis_event([payment("ok"), payment("x")])
    event["Records"][1]["kinesis"]["data"] = "{not base64}"
    assert handler_for(aws)(event, CTX) == {"batchItemFailures": []}
    [entry] = aws.quarantined()
    assert entry["reason"]["code"] == "undecodable"
    assert "not valid base64" in entry["reason"]["reason"]
    assert entry["data_text"] == "{not base64}"
    assert base64.b64decode(entry["data_base64"]) == b"{not base64}"


PROFILES = "cascata-test-profiles"


@pytest.fixture
def profiles_table(aws: Aws) -> Iterator[str]:
    aws.dynamodb.create_table(
        TableName=PROFILES,
        KeySchema=[{"AttributeName": "customer_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "customer_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield PROFILES


def test_a_stateful_consumer_of_an_aggregate_applies_every_user_record(
    aws: Aws, profiles_table: str
) -> None:
    # Given a registration and an update of the same customer in one aggregate, read
    # straight from the customers stream by profiles (the same item, origin sequence and part)
    blob = aggregate_events([
        customer_registered("r1", customer_id="alice", tier="basic"),
        customer_updated("u1", customer_id="alice", tier="premium"),
    ])
    items = DynamoItemStore(aws.dynamodb, profiles_table, key="customer_id")
    handle = profiles.make_handler(profiles.Dependencies(
        quarantine_bucket=BUCKET, items=items, objects=S3ObjectStore(aws.s3)))
    event = kinesis_event([blob], stream="cascata-test-customers")
    ctx = LambdaContext("cascata-test-profiles")
    # When profiles runs, and the batch is delivered again
    assert handle(event, ctx) == {"batchItemFailures": []}
    writes = items.write_requests
    assert handle(event, ctx) == {"batchItemFailures": []}
    # Then both were applied, once
    item = aws.dynamodb.get_item(TableName=profiles_table,
                                 Key={"customer_id": {"S": "alice"}})["Item"]
    assert item["tier"]["S"] == "premium" and item["name"]["S"] == "Alice Liddell"
    assert items.write_requests == writes
