"""windows and windows-close on moto: panes, lateness, closing without rewriting items.

Each test provisions its own activity-view table (no index: closers find panes through the due
lists), the validated, activity and activity-late streams and the quarantine bucket, and runs
the handlers on Kinesis events shaped exactly as Lambda delivers them, with injected clocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cascata_runtime.adapters import S3ObjectStore
from cascata_runtime.emitter import KinesisSink
from payments import adapters, windowing
from payments.domain.windows import WindowConfig, closed_event_id, read_watermark
from payments.handlers import windows, windows_close
from tests.support.events import (
    LambdaContext,
    derived,
    kinesis_event,
    payment,
    scheduled_event,
)

CONFIG = WindowConfig()
VALIDATED = "cascata-test-payments-validated"
ACTIVITY = "cascata-test-activity"
LATE = "cascata-test-activity-late"
TABLE = "cascata-test-activity-view"
BUCKET = "cascata-test-quarantine"
CTX = LambdaContext("cascata-test-windows")
CLOSE_CTX = LambdaContext("cascata-test-windows-close")
NOW = datetime(2020, 6, 25, 14, 30, tzinfo=UTC).timestamp()


@dataclass
class Env:
    kinesis: Any
    s3: Any
    dynamodb: Any

    def store(self) -> adapters.DynamoWindowStore:
        return adapters.DynamoWindowStore(self.dynamodb, TABLE)

    def processor(self, *, now: float = NOW) -> Any:
        return windows.make_handler(windowing.WindowsDependencies(
            activity_stream=ACTIVITY, late_stream=LATE, quarantine_bucket=BUCKET,
            store=self.store(), sink=KinesisSink(self.kinesis, sleep=lambda _s: None),
            objects=S3ObjectStore(self.s3), now=lambda: now, config=CONFIG,
        ))

    def close(self, now: float) -> dict[str, Any]:
        closer = windows_close.make_handler(windowing.CloseDependencies(
            activity_stream=ACTIVITY, store=self.store(),
            sink=KinesisSink(self.kinesis, sleep=lambda _s: None),
            tip=adapters.KinesisShardTip(self.kinesis), now=lambda: now, config=CONFIG,
        ))
        summary: dict[str, Any] = closer(scheduled_event(), CLOSE_CTX)
        return summary

    def items(self) -> dict[tuple[str, str], dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        out = {}
        for raw in self.dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]:
            item = {k: des.deserialize(v) for k, v in raw.items()}
            out[(str(item["account_id"]), str(item["window_key"]))] = item
        return out

    def stream(self, name: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for shard in self.kinesis.list_shards(StreamName=name)["Shards"]:
            it = self.kinesis.get_shard_iterator(
                StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            out.extend(json.loads(r["Data"])
                       for r in self.kinesis.get_records(ShardIterator=it, Limit=10_000)[
                           "Records"])
        return out

    def send(self, payments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Put the payments on the validated stream and return them as Lambda delivers them."""
        records = []
        for p in payments:
            put = self.kinesis.put_record(StreamName=VALIDATED, Data=json.dumps(p).encode(),
                                          PartitionKey=str(p["key"]))
            records.append(int(put["SequenceNumber"]))
        event = kinesis_event(payments, stream=VALIDATED, start=records[0])
        for record, sequence in zip(event["Records"], records, strict=True):
            record["kinesis"]["sequenceNumber"] = str(sequence)
            record["kinesis"]["approximateArrivalTimestamp"] = NOW
        return event


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        for name in (VALIDATED, ACTIVITY, LATE):
            kinesis.create_stream(StreamName=name, ShardCount=1)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "account_id", "KeyType": "HASH"},
                       {"AttributeName": "window_key", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                                  for n in ("account_id", "window_key")],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Env(kinesis=kinesis, s3=s3, dynamodb=ddb)


def pay(event_id: str, hms: str, **kwargs: Any) -> dict[str, Any]:
    return payment(event_id, occurred_at=f"2020-06-25T{hms}Z", **kwargs)


def test_a_payment_is_one_pane_item_per_account_and_nothing_is_final_yet(env: Env) -> None:
    # Given one payment of 200.00 USD from alice to bob at 14:06:10
    # When windows processes it
    response = env.processor()(env.send([pay("p1", "14:06:10")]), CTX)
    # Then alice and bob each have one pane item: `out` for alice, `in` for bob
    assert response == {"batchItemFailures": []}
    items = env.items()
    alice = items[("alice", "pane#2020-06-25T14:05:00Z")]
    bob = items[("bob", "pane#2020-06-25T14:05:00Z")]
    assert alice["totals"] == {"out": {"USD": {"count": 1, "sum_minor": 20000,
                                               "min_minor": 20000, "max_minor": 20000}}}
    assert set(bob["totals"]) == {"in"}
    assert alice["closes_at"] == "2020-06-25T14:15:30Z"
    # and the shard item has no watermark yet (it takes three payments), so nothing closed
    shard_items = [i for (a, k), i in items.items() if k.startswith("shard#")]
    assert len(shard_items) == 1 and shard_items[0]["fence"] != "-1"
    assert read_watermark(CONFIG, shard_items).watermark_us is None
    assert env.stream(ACTIVITY) == [] and env.stream(LATE) == []


