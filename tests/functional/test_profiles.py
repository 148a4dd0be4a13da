"""profiles on moto: customer events and payments, whichever arrives first, effectively once.

Both sources are delivered as Lambda delivers them: Kinesis batches from `customers` and from
`payments-validated` (both with a `shardId-000000000000` whose sequence numbers start at 1, as
they would on two fresh streams), and an MSK batch. The view is read back from DynamoDB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer

from cascata_runtime.adapters import DynamoItemStore, S3ObjectStore
from payments.handlers import profiles
from payments.pipeline import PIPELINE
from payments.settings import ProfilesSettings
from tests.functional.conftest import BUCKET, Aws
from tests.support.events import (
    LambdaContext,
    customer_registered,
    customer_updated,
    derived,
    kinesis_event,
    msk_event,
    payment,
)

CTX = LambdaContext("cascata-test-profiles")
TABLE = "cascata-test-profiles"
CUSTOMERS = "cascata-test-customers"
PAYMENTS = "cascata-test-payments-validated"
# Real Kinesis sequence numbers have 56 digits: more than a DynamoDB number can hold.
REAL_SEQUENCE = 49590338271490256608559692538361571095921575989136588898


@pytest.fixture
def table(aws: Aws) -> Iterator[str]:
    aws.dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "customer_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "customer_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield TABLE


def store(aws: Aws) -> DynamoItemStore:
    return DynamoItemStore(aws.dynamodb, TABLE, key="customer_id")


def handler(aws: Aws, items: Any = None, **kwargs: Any) -> Any:
    return profiles.make_handler(
        profiles.Dependencies(
            quarantine_bucket=BUCKET,
            items=items or store(aws),
            objects=S3ObjectStore(aws.s3),
            **kwargs,
        )
    )


def profile(aws: Aws, customer: str) -> dict[str, Any]:
    raw = aws.dynamodb.get_item(TableName=TABLE, Key={"customer_id": {"S": customer}},
                                ConsistentRead=True).get("Item")
    if not raw:
        return {}
    des = TypeDeserializer()
    return {k: _plain(des.deserialize(v)) for k, v in raw.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def view(item: Mapping[str, Any]) -> dict[str, Any]:
    """The profile without its bookkeeping (version, fences)."""
    return {k: v for k, v in item.items() if k not in ("version", "fences")}


def customers_batch(*objs: dict[str, Any], start: int = 1) -> dict[str, Any]:
    return kinesis_event(objs, stream=CUSTOMERS, start=start)


def payments_batch(*objs: dict[str, Any], start: int = 1) -> dict[str, Any]:
    return kinesis_event(objs, stream=PAYMENTS, start=start)


def failed(response: Mapping[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


PAYMENTS_FIRST = payments_batch(
    payment("p1", payer="alice", payee="bob", amount_minor=20000,
            occurred_at="2020-06-25T14:06:00Z"),
    payment("p2", payer="bob", payee="alice", amount_minor=1500, currency="EUR",
            occurred_at="2020-06-25T14:07:30.250Z"),
)
CUSTOMER_EVENTS = customers_batch(
    customer_updated("u1", customer_id="alice", tier="premium",
                     occurred_at="2020-06-26T09:00:00Z"),
    customer_registered("r1", customer_id="alice", tier="basic"),
    customer_registered("r2", customer_id="bob", name="Bob Marley", email="bob@example.com",
                        country="jm", tier="basic"),
)


def test_payments_first_create_profiles_with_activity_only(aws: Aws, table: str) -> None:
    # When payments for two customers nobody has registered yet arrive
    assert handler(aws)(PAYMENTS_FIRST, CTX) == {"batchItemFailures": []}
    # Then each has a profile with its activity and no registration data, and no tier
    alice = profile(aws, "alice")
    assert alice["as_payer"] == {"USD": {"count": 1, "volume_minor": 20000}}
    assert alice["as_payee"] == {"EUR": {"count": 1, "volume_minor": 1500}}
    assert alice["first_seen_at"] == "2020-06-25T14:06:00Z"
    assert alice["last_seen_at"] == "2020-06-25T14:07:30.250Z"
    assert set(alice["counterparties"]) == {"bob"}
    assert alice["counterparties_truncated"] is False
    assert not {"tier", "name", "registered_at", "field_times"} & set(alice)


def test_registration_after_payments_fills_in_and_an_earlier_update_is_kept(
    aws: Aws, table: str
) -> None:
    # Given payments, then the customers stream with an update that precedes (in arrival)
    # the registration it amends; both streams start at shard 0, sequence 1
    handle = handler(aws)
    handle(PAYMENTS_FIRST, CTX)
    # When the customer events arrive
    assert handle(CUSTOMER_EVENTS, CTX) == {"batchItemFailures": []}
    # Then the registration fills in the fields, the later update keeps its tier, activity stays
    alice = profile(aws, "alice")
    assert alice["tier"] == "premium" and alice["name"] == "Alice Liddell"
    assert alice["field_times"]["tier"] == {"at": "2020-06-26T09:00:00Z", "event_id": "u1"}
    assert alice["field_times"]["email"] == {"at": "2020-06-25T14:00:00Z", "event_id": "r1"}
    assert alice["registered_at"] == "2020-06-25T14:00:00Z"
    assert alice["as_payer"] == {"USD": {"count": 1, "volume_minor": 20000}}
    bob = profile(aws, "bob")
    assert bob["tier"] == "basic" and bob["country"] == "JM"
    assert bob["as_payee"] == {"USD": {"count": 1, "volume_minor": 20000}}


def test_the_order_of_the_two_sources_does_not_matter(aws: Aws, table: str) -> None:
    handle = handler(aws)
    handle(PAYMENTS_FIRST, CTX)
    handle(CUSTOMER_EVENTS, CTX)
    payments_first = {c: view(profile(aws, c)) for c in ("alice", "bob")}
    aws.dynamodb.delete_item(TableName=TABLE, Key={"customer_id": {"S": "alice"}})
    aws.dynamodb.delete_item(TableName=TABLE, Key={"customer_id": {"S": "bob"}})
    handle(CUSTOMER_EVENTS, CTX)
    handle(PAYMENTS_FIRST, CTX)
    assert {c: view(profile(aws, c)) for c in ("alice", "bob")} == payments_first


def test_the_same_batches_delivered_twice_change_nothing_and_write_nothing(
    aws: Aws, table: str
) -> None:
    items = store(aws)
    handle = handler(aws, items)
    handle(PAYMENTS_FIRST, CTX)
    handle(CUSTOMER_EVENTS, CTX)
    before = {c: profile(aws, c) for c in ("alice", "bob")}
    writes = items.write_requests
    # When Lambda delivers both batches again
    assert handle(PAYMENTS_FIRST, CTX) == {"batchItemFailures": []}
    assert handle(CUSTOMER_EVENTS, CTX) == {"batchItemFailures": []}
    # Then the items are identical, version included: the fences turned every record away
    assert {c: profile(aws, c) for c in ("alice", "bob")} == before
    assert items.write_requests == writes


def test_a_payment_re_emitted_upstream_is_counted_once_for_payer_and_payee(
    aws: Aws, table: str
) -> None:
    # Given validate emitted p1 three times (crashes after emitting): the same lineage at new
    # positions, once in this batch and again in the next
    p1 = derived(payment("p1"), origin_sequence=3, low_water=3)
    p2 = derived(payment("p2", amount_minor=5), origin_sequence=4, low_water=3)
    handle = handler(aws)
    handle(payments_batch(p1, p1, p2), CTX)
    handle(payments_batch(p1, start=4), CTX)
    # Then it counts once on both sides
    assert profile(aws, "alice")["as_payer"] == {"USD": {"count": 2, "volume_minor": 20005}}
    assert profile(aws, "bob")["as_payee"] == {"USD": {"count": 2, "volume_minor": 20005}}


def test_partial_failure_then_retry_from_the_lowest_failed_sequence(
    aws: Aws, table: str
) -> None:
    real = store(aws)

    class FailBob:
        """bob's profile cannot be written (throttled); everyone else's can."""

        def get_many(self, keys: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
            return real.get_many(keys)

        def key_attributes(self, key: str) -> dict[str, Any]:
            return real.key_attributes(key)

        def put_if_version(self, item: Mapping[str, Any], expected: int | None) -> bool:
            if item["customer_id"] == "bob":
                raise RuntimeError("ProvisionedThroughputExceededException")
            return real.put_if_version(item, expected)

    batch = payments_batch(
        payment("p1", payer="alice", payee="carol", amount_minor=1),
        payment("p2", payer="alice", payee="bob", amount_minor=10),
        payment("p3", payer="carol", payee="dave", amount_minor=100),
        payment("p4", payer="dave", payee="bob", amount_minor=1000),
        payment("p5", payer="carol", payee="alice", amount_minor=10000),
    )
    # When bob's write fails
    response = handler(aws, FailBob())(batch, CTX)
    # Then exactly the records touching bob are reported, and the others are applied
    assert failed(response) == ["2", "4"]
    assert profile(aws, "carol")["as_payer"] == {"USD": {"count": 2, "volume_minor": 10100}}
    assert profile(aws, "bob") == {}
    # When Lambda retries from the lowest failed sequence number
    retry = {"Records": [r for r in batch["Records"] if int(r["kinesis"]["sequenceNumber"]) >= 2]}
    assert handler(aws)(retry, CTX) == {"batchItemFailures": []}
    # Then every profile counts every payment once (alice's p2 and dave's p4 were fenced)
    assert profile(aws, "bob")["as_payee"] == {"USD": {"count": 2, "volume_minor": 1010}}
    assert profile(aws, "alice")["as_payer"] == {"USD": {"count": 2, "volume_minor": 11}}
    assert profile(aws, "alice")["as_payee"] == {"USD": {"count": 1, "volume_minor": 10000}}
    assert profile(aws, "dave")["as_payer"] == {"USD": {"count": 1, "volume_minor": 1000}}
    assert profile(aws, "dave")["as_payee"] == {"USD": {"count": 1, "volume_minor": 100}}
    assert profile(aws, "carol")["as_payer"] == {"USD": {"count": 2, "volume_minor": 10100}}


def test_a_lost_race_rereads_and_merges(aws: Aws, table: str) -> None:
    # Given the other mapping writes alice's profile between our read and our write
    real = store(aws)
    other = handler(aws)

    class Racing:
        raced = False

        def get_many(self, keys: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
            return real.get_many(keys)

        def key_attributes(self, key: str) -> dict[str, Any]:
            return real.key_attributes(key)

        def put_if_version(self, item: Mapping[str, Any], expected: int | None) -> bool:
            if not Racing.raced:
                Racing.raced = True
                other(customers_batch(customer_registered("r1")), CTX)
            return real.put_if_version(item, expected)

    # When our payment batch is written
    assert handler(aws, Racing())(payments_batch(payment("p1", payee="carol")), CTX) == {
        "batchItemFailures": []
    }
    # Then the conditional put lost, the profile was re-read, and both are in it
    alice = profile(aws, "alice")
    assert alice["tier"] == "plus" and alice["as_payer"]["USD"]["count"] == 1
    assert alice["version"] == 2


def test_invalid_records_are_quarantined_and_the_rest_applied(aws: Aws, table: str) -> None:
    posting = {"event_id": "l1", "type": "ledger.posting", "version": 1, "key": "alice",
               "occurred_at": "2020-06-25T14:06:00Z",
               "data": {"account": "alice", "counterparty": "bob", "direction": "credit",
                        "amount_minor": 5, "currency": "USD", "payment_event_id": "x"}}
    batch = customers_batch(
        customer_registered("r1", email="alice-at-example.com"),
        customer_registered("r2", customer_id="bob", tier="gold"),
        posting,
        customer_updated("u1", customer_id="carol", country="FR"),
    )
    batch["Records"].append(json.loads(json.dumps(batch["Records"][0])))
    batch["Records"][-1]["kinesis"].update(sequenceNumber="5", data="bm90IGpzb24=")  # not json
    assert handler(aws)(batch, CTX) == {"batchItemFailures": []}
    reasons = {q["source"]["sequence"]: q["reason"]["code"] for q in aws.quarantined()}
    assert reasons == {"1": "invalid_email", "2": "invalid_tier", "3": "unexpected_type",
                       "5": "not_json"}
    assert all(q["processor"] == "profiles" for q in aws.quarantined())
    assert profile(aws, "carol")["country"] == "FR"
    assert profile(aws, "alice") == {} and profile(aws, "bob") == {}


def test_a_read_failure_fails_the_valid_records_and_still_quarantines(
    aws: Aws, table: str
) -> None:
    class Down:
        def get_many(self, keys: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
            raise RuntimeError("service unavailable")

        def key_attributes(self, key: str) -> dict[str, Any]:
            return {"customer_id": key}

        def put_if_version(self, item: Mapping[str, Any], expected: int | None) -> bool:
            raise AssertionError("nothing is written without a read")

    batch = customers_batch(customer_registered("r1", tier="gold"), customer_registered("r2"))
    assert failed(handler(aws, Down())(batch, CTX)) == ["2"]
    assert [q["reason"]["code"] for q in aws.quarantined()] == ["invalid_tier"]


def test_an_msk_batch_from_offset_zero_is_applied(aws: Aws, table: str) -> None:
    event = msk_event([customer_registered("r1"), customer_updated("u1", email="a@b.io")],
                      topic=CUSTOMERS, partition=0, start=0)
    assert handler(aws)(event, CTX) == {"batchItemFailures": []}
    alice = profile(aws, "alice")
    assert alice["tier"] == "plus" and alice["email"] == "a@b.io"
    # one chain (the partition), its low-water mark offset 0, offsets 0 and 1 applied
    assert list(alice["fences"].values()) == ["0 0 1"]


def test_one_write_per_profile_per_batch_and_a_bounded_item(aws: Aws, table: str) -> None:
    # Given a registered customer who then pays 25 people, 50 payments in one batch, read at
    # real 56-digit sequence numbers
    items = store(aws)
    handle = handler(aws, items)
    handle(customers_batch(customer_registered("r1"), start=REAL_SEQUENCE), CTX)
    writes = items.write_requests
    batch = payments_batch(
        *[payment(f"p{i}", payee=f"merchant.{i % 25:04d}", amount_minor=100 + i,
                  occurred_at=f"2020-06-25T14:{i:02d}:00Z") for i in range(50)],
        start=REAL_SEQUENCE,
    )
    assert handle(batch, CTX) == {"batchItemFailures": []}
    # Then alice and each of the 25 payees were written once
    assert items.write_requests - writes == 26
    alice = profile(aws, "alice")
    assert alice["as_payer"]["USD"]["count"] == 50
    # the 20 most recent counterparties stay and the item says there were more
    assert set(alice["counterparties"]) == {f"merchant.{i:04d}" for i in range(5, 25)}
    assert alice["counterparties_truncated"] is True
    # the fences hold, per source, the sequence numbers above its low-water mark as short
    # deltas: the registration's, and the batch's 50 payments'
    assert sorted(len(f.split()) for f in alice["fences"].values()) == [2, 51]
    assert all(f.split()[0] == str(REAL_SEQUENCE) for f in alice["fences"].values())
    # and the item stays within 2 write units (sized by DynamoDB's rules)
    assert item_bytes(aws, "alice") <= 2 * 1024


def item_bytes(aws: Aws, customer: str) -> int:
    raw = aws.dynamodb.get_item(TableName=TABLE, Key={"customer_id": {"S": customer}})["Item"]
    return sum(len(k.encode()) + _size(v) for k, v in raw.items())


def _size(value: Mapping[str, Any]) -> int:
    """DynamoDB's item size rules: UTF-8 strings, about 1 byte per 2 digits of a number, and
    3 bytes plus 1 per element of a map, on top of the names and values inside."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner.strip("-").replace(".", "").strip("0")) // 2 + 2
    if kind == "BOOL":
        return 1
    if kind == "B":
        return len(inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _size(v) + 1 for k, v in inner.items())
    raise AssertionError(f"unexpected attribute type {kind}")


def test_the_module_builds_from_the_declared_environment(aws: Aws, table: str) -> None:
    # Given the environment the pipeline declares for the function, as the local runtime does
    env = PIPELINE.environment("profiles", stage="test")
    assert env["PROFILES_TABLE"] == TABLE
    aws.s3.create_bucket(Bucket=env["QUARANTINE_BUCKET"])
    settings = profiles.SETTINGS.from_env(env)
    assert isinstance(settings, ProfilesSettings)
    # When the handler is built through the module's conventions
    deps = profiles.dependencies(
        settings, client=lambda service: boto3.client(service, region_name="us-east-1")
    )
    handle = profiles.make_handler(deps)
    # Then it runs against the declared table
    assert profiles.PROCESSOR == "profiles"
    assert PIPELINE.processor("profiles").handler == f"{profiles.__name__}.handler"
    assert handle(customers_batch(customer_registered("r1")), CTX) == {"batchItemFailures": []}
    assert profile(aws, "alice")["tier"] == "plus"
