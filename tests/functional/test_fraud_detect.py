"""fraud-detect on moto: alerts on the stream and in the view, rule state written once per payer.

Real Lambda event shapes (Kinesis and MSK), real tables (the alerts view with its `by-day`
index), and the failure modes Lambda produces: the same batch twice, duplicates at new
positions, partial failures retried from the lowest failed sequence, out-of-order input.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cascata_runtime.adapters import DynamoItemStore, S3ObjectStore
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.sinks import KAFKA_PRODUCER
from payments import adapters
from payments.handlers import fraud_detect
from payments.settings import FraudDetectSettings
from tests.support.events import LambdaContext, derived, kinesis_event, msk_event, payment

VALIDATED = "cascata-test-payments-validated"
ALERTS = "cascata-test-alerts"
STATE = "cascata-test-fraud-state"
VIEW = "cascata-test-alerts-view"
PROFILES = "cascata-test-profiles"
BUCKET = "cascata-test-quarantine"
CTX = LambdaContext("cascata-test-fraud-detect")


@dataclass
class Aws:
    kinesis: Any
    dynamodb: Any
    s3: Any

    def alerts(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for shard in self.kinesis.list_shards(StreamName=ALERTS)["Shards"]:
            it = self.kinesis.get_shard_iterator(
                StreamName=ALERTS, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            page = self.kinesis.get_records(ShardIterator=it, Limit=10_000)
            out.extend({"key": r["PartitionKey"], **json.loads(r["Data"])}
                       for r in page["Records"])
        return out

    def view(self, account: str) -> list[dict[str, Any]]:
        items = self.dynamodb.query(
            TableName=VIEW, KeyConditionExpression="account_id = :a",
            ExpressionAttributeValues={":a": {"S": account}}, ConsistentRead=True,
        )["Items"]
        return [plain(i) for i in items]

    def state(self, payer: str) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(TableName=STATE, Key={"payer": {"S": payer}},
                                      ConsistentRead=True).get("Item")
        return plain(item) if item else None

    def set_tier(self, customer: str, tier: str) -> None:
        self.dynamodb.put_item(TableName=PROFILES, Item={
            "customer_id": {"S": customer}, "tier": {"S": tier}, "name": {"S": customer}})

    def quarantined(self) -> list[dict[str, Any]]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return [json.loads(self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read())
                for o in listing]


def plain(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    return {k: des.deserialize(v) for k, v in item.items()}


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName=ALERTS, ShardCount=2)
        ddb = boto3.client("dynamodb", region_name="us-east-1")

        def table(name: str, *keys: str, **extra: Any) -> None:
            ddb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": k, "KeyType": t}
                           for k, t in zip(keys, ("HASH", "RANGE"), strict=False)],
                AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"}
                                      for k in (*keys, *extra.pop("more", ()))],
                BillingMode="PAY_PER_REQUEST", **extra,
            )

        table(STATE, "payer")
        table(PROFILES, "customer_id")
        table(VIEW, "account_id", "alert_key", more=("day",), GlobalSecondaryIndexes=[{
            "IndexName": "by-day",
            "KeySchema": [{"AttributeName": "day", "KeyType": "HASH"},
                          {"AttributeName": "alert_key", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }])
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield Aws(kinesis=kinesis, dynamodb=ddb, s3=s3)


def deps(aws: Aws, **overrides: Any) -> fraud_detect.Dependencies:
    values: dict[str, Any] = {
        "alerts_stream": ALERTS,
        "quarantine_bucket": BUCKET,
        "state": DynamoItemStore(aws.dynamodb, STATE, key="payer"),
        "tiers": adapters.DynamoProfileTiers(aws.dynamodb, PROFILES),
        "view": adapters.DynamoAlertsView(aws.dynamodb, VIEW),
        "sink": KinesisSink(aws.kinesis, sleep=lambda _s: None),
        "objects": S3ObjectStore(aws.s3),
    }
    values.update(overrides)
    return fraud_detect.Dependencies(**values)


def handler(aws: Aws, **overrides: Any) -> Any:
    return fraud_detect.make_handler(deps(aws, **overrides))


def at(second: int) -> str:
    return f"2026-11-02T09:{second // 60:02d}:{second % 60:02d}Z"


def burst(n: int, *, payer: str = "alice", start: int = 0, prefix: str = "v") -> list[
        dict[str, Any]]:
    """n small payments to one known-looking payee, ten seconds apart."""
    return [payment(f"{prefix}{i}", payer=payer, payee="shop", amount_minor=1_000,
                    occurred_at=at(start + 10 * i)) for i in range(n)]


def alert_rules(aws: Aws) -> Counter[tuple[str, str]]:
    return Counter((a["data"]["payment_event_id"], a["data"]["rule"]) for a in aws.alerts())


def test_a_payment_above_the_tier_limit_raises_an_alert_on_the_stream_and_in_the_view(
    aws: Aws,
) -> None:
    # Given bob is a premium customer and alice has no profile (basic)
    aws.set_tier("bob", "premium")
    event = kinesis_event([
        payment("a1", payer="alice", payee="carol", amount_minor=150_000, occurred_at=at(1)),
        payment("b1", payer="bob", payee="carol", amount_minor=150_000, occurred_at=at(2)),
    ], stream=VALIDATED)
    # When fraud-detect runs
    assert handler(aws)(event, CTX) == {"batchItemFailures": []}
    # Then alice (basic) gets a tier_limit alert and bob (premium, 1,500.00 < 20,000.00) none
    rules = alert_rules(aws)
    assert rules[("a1", "tier_limit")] == 1 and ("b1", "tier_limit") not in rules
    [alert] = [a for a in aws.alerts() if a["data"]["rule"] == "tier_limit"]
    assert alert["type"] == "fraud.alert" and alert["version"] == 1 and alert["key"] == "alice"
    assert alert["data"]["severity"] == "high" and alert["data"]["account"] == "alice"
    assert alert["data"]["evidence"]["tier"] == "basic"
    assert alert["occurred_at"] == at(1) and alert["correlation_id"] == "a1"
    # and the view holds it, sorted by time, with the day for the by-day index
    items = {i["rule"]: i for i in aws.view("alice")}
    item = items["tier_limit"]
    assert item["alert_key"] == f"2026-11-02T09:00:01.000Z#{alert['event_id']}"
    assert item["day"] == "2026-11-02" and item["amount_minor"] == 150_000
    assert item["currency"] == "USD" and item["payment_event_id"] == "a1"
    by_day = aws.dynamodb.query(
        TableName=VIEW, IndexName="by-day", KeyConditionExpression="#d = :d",
        ExpressionAttributeNames={"#d": "day"}, ExpressionAttributeValues={":d": {"S":
                                                                                  "2026-11-02"}},
    )["Items"]
    assert {plain(i)["alert_id"] for i in by_day} == {a["event_id"] for a in aws.alerts()}


def test_velocity_alerts_from_the_sixth_payment_within_a_minute(aws: Aws) -> None:
    event = kinesis_event(burst(7), stream=VALIDATED)
    assert handler(aws)(event, CTX) == {"batchItemFailures": []}
    velocity = sorted(p for (p, rule) in alert_rules(aws) if rule == "velocity")
    assert velocity == ["v5", "v6"]  # v6 at 60 s no longer counts v0


def test_a_large_first_payment_to_a_new_payee_alerts_and_a_second_does_not(aws: Aws) -> None:
    first = [payment("n1", payee="mallory", amount_minor=60_000, occurred_at=at(0))]
    second = [payment("n2", payee="mallory", amount_minor=60_000, occurred_at=at(30))]
    handle = handler(aws)
    handle(kinesis_event(first, stream=VALIDATED), CTX)
    handle(kinesis_event(second, stream=VALIDATED, start=2), CTX)
    assert +alert_rules(aws) == Counter({("n1", "new_payee"): 1})


def test_the_same_batch_delivered_twice_changes_nothing(aws: Aws) -> None:
    big = payment("big", payee="x", amount_minor=900_000, occurred_at=at(65))
    event = kinesis_event([*burst(7), big], stream=VALIDATED)
    handle = handler(aws)
    assert handle(event, CTX) == {"batchItemFailures": []}
    state, alerts, view = aws.state("alice"), aws.alerts(), aws.view("alice")
    assert handle(event, CTX) == {"batchItemFailures": []}
    # Then the state, the stream and the view are exactly as after the first delivery
    assert aws.state("alice") == state and aws.alerts() == alerts and aws.view("alice") == view
    assert state is not None and state["payments"] == 8


def test_a_re_emitted_copy_neither_counts_nor_alerts_twice(aws: Aws) -> None:
    # Given five payments in a minute, then validate re-emits v4 (same lineage, new position)
    payments = [derived(p, origin_sequence=n + 1) for n, p in enumerate(burst(5))]
    event = kinesis_event([*payments, payments[4]], stream=VALIDATED)
    assert handler(aws)(event, CTX) == {"batchItemFailures": []}
    # Then the copy is not a sixth payment: no velocity alert
    assert [r for r in alert_rules(aws) if r[1] == "velocity"] == []
    state = aws.state("alice")
    assert state is not None and state["payments"] == 5
    # and a copy arriving in a later batch is recognised too
    later = kinesis_event(
        [payments[3], derived(burst(1, start=45, prefix="w")[0], origin_sequence=6)],
        stream=VALIDATED, start=10)
    assert handler(aws)(later, CTX) == {"batchItemFailures": []}
    assert sorted(p for p, r in alert_rules(aws) if r == "velocity") == ["w0"]


def test_partial_failure_then_retry_from_the_lowest_failed_sequence(aws: Aws) -> None:
    # Given bob's state cannot be written (throttled) while alice's can
    real = DynamoItemStore(aws.dynamodb, STATE, key="payer")

    class FailBob:
        def get_many(self, keys: Any) -> Any:
            return real.get_many(keys)

        def key_attributes(self, key: str) -> dict[str, Any]:
            return real.key_attributes(key)

        def put_if_version(self, item: Any, expected: Any) -> bool:
            if item["payer"] == "bob":
                raise RuntimeError("ProvisionedThroughputExceededException")
            return real.put_if_version(item, expected)

    payments = []
    for i in range(7):
        payments.append(payment(f"a{i}", payer="alice", payee="shop", amount_minor=1_000,
                                occurred_at=at(i)))
        payments.append(payment(f"b{i}", payer="bob", payee="shop", amount_minor=1_000,
                                occurred_at=at(i)))
    event = kinesis_event(payments, stream=VALIDATED)
    response = handler(aws, state=FailBob())(event, CTX)
    # Then exactly bob's records are reported, and his state is untouched
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    bob_seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]
                if r["kinesis"]["partitionKey"] == "bob"]
    assert failed == bob_seqs and aws.state("bob") is None
    # When Lambda retries from the lowest failed sequence
    lowest = min(int(s) for s in failed)
    retry = {"Records": [r for r in event["Records"]
                         if int(r["kinesis"]["sequenceNumber"]) >= lowest]}
    assert handler(aws)(retry, CTX) == {"batchItemFailures": []}
    # Then each payer's alerts are raised once (bob's re-emitted alerts carry the same ids)
    velocity = {p for p, r in alert_rules(aws) if r == "velocity"}
    assert velocity == {"a5", "a6", "b5", "b6"}
    ids = Counter(a["event_id"] for a in aws.alerts())
    assert len(ids) == 4 and len(aws.view("bob")) == 2 and len(aws.view("alice")) == 2
    state_a, state_b = aws.state("alice"), aws.state("bob")
    assert state_a is not None and state_b is not None
    assert state_a["payments"] == 7 and state_b["payments"] == 7


def test_an_alert_that_cannot_be_emitted_keeps_the_payer_state_for_the_retry(aws: Aws) -> None:
    class FailingSink:
        def emit(self, stream: str, records: Any) -> Any:
            from cascata_runtime.ports import EmitFailure

            return [EmitFailure(r.tag, "ProvisionedThroughputExceededException") for r in records]

    event = kinesis_event(burst(6), stream=VALIDATED)
    response = handler(aws, sink=FailingSink())(event, CTX)
    # Then every alice record fails (not only v5's) and no state is written
    assert len(response["batchItemFailures"]) == 6 and aws.state("alice") is None
    # and the retry raises the alert that could not be emitted
    assert handler(aws)(event, CTX) == {"batchItemFailures": []}
    assert alert_rules(aws) == Counter({("v5", "velocity"): 1})


def test_a_payment_the_velocity_rule_sees_late_counts_in_its_own_interval(aws: Aws) -> None:
    # Given payments at 0, 10, 20, 30 and 80 s, then one from 40 s arriving last
    early = [*burst(4), payment("v8", payee="shop", amount_minor=1_000, occurred_at=at(80))]
    handle = handler(aws)
    handle(kinesis_event(early, stream=VALIDATED), CTX)
    late = [payment("late", payee="shop", amount_minor=1_000, occurred_at=at(40))]
    handle(kinesis_event(late, stream=VALIDATED, start=10), CTX)
    # Then the late one is the fifth in (-20 s, 40 s]: no alert; the next one at 45 s is sixth
    assert [r for r in alert_rules(aws) if r[1] == "velocity"] == []
    handle(kinesis_event([payment("next", payee="shop", amount_minor=1_000,
                                  occurred_at=at(45))], stream=VALIDATED, start=20), CTX)
    assert [p for p, r in alert_rules(aws) if r == "velocity"] == ["next"]


def test_out_of_order_records_in_one_batch_are_evaluated_in_event_time_order(aws: Aws) -> None:
    # Given the large payment to a new payee arrives before an earlier small one to the same
    shuffled = [payment("large", payee="carol", amount_minor=90_000, occurred_at=at(20)),
                payment("small", payee="carol", amount_minor=100, occurred_at=at(10))]
    assert handler(aws)(kinesis_event(shuffled, stream=VALIDATED), CTX) == {
        "batchItemFailures": []}
    # Then carol was already known when the large one was evaluated
    assert alert_rules(aws) == Counter()


def test_invalid_records_are_quarantined_and_the_rest_evaluated(aws: Aws) -> None:
    event = kinesis_event([
        payment("bad", amount_minor=12.5),
        b"not json",
        payment("ok", payee="mallory", amount_minor=60_000),
    ], stream=VALIDATED, keys=["alice", "alice", "alice"])
    assert handler(aws)(event, CTX) == {"batchItemFailures": []}
    reasons = sorted(q["reason"]["code"] for q in aws.quarantined())
    assert reasons == ["amount_not_integer", "not_json"]
    assert {q["processor"] for q in aws.quarantined()} == {"fraud-detect"}
    assert alert_rules(aws) == Counter({("ok", "new_payee"): 1})


def test_one_state_write_per_payer_per_batch_and_profiles_read_only_when_needed(
    aws: Aws,
) -> None:
    store = DynamoItemStore(aws.dynamodb, STATE, key="payer")
    asked: list[list[str]] = []
    real_tiers = adapters.DynamoProfileTiers(aws.dynamodb, PROFILES)

    class CountingTiers:
        def tiers(self, customers: list[str]) -> Any:
            asked.append(list(customers))
            return real_tiers.tiers(customers)

    payments = [payment(f"p{i}", payer=("alice", "bob")[i % 2], payee="shop",
                        amount_minor=100, occurred_at=at(i * 30)) for i in range(40)]
    payments.append(payment("big", payer="carol", payee="shop", amount_minor=200_000))
    handler(aws, state=store, tiers=CountingTiers())(kinesis_event(payments, stream=VALIDATED),
                                                     CTX)
    assert store.write_requests == 3  # alice, bob, carol for 41 payments
    assert asked == [["carol"]]  # nobody else paid above the lowest tier limit
    item = aws.dynamodb.get_item(TableName=STATE, Key={"payer": {"S": "alice"}})["Item"]
    assert len(json.dumps(item)) < 1024


def test_real_kinesis_sequence_numbers_are_kept_exactly(aws: Aws) -> None:
    # Kinesis sequence numbers have 56 digits; DynamoDB numbers hold 38
    start = 49590338271490256608559692538361571095921575989136588898
    event = kinesis_event(burst(6), stream=VALIDATED, start=start)
    handle = handler(aws)
    assert handle(event, CTX) == {"batchItemFailures": []}
    state = aws.state("alice")
    assert state is not None
    [fence] = state["fences"].values()  # the low-water mark, then deltas in base 36
    assert fence == f"{start} 0 1 2 3 4 5"
    assert handle(event, CTX) == {"batchItemFailures": []}  # recognised as redelivered
    assert [p for p, r in alert_rules(aws) if r == "velocity"] == ["v5"]


def test_an_msk_batch_starting_at_offset_zero_is_evaluated(aws: Aws) -> None:
    event = msk_event(burst(6), topic=VALIDATED, partition=0, start=0)
    assert handler(aws)(event, CTX) == {"batchItemFailures": []}
    assert [p for p, r in alert_rules(aws) if r == "velocity"] == ["v5"]
    state = aws.state("alice")
    assert state is not None and state["payments"] == 6
    assert list(state["fences"].values()) == ["0 0 1 2 3 4 5"]


def test_a_lost_race_on_the_version_re_evaluates_against_the_winner(aws: Aws) -> None:
    # Given another writer stores alice's state between our read and our write
    real = DynamoItemStore(aws.dynamodb, STATE, key="payer")
    other = handler(aws)

    class Racing:
        raced = False

        def get_many(self, keys: Any) -> Any:
            return real.get_many(keys)

        def key_attributes(self, key: str) -> dict[str, Any]:
            return real.key_attributes(key)

        def put_if_version(self, item: Any, expected: Any) -> bool:
            if not Racing.raced:
                Racing.raced = True
                other(kinesis_event(burst(5, prefix="o"), stream=VALIDATED,
                                    shard="shardId-000000000001"), CTX)
            return real.put_if_version(item, expected)

    event = kinesis_event(burst(1, start=45, prefix="m"), stream=VALIDATED)
    assert handler(aws, state=Racing())(event, CTX) == {"batchItemFailures": []}
    # Then our payment is evaluated again with the winner's five: it is the sixth
    assert [p for p, r in alert_rules(aws) if r == "velocity"] == ["m0"]
    state = aws.state("alice")
    assert state is not None and state["payments"] == 6


def test_dependencies_come_from_the_settings_and_the_client_factory(aws: Aws) -> None:
    settings = FraudDetectSettings.from_env({
        "ALERTS_STREAM": ALERTS, "ALERTS_TABLE": VIEW, "FRAUD_STATE_TABLE": STATE,
        "PROFILES_TABLE": PROFILES, "QUARANTINE_BUCKET": BUCKET, "PIPELINE_STAGE": "test",
    })
    asked: list[str] = []

    def client(service: str) -> Any:
        asked.append(service)
        return boto3.client(service, region_name="us-east-1")

    built = fraud_detect.make_handler(fraud_detect.dependencies(settings, client=client))
    assert built(kinesis_event(burst(6), stream=VALIDATED), CTX) == {"batchItemFailures": []}
    # The factory is asked for a Kafka producer too; boto3 has none, so the outputs go to
    # Kinesis (`cascata_runtime.sinks`).
    assert set(asked) == {"dynamodb", "kinesis", "s3", KAFKA_PRODUCER}
    assert [p for p, r in alert_rules(aws) if r == "velocity"] == ["v5"]
