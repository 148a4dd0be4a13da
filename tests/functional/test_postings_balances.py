"""postings and balances on moto: double entry re-keyed by account, balances effectively once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from cascata_runtime.adapters import DynamoItemStore, S3ObjectStore
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.handler import TransformDependencies
from payments.handlers import balances, postings
from tests.functional.conftest import BUCKET, LEDGER, TABLE, VALIDATED, Aws
from tests.support.events import (
    LambdaContext,
    derived,
    kinesis_event,
    kinesis_record,
    payment,
)

CTX = LambdaContext("cascata-test")


def postings_handler(aws: Aws) -> Any:
    return postings.make_handler(
        TransformDependencies(
            output_stream=LEDGER,
            quarantine_bucket=BUCKET,
            sink=KinesisSink(aws.kinesis, sleep=lambda _s: None),
            objects=S3ObjectStore(aws.s3),
        )
    )


def balances_handler(aws: Aws, store: Any = None) -> Any:
    return balances.make_handler(
        balances.Dependencies(
            quarantine_bucket=BUCKET,
            items=store or DynamoItemStore(aws.dynamodb, TABLE, key="account_id"),
            objects=S3ObjectStore(aws.s3),
        )
    )


def balance(aws: Aws, account: str) -> dict[str, int]:
    item = aws.dynamodb.get_item(TableName=TABLE, Key={"account_id": {"S": account}},
                                 ConsistentRead=True).get("Item")
    if not item:
        return {}
    return {cur: int(v["N"]) for cur, v in item["balances"]["M"].items()}


def ledger_event(aws: Aws) -> dict[str, Any]:
    """The ledger-entries records as the balances function would receive them, per shard."""
    records = []
    for shard in aws.kinesis.list_shards(StreamName=LEDGER)["Shards"]:
        it = aws.kinesis.get_shard_iterator(StreamName=LEDGER, ShardId=shard["ShardId"],
                                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for r in aws.kinesis.get_records(ShardIterator=it, Limit=10_000)["Records"]:
            records.append(kinesis_record(r["Data"], sequence=r["SequenceNumber"],
                                          partition_key=r["PartitionKey"], stream=LEDGER,
                                          shard=shard["ShardId"]))
    return {"Records": records}


def by_shard(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Lambda delivers one shard per batch."""
    shards: dict[str, list[dict[str, Any]]] = {}
    for r in event["Records"]:
        shards.setdefault(r["eventID"].split(":")[0], []).append(r)
    return [{"Records": v} for v in shards.values()]


def test_each_payment_becomes_a_debit_and_a_credit_keyed_by_account(aws: Aws) -> None:
    event = kinesis_event([payment("p1", amount_minor=20000)], stream=VALIDATED)
    assert postings_handler(aws)(event, CTX) == {"batchItemFailures": []}
    out = aws.stream_records(LEDGER)
    sides = {r["event"]["data"]["direction"]: r for r in out}
    assert sides["debit"]["key"] == "alice" and sides["credit"]["key"] == "bob"
    assert sides["debit"]["event"]["data"]["amount_minor"] == 20000
    assert sides["debit"]["event"]["type"] == "ledger.posting"
    assert sides["debit"]["event"]["correlation_id"] == "p1"
    # deterministic: the same payment yields the same posting ids
    postings_handler(aws)(event, CTX)
    ids = Counter(r["event"]["event_id"] for r in aws.stream_records(LEDGER))
    assert sorted(ids.values()) == [2, 2]


def test_balances_apply_postings_and_sum_to_zero(aws: Aws) -> None:
    payments = [payment("p1", amount_minor=20000), payment("p2", payer="bob", payee="carol",
                amount_minor=500), payment("p3", amount_minor=7, currency="EUR")]
    postings_handler(aws)(kinesis_event(payments, stream=VALIDATED), CTX)
    for batch in by_shard(ledger_event(aws)):
        assert balances_handler(aws)(batch, CTX) == {"batchItemFailures": []}
    assert balance(aws, "alice") == {"USD": -20000, "EUR": -7}
    assert balance(aws, "bob") == {"USD": 19500, "EUR": 7}
    assert balance(aws, "carol") == {"USD": 500}


def run_all(aws: Aws, handle: Any, batches: list[dict[str, Any]]) -> None:
    for batch in batches:
        handle(batch, CTX)


def snapshot(aws: Aws) -> dict[str, dict[str, int]]:
    return {a: balance(aws, a) for a in ("alice", "bob", "carol", "dave")}


def setup_ledger(aws: Aws) -> list[dict[str, Any]]:
    payments = [payment(f"p{i}", payer=p, payee=q, amount_minor=100 * (i + 1))
                for i, (p, q) in enumerate([("alice", "bob"), ("bob", "carol"),
                                            ("carol", "dave"), ("alice", "dave")])]
    postings_handler(aws)(kinesis_event(payments, stream=VALIDATED), CTX)
    return by_shard(ledger_event(aws))


EXPECTED = {"alice": {"USD": -500}, "bob": {"USD": -100}, "carol": {"USD": -100},
            "dave": {"USD": 700}}