def test_the_watermark_closes_windows_without_rewriting_panes(env: Env) -> None:
    # Given payments of alice at 14:06 and, later, three at 14:20 (the watermark reaches 14:20)
    handle = env.processor()
    handle(env.send([pay("p1", "14:06:10", amount_minor=500)]), CTX)
    before = env.items()[("alice", "pane#2020-06-25T14:05:00Z")]
    handle(env.send([pay(f"q{n}", "14:20:00", payee="carol") for n in range(3)]), CTX)
    # Then the windows covering 14:06 that closed by 14:20 are emitted once each
    closed = {(e["key"], e["data"]["window_key"]): e for e in env.stream(ACTIVITY)}
    assert set(closed) >= {
        ("alice", "tumbling#2020-06-25T14:05:00Z"), ("alice", "hopping#2020-06-25T14:00:00Z"),
        ("alice", "hopping#2020-06-25T14:05:00Z"), ("bob", "tumbling#2020-06-25T14:05:00Z"),
    }
    tumbling = closed[("alice", "tumbling#2020-06-25T14:05:00Z")]
    assert tumbling["event_id"] == closed_event_id("alice", "tumbling#2020-06-25T14:05:00Z")
    assert tumbling["data"]["totals"]["out"]["USD"]["sum_minor"] == 500
    assert tumbling["data"]["closed_by"] == "watermark"
    # and the pane was not rewritten to close it
    assert env.items()[("alice", "pane#2020-06-25T14:05:00Z")] == before


def test_a_late_payment_goes_to_the_side_output_and_changes_no_result(env: Env) -> None:
    handle = env.processor()
    handle(env.send([pay(f"q{n}", "14:20:00", payee="carol") for n in range(3)]), CTX)
    # When a payment from 14:06 arrives after its shard's watermark passed its windows
    handle(env.send([pay("late", "14:06:00")]), CTX)
    # Then each side has one payment.late naming its three windows, and no pane counts it
    # (its pane item holds the side's fences only, so a copy adds no second payment.late)
    late = {e["key"]: e["data"] for e in env.stream(LATE)}
    assert set(late) == {"alice", "bob"}
    assert len(late["alice"]["windows"]) == 3
    pane = env.items()[("alice", "pane#2020-06-25T14:05:00Z")]
    assert "totals" not in pane and pane["payments"] == 0 and "later" not in pane


@pytest.mark.parametrize("batches", ["one batch", "three batches"])
def test_a_re_emitted_copy_late_at_its_new_position_is_neither_late_nor_counted_twice(
    env: Env, batches: str
) -> None:
    # Given p1 at 14:04:40, then three payments at 14:06 (the shard's watermark passes 14:05:30,
    # when the windows ending 14:05 close), then validate re-emitting p1 after a crash: the
    # same lineage at a new position, where those windows have closed
    p1 = derived(pay("p1", "14:04:40", amount_minor=700), origin_sequence=5, low_water=5)
    later = [derived(pay(f"q{n}", "14:06:00", payer="dave", payee="carol"),
                     origin_sequence=6 + n, low_water=5) for n in range(3)]
    handle = env.processor()
    sends = [[p1, *later, p1]] if batches == "one batch" else [[p1], later, [p1]]
    for payments in sends:
        assert handle(env.send(payments), CTX) == {"batchItemFailures": []}
    # Then the copy adds no payment.late (the original counts in those windows)
    assert env.stream(LATE) == []
    # and every window of p1 holds it once
    env.close(NOW + 3600)
    results = {(e["key"], e["data"]["window_key"]): e["data"] for e in env.stream(ACTIVITY)}
    for window in ("hopping#2020-06-25T13:55:00Z", "tumbling#2020-06-25T14:00:00Z",
                   "hopping#2020-06-25T14:00:00Z"):
        assert results[("alice", window)]["totals"]["out"]["USD"] == {
            "count": 1, "sum_minor": 700, "min_minor": 700, "max_minor": 700}
        assert results[("bob", window)]["payments"] == 1


def test_a_redelivered_batch_leaves_identical_panes(env: Env) -> None:
    handle = env.processor()
    event = env.send([pay("p1", "14:06:10"), pay("p2", "14:07:00", payee="carol")])
    handle(event, CTX)
    first = {k: v for k, v in env.items().items() if not k[1].startswith("shard#")}
    handle(event, CTX)
    again = {k: v for k, v in env.items().items() if not k[1].startswith("shard#")}
    assert again == first


def test_the_schedule_closes_a_quiet_pipeline_once_its_shard_is_at_its_tip(env: Env) -> None:
    # Given one payment and then silence
    env.processor()(env.send([pay("p1", "14:06:10")]), CTX)
    # When the schedule runs an hour later
    summary = env.close(NOW + 3600)
    # Then the idle shard is raised, verified at its tip, and every window of the payment is
    # emitted: one tumbling and two hopping windows per account
    assert summary["failed"] == 0 and summary["closed_by"] == "schedule"
    keys = sorted((e["key"], e["data"]["window_key"]) for e in env.stream(ACTIVITY))
    assert keys == sorted((a, w) for a in ("alice", "bob") for w in (
        "tumbling#2020-06-25T14:05:00Z", "hopping#2020-06-25T14:00:00Z",
        "hopping#2020-06-25T14:05:00Z"))
    # and a second run emits nothing new
    assert env.close(NOW + 3700)["emitted"] == 0


def test_a_raise_stays_pending_while_the_shard_has_unprocessed_records(env: Env) -> None:
    env.processor()(env.send([pay("p1", "14:06:10")]), CTX)
    env.send([pay("p2", "14:07:00")])  # on the stream, not processed yet
    summary = env.close(NOW + 3600)
    assert summary["pending_raises"] and env.stream(ACTIVITY) == []
