"""windows and windows-close on moto: event-time aggregates, lateness, the scheduled close.

Each test provisions its own activity-view table (with the `open-by-close` index projecting
keys only, which is all the closers read from it), the validated, activity and activity-late
streams and the quarantine bucket, and runs the handlers on Kinesis and MSK events shaped
exactly as Lambda delivers them, with injected wall clocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cascata_runtime.adapters import S3ObjectStore
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.ports import EmitFailure, OutRecord
from payments.domain.windows import WindowConfig, WindowSpec, closed_event_id
from payments.handlers import windows, windows_close
from payments.settings import WindowsCloseSettings, WindowsSettings
from tests.support.events import (
    LambdaContext,
    kinesis_event,
    msk_event,
    payment,
    scheduled_event,
)

# These tests pin one-minute tumbling windows and five-minute hopping windows every minute:
# finer and more overlapping than the defaults, so every rule shows on a few payments.
CONFIG = WindowConfig(windows=(WindowSpec("tumbling", size_s=60, advance_s=60),
                               WindowSpec("hopping", size_s=300, advance_s=60)))

VALIDATED = "cascata-test-payments-validated"
ACTIVITY = "cascata-test-activity"
LATE = "cascata-test-activity-late"
TABLE = "cascata-test-activity-view"
BUCKET = "cascata-test-quarantine"
CTX = LambdaContext("cascata-test-windows")
CLOSE_CTX = LambdaContext("cascata-test-windows-close")
NOW = datetime(2020, 6, 25, 14, 30, tzinfo=UTC).timestamp()
"""The processors' wall clock: 24 minutes after the payments happened (a consumer behind)."""
TUMBLING = "tumbling#2020-06-25T14:06:00Z"