def test_the_same_batch_delivered_twice_changes_nothing(aws: Aws) -> None:
    batches = setup_ledger(aws)
    handle = balances_handler(aws)
    run_all(aws, handle, batches)
    run_all(aws, handle, batches)
    assert snapshot(aws) == EXPECTED


def test_partial_failure_then_retry_from_lowest_failed_sequence(aws: Aws) -> None:
    batches = setup_ledger(aws)
    real = DynamoItemStore(aws.dynamodb, TABLE, key="account_id")

    class FailDave:
        def get_many(self, keys: Any) -> Any:
            return real.get_many(keys)

        def key_attributes(self, key: str) -> dict[str, Any]:
            return real.key_attributes(key)

        def put_if_version(self, item: Any, expected: Any) -> bool:
            if item["account_id"] == "dave":
                raise RuntimeError("throttled")
            return real.put_if_version(item, expected)

    flaky = balances_handler(aws, FailDave())
    for batch in batches:
        response = flaky(batch, CTX)
        failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        dave_seqs = [r["kinesis"]["sequenceNumber"] for r in batch["Records"]
                     if r["kinesis"]["partitionKey"] == "dave"]
        assert failed == dave_seqs
        if failed:
            lowest = min(int(s) for s in failed)
            retry = {"Records": [r for r in batch["Records"]
                                 if int(r["kinesis"]["sequenceNumber"]) >= lowest]}
            assert balances_handler(aws)(retry, CTX) == {"batchItemFailures": []}
    assert snapshot(aws) == EXPECTED


def test_copies_re_emitted_upstream_at_new_positions_are_applied_once(aws: Aws) -> None:
    # Given validate re-emitted p0 after a crash (the same lineage at a new position), and
    # postings ran its batch twice (crashed after emitting): four copies of each posting
    p0 = derived(payment("p0", amount_minor=100), origin_sequence=7, low_water=7)
    p1 = derived(payment("p1", amount_minor=5), origin_sequence=8, low_water=7)
    validated = kinesis_event([p0, p1, p0], stream=VALIDATED)
    postings_handler(aws)(validated, CTX)
    postings_handler(aws)(validated, CTX)
    batches = by_shard(ledger_event(aws))
    assert sum(len(b["Records"]) for b in batches) == 12
    # When balances reads them all, in two deliveries
    run_all(aws, balances_handler(aws), batches)
    run_all(aws, balances_handler(aws), batches)
    # Then every posting counts once
    assert balance(aws, "alice") == {"USD": -105}
    assert balance(aws, "bob") == {"USD": 105}


def test_distinct_payments_without_lineage_are_told_apart_by_position(aws: Aws) -> None:
    # Given records written to ledger-entries by something that stamps no lineage
    handle = balances_handler(aws)
    first = kinesis_event([posting_event("x1", 5)], stream=LEDGER)
    second = kinesis_event([posting_event("x2", 7)], stream=LEDGER, start=2)
    handle(first, CTX)
    handle(second, CTX)
    handle(first, CTX)  # a redelivery of the same record
    assert balance(aws, "alice") == {"USD": 12}


def posting_event(event_id: str, amount_minor: int) -> dict[str, Any]:
    return {"event_id": event_id, "type": "ledger.posting", "version": 1, "key": "alice",
            "occurred_at": "2020-06-25T14:06:00Z",
            "data": {"account": "alice", "counterparty": "bob", "direction": "credit",
                     "amount_minor": amount_minor, "currency": "USD",
                     "payment_event_id": "x"}}


def test_an_invalid_posting_is_quarantined_and_the_rest_applied(aws: Aws) -> None:
    good = {"event_id": "g", "type": "ledger.posting", "version": 1, "key": "alice",
            "occurred_at": "2020-06-25T14:06:00Z",
            "data": {"account": "alice", "counterparty": "bob", "direction": "credit",
                     "amount_minor": 5, "currency": "USD", "payment_event_id": "x"}}
    bad = json.loads(json.dumps(good)) | {"event_id": "b"}
    bad["data"]["direction"] = "sideways"
    event = kinesis_event([good, bad], stream=LEDGER)
    assert balances_handler(aws)(event, CTX) == {"batchItemFailures": []}
    assert balance(aws, "alice") == {"USD": 5}
    [q] = aws.quarantined()
    assert q["reason"]["code"] == "invalid_direction" and q["processor"] == "balances"


def test_one_write_per_account_per_batch(aws: Aws) -> None:
    store = DynamoItemStore(aws.dynamodb, TABLE, key="account_id")
    payments = [payment(f"p{i}", amount_minor=1) for i in range(50)]
    postings_handler(aws)(kinesis_event(payments, stream=VALIDATED), CTX)
    batches = by_shard(ledger_event(aws))
    run_all(aws, balances_handler(aws, store), batches)
    assert store.write_requests == 2  # alice and bob, 100 postings
    assert balance(aws, "bob") == {"USD": 50}
    item = aws.dynamodb.get_item(TableName=TABLE, Key={"account_id": {"S": "bob"}},
                                 ReturnConsumedCapacity="TOTAL")
    assert len(json.dumps(item["Item"])) < 1024  # one write unit per account write