@dataclass
class Env:
    kinesis: Any
    s3: Any
    dynamodb: Any

    def client(self, service: str) -> Any:
        return {"kinesis": self.kinesis, "s3": self.s3, "dynamodb": self.dynamodb}[service]

    def store(self) -> windows.DynamoWindowStore:
        return windows.DynamoWindowStore(self.dynamodb, TABLE)

    def processor(self, *, now: float = NOW, store: Any = None, sink: Any = None) -> Any:
        return windows.make_handler(windows.Dependencies(
            activity_stream=ACTIVITY, late_stream=LATE, quarantine_bucket=BUCKET,
            store=store or self.store(),
            sink=sink or KinesisSink(self.kinesis, sleep=lambda _s: None),
            objects=S3ObjectStore(self.s3), now=lambda: now, config=CONFIG,
        ))

    def close(self, now: float) -> dict[str, Any]:
        closer = windows_close.make_handler(windows_close.Dependencies(
            activity_stream=ACTIVITY, store=self.store(),
            sink=KinesisSink(self.kinesis, sleep=lambda _s: None), now=lambda: now,
            config=CONFIG,
        ))
        summary: dict[str, Any] = closer(scheduled_event(), CLOSE_CTX)
        return summary

    def items(self) -> dict[tuple[str, str], dict[str, Any]]:
        store = self.store()
        out: dict[tuple[str, str], dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"TableName": TABLE, "ConsistentRead": True}
        while True:
            page = self.dynamodb.scan(**kwargs)
            for raw in page["Items"]:
                key = (raw["account_id"]["S"], raw["window_key"]["S"])
                out[key] = dict(store.get_many([key])[key])
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def windows_of(self, account: str) -> dict[str, dict[str, Any]]:
        return {w: item for (a, w), item in self.items().items() if a == account}

    def stream(self, name: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for shard in self.kinesis.list_shards(StreamName=name)["Shards"]:
            it = self.kinesis.get_shard_iterator(
                StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            page = self.kinesis.get_records(ShardIterator=it, Limit=10_000)
            out.extend(json.loads(r["Data"]) | {"_partition_key": r["PartitionKey"]}
                       for r in page["Records"])
        return out

    def quarantined(self) -> list[dict[str, Any]]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return [json.loads(self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read())
                for o in listing]


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
            AttributeDefinitions=[
                {"AttributeName": n, "AttributeType": "S"}
                for n in ("account_id", "window_key", "status", "closes_at")
            ],
            GlobalSecondaryIndexes=[{
                "IndexName": "open-by-close",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                              {"AttributeName": "closes_at", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Env(kinesis=kinesis, s3=s3, dynamodb=ddb)


def at(hms: str) -> str:
    return f"2020-06-25T{hms}Z"


def pay(event_id: str, hms: str, **kwargs: Any) -> dict[str, Any]:
    return payment(event_id, occurred_at=at(hms), **kwargs)


def batch(payments: Sequence[Mapping[str, Any] | bytes], *, start: int = 1,
          shard: str = "shardId-000000000000") -> dict[str, Any]:
    return kinesis_event(payments, stream=VALIDATED, start=start, shard=shard)


def totals(item: Mapping[str, Any], direction: str = "out", currency: str = "USD") -> tuple[
        int, int, int, int]:
    t = item["totals"][direction][currency]
    return (t["count"], t["sum_minor"], t["min_minor"], t["max_minor"])


def without_liveness(items: Mapping[tuple[str, str], Mapping[str, Any]]) -> dict[Any, Any]:
    """Items minus the shard items' processing-time stamp (it moves with every batch)."""
    return {k: {a: v for a, v in item.items() if a != "seen_at_s"} for k, item in items.items()}


# -- aggregation -----------------------------------------------------------------------------


def test_a_payment_counts_out_for_the_payer_and_in_for_the_payee_in_every_window(
    env: Env,
) -> None:
    # Given one payment of 200.00 USD from alice to bob at 14:06:10
    # When windows processes it
    response = env.processor()(batch([pay("p1", "14:06:10")]), CTX)
    # Then alice has it as `out` and bob as `in`, in one tumbling and five hopping windows
    assert response == {"batchItemFailures": []}
    alice, bob = env.windows_of("alice"), env.windows_of("bob")
    assert sorted(alice) == sorted(bob) == [
        "hopping#2020-06-25T14:02:00Z", "hopping#2020-06-25T14:03:00Z",
        "hopping#2020-06-25T14:04:00Z", "hopping#2020-06-25T14:05:00Z",
        "hopping#2020-06-25T14:06:00Z", TUMBLING,
    ]
    assert totals(alice[TUMBLING]) == (1, 20000, 20000, 20000)
    assert totals(bob[TUMBLING], "in") == (1, 20000, 20000, 20000)
    assert set(alice[TUMBLING]["totals"]) == {"out"}
    # open, closing at end + 30 s of allowed lateness, which the index is sorted by
    assert alice[TUMBLING]["status"] == "open"
    assert alice[TUMBLING]["closes_at"] == at("14:07:30")
    assert alice["hopping#2020-06-25T14:02:00Z"]["closes_at"] == at("14:07:30")
    assert alice["hopping#2020-06-25T14:06:00Z"]["closes_at"] == at("14:11:30")
    # and the shard's committed watermark is stored where windows-close reads it
    [shard] = [i for (a, _), i in env.items().items() if a == "#shards"]
    assert shard["watermark"] == at("14:06:10") and shard["fence"] == "1"
    assert env.stream(ACTIVITY) == [] and env.stream(LATE) == []


def test_the_watermark_closes_windows_and_emits_their_final_results(env: Env) -> None:
    # Given three payments by alice, the last one at 14:08:00
    handle = env.processor()
    handle(batch([pay("p1", "14:06:10", amount_minor=500),
                  pay("p2", "14:06:40", amount_minor=300, payee="carol")]), CTX)
    assert env.stream(ACTIVITY) == []
    # When the watermark reaches 14:08:00, past 14:07:30 (the 14:06 window's end + lateness)
    handle(batch([pay("p3", "14:08:00", amount_minor=1)], start=3), CTX)
    # Then the windows closing at 14:07:30 are final and their results are on `activity`
    closed = {(e["key"], e["data"]["window_key"]): e for e in env.stream(ACTIVITY)}
    assert set(closed) == {
        (account, key) for account in ("alice", "bob", "carol")
        for key in (TUMBLING, "hopping#2020-06-25T14:02:00Z")
    }
    result = closed[("alice", TUMBLING)]
    assert result["type"] == "window.closed" and result["version"] == 1
    assert result["event_id"] == closed_event_id("alice", TUMBLING)
    assert result["occurred_at"] == at("14:07:00")
    assert result["data"]["totals"] == {
        "out": {"USD": {"count": 2, "sum_minor": 800, "min_minor": 300, "max_minor": 500}}}
    assert result["data"]["closed_by"] == "watermark"
    assert result["data"]["watermark"] == at("14:08:00")
    assert closed[("carol", TUMBLING)]["data"]["totals"]["in"]["USD"]["count"] == 1
    items = env.items()
    assert items[("alice", TUMBLING)]["status"] == "final"
    assert items[("alice", "hopping#2020-06-25T14:03:00Z")]["status"] == "open"
    assert items[("alice", "tumbling#2020-06-25T14:08:00Z")]["status"] == "open"


def test_out_of_order_within_the_lateness_counts_and_after_it_goes_to_the_side_output(
    env: Env,
) -> None:
    handle = env.processor()
    # Given 14:07:20 then 14:06:50: out of order, but the watermark has not passed 14:07:30
    handle(batch([pay("a", "14:07:20"), pay("b", "14:06:50", amount_minor=7)]), CTX)
    assert totals(env.windows_of("alice")[TUMBLING]) == (1, 7, 7, 7)
    # When 14:07:40 arrives, and then a payment from 14:06:55
    handle(batch([pay("c", "14:07:40"), pay("d", "14:06:55", amount_minor=9)], start=3), CTX)
    # Then d missed the windows that closed at 14:07:30 (the tumbling one, the oldest
    # hopping one) and is reported late for alice and for bob, with the reason
    late = {e["key"]: e for e in env.stream(LATE)}
    assert set(late) == {"alice", "bob"}
    d = late["alice"]
    assert d["type"] == "payment.late" and d["correlation_id"] == "d"
    assert d["data"]["payment_event_id"] == "d" and d["data"]["direction"] == "out"
    assert d["data"]["windows"] == [
        {"window_key": "hopping#2020-06-25T14:02:00Z", "closes_at": at("14:07:30"),
         "cause": "watermark_passed"},
        {"window_key": TUMBLING, "closes_at": at("14:07:30"), "cause": "watermark_passed"},
    ]
    assert d["data"]["watermark"] == at("14:07:40")
    assert "30 s allowed lateness" in d["data"]["reason"]
    assert late["bob"]["data"]["direction"] == "in"
    # and it changed none of the closed results, while the windows still open counted it
    alice = env.windows_of("alice")
    assert totals(alice[TUMBLING]) == (1, 7, 7, 7) and alice[TUMBLING]["status"] == "final"
    assert totals(alice["hopping#2020-06-25T14:03:00Z"]) == (4, 40016, 7, 20000)


# -- the scheduled close ---------------------------------------------------------------------


def test_windows_of_quiet_keys_are_closed_by_the_schedule_once(env: Env) -> None:
    # Given one payment, and then nothing
    env.processor()(batch([pay("p1", "14:06:10")]), CTX)
    # When the schedule runs while the shard is still active
    early = env.close(NOW + 10)
    # Then nothing closes: the watermark (14:06:10) has not reached any window's close
    assert (early["frozen"], early["emitted"]) == (0, 0)
    assert early["active_shards"] == 1 and early["watermark"] == at("14:06:10")
    # When it runs after the shard went idle: the wall clock (14:31:01 - 60 s) closes all
    summary = env.close(NOW + 61)
    assert summary == summary | {"due": 12, "frozen": 12, "emitted": 12, "finalized": 12,
                                 "failed": 0, "more": False, "active_shards": 0}
    results = env.stream(ACTIVITY)
    assert len(results) == 12
    assert {e["data"]["closed_by"] for e in results} == {"schedule"}
    assert all(i["status"] == "final" for (a, _), i in env.items().items() if a != "#shards")
    # final items leave the index, which keeps only the windows still to close
    assert env.store().due("final", None, 100) == [] and env.store().due("open", None, 100) == []
    final = env.items()[("alice", TUMBLING)]
    assert "closes_at" not in final and final["window_closes_at"] == at("14:07:30")
    # And closing again emits nothing and changes no item
    before = env.items()
    again = env.close(NOW + 3600)
    assert (again["due"], again["emitted"]) == (0, 0)
    assert env.items() == before and len(env.stream(ACTIVITY)) == 12


def test_a_consumer_behind_the_wall_clock_is_not_cut_off_by_the_schedule(env: Env) -> None:
    # Given a consumer reading payments 24 minutes old (catching up), still active
    env.processor(now=NOW)(batch([pay("p1", "14:06:10")]), CTX)
    # When the schedule runs: the wall clock is far past every window's close
    summary = env.close(NOW + 30)
    # Then it closes by event time only, so the next in-order payment still counts
    assert summary["frozen"] == 0
    env.processor(now=NOW + 40)(batch([pay("p2", "14:06:20")], start=2), CTX)
    assert totals(env.windows_of("alice")[TUMBLING]) == (2, 40000, 20000, 20000)
    assert env.stream(LATE) == []


def test_an_interrupted_close_is_finished_with_the_same_event(env: Env) -> None:
    class NoActivity:
        """PutRecords to activity fails entry by entry; other streams work."""

        def __init__(self) -> None:
            self.real = KinesisSink(env.kinesis, sleep=lambda _s: None)

        def emit(self, stream: str, records: Sequence[OutRecord]) -> list[EmitFailure]:
            if stream == ACTIVITY:
                return [EmitFailure(r.tag, "ProvisionedThroughputExceeded") for r in records]
            return self.real.emit(stream, records)

    # Given the processor froze windows but could not emit their results
    response = env.processor(sink=NoActivity())(
        batch([pay("p1", "14:06:10"), pay("p2", "14:08:00")]), CTX)
    assert response == {"batchItemFailures": []}  # the close pass never fails records
    frozen = env.items()[("alice", TUMBLING)]
    assert frozen["status"] == "closing" and env.stream(ACTIVITY) == []
    # When a payment for that window arrives from another shard whose watermark is behind
    env.processor(now=NOW + 1)(batch([pay("q", "14:06:30", payer="zed", payee="alice")],
                                     shard="shardId-000000000001"), CTX)
    # Then it is late (the result is frozen) and the frozen item is untouched
    [late] = [e for e in env.stream(LATE) if e["key"] == "alice"]
    assert {w["cause"] for w in late["data"]["windows"]} == {"window_closed"}
    assert env.items()[("alice", TUMBLING)] == frozen
    # When the schedule runs (the freeze is older than its takeover delay)
    summary = env.close(NOW + 20)
    assert summary["emitted"] >= 4 and summary["failed"] == 0
    results = [e for e in env.stream(ACTIVITY) if e["key"] == "alice"
               and e["data"]["window_key"] == TUMBLING]
    # Then the result is the frozen content, under the window's one id, and the item is final
    [result] = results
    assert result["event_id"] == closed_event_id("alice", TUMBLING)
    assert result["data"]["totals"] == {
        "out": {"USD": {"count": 1, "sum_minor": 20000, "min_minor": 20000,
                        "max_minor": 20000}}}
    final = env.items()[("alice", TUMBLING)]
    assert final["status"] == "final" and final["version"] == frozen["version"] + 1
    # and a second run emits it again nowhere and changes nothing
    env.close(NOW + 40)
    assert env.items()[("alice", TUMBLING)] == final
    assert len([e for e in env.stream(ACTIVITY) if e["event_id"] == result["event_id"]]) == 1


def test_the_schedule_raises_when_windows_could_not_be_closed(env: Env) -> None:
    env.processor()(batch([pay("p1", "14:06:10")]), CTX)

    class Down:
        def emit(self, stream: str, records: Sequence[OutRecord]) -> list[EmitFailure]:
            return [EmitFailure(r.tag, "stream is down") for r in records]

    closer = windows_close.make_handler(windows_close.Dependencies(
        activity_stream=ACTIVITY, store=env.store(), sink=Down(), now=lambda: NOW + 120,
        config=CONFIG))
    with pytest.raises(windows_close.WindowsCloseIncompleteError, match="12 window"):
        closer(scheduled_event(), CLOSE_CTX)
    # the windows stay frozen, and the next run finishes them
    assert env.close(NOW + 240)["emitted"] == 12


# -- effectively once ------------------------------------------------------------------------


def test_the_same_batch_delivered_twice_yields_identical_items(env: Env) -> None:
    event = batch([pay("a", "14:06:10"), pay("b", "14:07:40", payer="bob", payee="carol"),
                   pay("c", "14:06:20"), pay("d", "14:06:30", currency="EUR")])
    env.processor()(event, CTX)
    first = env.items()
    late_first = env.stream(LATE)
    env.processor(now=NOW + 5)(event, CTX)
    assert without_liveness(env.items()) == without_liveness(first)
    # the late payment (c, d are after 14:07:40 on this shard) is reported under the same ids
    ids = [e["event_id"] for e in env.stream(LATE)]
    assert len(set(ids)) == len(late_first) == 4


def test_a_duplicate_event_id_at_a_new_position_counts_once(env: Env) -> None:
    handle = env.processor()
    handle(batch([pay("p1", "14:06:10"), pay("p1", "14:06:10")]), CTX)
    handle(batch([pay("p1", "14:06:10")], start=3), CTX)
    assert totals(env.windows_of("alice")[TUMBLING]) == (1, 20000, 20000, 20000)
    assert totals(env.windows_of("bob")[TUMBLING], "in") == (1, 20000, 20000, 20000)


def test_a_failed_write_fails_its_records_only_and_the_retry_completes(env: Env) -> None:
    real = env.store()

    class FailDave:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def put_if_version(self, item: Mapping[str, Any], expected: int | None) -> bool:
            if item["account_id"] == "dave":
                raise RuntimeError("throttled")
            return real.put_if_version(item, expected)

    payments = [pay("p1", "14:06:01", payer="alice", payee="bob"),
                pay("p2", "14:06:02", payer="alice", payee="dave"),
                pay("p3", "14:06:03", payer="alice", payee="carol"),
                pay("p4", "14:06:04", payer="alice", payee="dave"),
                pay("p5", "14:06:05", payer="alice", payee="erin")]
    event = batch(payments)
    # When dave's window items cannot be written
    response = env.processor(store=FailDave())(event, CTX)
    # Then only the records paying dave fail
    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "4"}]}
    shard = env.items()[("#shards", f"{VALIDATED}/shardId-000000000000")]
    assert shard["fence"] == "1"  # committed up to the record before the first failure
    # When Lambda retries from the lowest failed sequence number
    retry = {"Records": [r for r in event["Records"] if int(r["kinesis"]["sequenceNumber"]) >= 2]}
    assert env.processor()(retry, CTX) == {"batchItemFailures": []}
    # Then every payment is counted exactly once on every side
    assert totals(env.windows_of("alice")[TUMBLING]) == (5, 100000, 20000, 20000)
    assert totals(env.windows_of("dave")[TUMBLING], "in") == (2, 40000, 20000, 20000)
    assert totals(env.windows_of("erin")[TUMBLING], "in")[0] == 1
    assert env.items()[("#shards", f"{VALIDATED}/shardId-000000000000")]["fence"] == "5"


def test_records_that_are_not_valid_payments_are_quarantined_and_the_rest_counted(
    env: Env,
) -> None:
    customer = {"event_id": "c1", "type": "customer.registered", "version": 1, "key": "alice",
                "occurred_at": at("14:00:00"),
                "data": {"customer_id": "alice", "name": "Alice", "email": "a@example.com",
                         "country": "GB", "tier": "plus"}}
    response = env.processor()(
        batch([b"not json", customer, pay("p1", "14:06:10"), pay("x", "14:09:00",
                                                              amount_minor=0)]), CTX)
    assert response == {"batchItemFailures": []}
    reasons = sorted(q["reason"]["code"] for q in env.quarantined())
    assert reasons == ["amount_out_of_range", "not_json", "unexpected_type"]
    assert {q["processor"] for q in env.quarantined()} == {"windows"}
    assert totals(env.windows_of("alice")[TUMBLING])[0] == 1
    # the invalid 14:09:00 payment did not move the watermark
    [shard] = [i for (a, _), i in env.items().items() if a == "#shards"]
    assert shard["watermark"] == at("14:06:10")


def test_msk_batches_count_from_offset_zero(env: Env) -> None:
    event = msk_event([pay("k0", "14:06:10"), pay("k1", "14:06:20")], topic=VALIDATED)
    assert env.processor()(event, CTX) == {"batchItemFailures": []}
    item = env.windows_of("alice")[TUMBLING]
    assert totals(item) == (2, 40000, 20000, 20000)
    assert item["fences"] == {"0": "1"}
    env.processor()(event, CTX)
    assert totals(env.windows_of("alice")[TUMBLING])[0] == 2


# -- cost ------------------------------------------------------------------------------------


def item_bytes(item: Mapping[str, Any]) -> int:
    """DynamoDB's item size: names plus values (numbers ~1 byte per 2 digits, maps 3 + 1 per
    entry), as the write-unit rounding counts it."""
    def size(v: Any) -> int:
        if isinstance(v, str):
            return len(v.encode())
        if isinstance(v, bytes):
            return len(v)
        if isinstance(v, int):
            return (len(str(abs(v))) + 1) // 2 + 1
        if isinstance(v, Mapping):
            return 3 + sum(len(k.encode()) + size(x) + 1 for k, x in v.items())
        raise TypeError(type(v))
    return sum(len(k.encode()) + size(v) for k, v in item.items())


def test_a_batch_costs_one_write_per_window_item_whatever_the_number_of_payments(
    env: Env,
) -> None:
    # Given 60 payments alice -> bob in one minute, in one batch
    store = env.store()
    payments = [pay(f"p{i}", f"14:06:{i:02d}", amount_minor=100 + i) for i in range(60)]
    env.processor(store=store)(batch(payments), CTX)
    # Then 2 accounts x 6 windows are written once each, plus the shard's watermark item
    assert store.write_requests == 13
    alice = env.windows_of("alice")[TUMBLING]
    assert totals(alice) == (60, sum(100 + i for i in range(60)), 100, 159)
    # and an item, even final, holding 48 recent ids, stays within one write unit (1 KB)
    env.close(NOW + 61)
    assert item_bytes(env.windows_of("alice")[TUMBLING]) < 1024
    assert len(env.windows_of("alice")[TUMBLING]["recent"]) == 48 * 8


# -- conventions -----------------------------------------------------------------------------


def test_both_functions_build_from_their_settings_and_an_injected_clock(env: Env) -> None:
    clock: Callable[[], float] = lambda: NOW  # noqa: E731
    proc = windows.make_handler(windows.dependencies(
        WindowsSettings(activity_table=TABLE, activity_stream=ACTIVITY, late_stream=LATE,
                        quarantine_bucket=BUCKET, stage="test"),
        client=env.client, now=clock))
    assert proc(batch([pay("p1", "14:06:10")]), CTX) == {"batchItemFailures": []}
    closer = windows_close.make_handler(windows_close.dependencies(
        WindowsCloseSettings(activity_table=TABLE, activity_stream=ACTIVITY, stage="test"),
        client=env.client, now=lambda: NOW + 3600))
    summary = closer(scheduled_event(), CLOSE_CTX)
    # the default windows: one tumbling and two hopping, for each side of the payment
    assert summary["emitted"] == 6 and summary["now"] == "2020-06-25T15:30:00Z"
    assert windows_close.PROCESSOR == "windows-close" and windows.PROCESSOR == "windows"
    assert windows_close.SETTINGS is WindowsCloseSettings and windows.SETTINGS is WindowsSettings


def test_on_a_two_shard_stream_the_first_shard_does_not_close_for_the_other(env: Env) -> None:
    # Given the validated stream with two shards and the processor as deployed (it lists them)
    env.kinesis.delete_stream(StreamName=VALIDATED)
    env.kinesis.create_stream(StreamName=VALIDATED, ShardCount=2)
    clock = {"now": NOW}
    deps = windows.dependencies(
        WindowsSettings(activity_table=TABLE, activity_stream=ACTIVITY, late_stream=LATE,
                        quarantine_bucket=BUCKET, stage="test"),
        client=env.client, now=lambda: clock["now"])
    proc = windows.make_handler(replace(deps, config=CONFIG))
    s1 = "shardId-000000000001"
    ahead = [pay(f"a{i}", f"14:{6 + i // 2:02d}:{30 * (i % 2):02d}") for i in range(12)]
    behind = [pay(f"b{i}", f"14:{6 + i // 2:02d}:{30 * (i % 2):02d}", payer="carol")
              for i in range(12)]
    # When shard 0 delivers six minutes before shard 1 delivered anything
    assert proc(batch(ahead), CTX) == {"batchItemFailures": []}
    # Then nothing closed; shard 0's item names both shards
    assert env.stream(ACTIVITY) == []
    assert env.items()[("#shards", f"{VALIDATED}/shardId-000000000000")]["peers"] == "0,1"
    # And when shard 1 delivers the same minutes, none of its payments is late
    clock["now"] += 5
    assert proc(batch(behind, shard=s1), CTX) == {"batchItemFailures": []}
    assert env.stream(LATE) == []
    assert env.close(clock["now"])["watermark"] == "2020-06-25T14:11:30Z"
    bob = {e["data"]["window_key"]: e for e in env.stream(ACTIVITY) if e["key"] == "bob"}
    assert bob[TUMBLING]["data"]["totals"]["in"]["USD"]["count"] == 4


def test_the_kinesis_shard_lister_tells_open_from_closed_and_caches(env: Env) -> None:
    env.kinesis.delete_stream(StreamName=VALIDATED)
    env.kinesis.create_stream(StreamName=VALIDATED, ShardCount=2)
    arn = env.kinesis.describe_stream_summary(
        StreamName=VALIDATED)["StreamDescriptionSummary"]["StreamARN"]
    t = {"now": 0.0}
    lister = windows.KinesisShardLister(env.kinesis, clock=lambda: t["now"])
    first = lister.list_shards(arn)
    assert [(s.shard_id, s.open) for s in first] == [
        ("shardId-000000000000", True), ("shardId-000000000001", True)]
    env.kinesis.update_shard_count(StreamName=VALIDATED, TargetShardCount=4,
                                   ScalingType="UNIFORM_SCALING")
    t["now"] = 59.0
    assert lister.list_shards(arn) == first and lister.calls == 1
    t["now"] = 60.0
    resharded = lister.list_shards(arn)
    assert lister.calls == 2 and sum(s.open for s in resharded) == 4
    assert len(resharded) > 4 and not all(s.open for s in resharded)
