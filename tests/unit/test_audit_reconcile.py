"""Reconciliation and the audit report: what counts as a difference, bounds for activity-view,
JSON-safe values, and `run_audit` end to end on moto's in-process S3 and DynamoDB."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cascata_runtime.archive import RawRecord
from payments.domain.fraud import DEFAULT_RULES, FraudRules
from payments.tooling.audit import (
    ACTIVITY,
    ALERTS,
    BALANCES,
    NO_TABLE,
    NOT_EXACT,
    PROFILES,
    SPECS,
    archive_objects,
    recompute,
    reconcile,
    run_audit,
)

BALANCE = {"account_id": "alice", "balances": {"USD": -2_000, "EUR": 5}, "postings": 2}


def test_bookkeeping_attributes_never_make_a_difference() -> None:
    view = {**BALANCE, "balances": {"USD": Decimal(-2000), "EUR": Decimal(5)},
            "postings": Decimal(2), "fences": {"0": "123"}, "recent": "abc", "version": 7}
    assert reconcile(SPECS[BALANCES], [BALANCE], [view]) == []


def test_every_kind_of_difference_is_listed_with_its_key_and_values() -> None:
    batch = [BALANCE, {"account_id": "bob", "balances": {"USD": 2_000}, "postings": 1}]
    view = [
        {"account_id": "alice", "balances": {"USD": Decimal(-1_000)}, "postings": Decimal(2)},
        {"account_id": "zoe", "balances": {"GBP": Decimal("1.5")}, "postings": Decimal(1)},
    ]
    found = [d.to_json() for d in reconcile(SPECS[BALANCES], batch, view)]
    assert found == [
        {"view": BALANCES, "key": {"account_id": "alice"}, "kind": "field",
         "field": "balances.EUR", "batch": 5, "view_value": None},
        {"view": BALANCES, "key": {"account_id": "alice"}, "kind": "field",
         "field": "balances.USD", "batch": -2_000, "view_value": -1_000},
        {"view": BALANCES, "key": {"account_id": "bob"}, "kind": "missing_in_view",
         "field": None, "batch": {"balances": {"USD": 2_000}, "postings": 1},
         "view_value": None},
        {"view": BALANCES, "key": {"account_id": "zoe"}, "kind": "unexpected_in_view",
         "field": None, "batch": None,
         "view_value": {"balances": {"GBP": "1.5"}, "postings": 1}},
    ]
    json.dumps(found)  # JSON-safe: no Decimal, no float


def test_values_differ_by_kind_too_and_dotted_ids_are_quoted() -> None:
    batch = [{"customer_id": "ana.0001", "counterparties": {"bob.0002": 5},
              "counterparties_truncated": False}]
    view = [{"customer_id": "ana.0001", "counterparties": {"bob.0002": Decimal(5)},
             "counterparties_truncated": Decimal(0)}]
    [diff] = reconcile(SPECS[PROFILES], batch, view)
    assert (diff.field, diff.batch_value, diff.view_value) == (
        "counterparties_truncated", False, 0)
    view[0]["counterparties"] = {"bob.0002": Decimal(6)}
    assert [d.field for d in reconcile(SPECS[PROFILES], batch, view)] == [
        'counterparties."bob.0002"', "counterparties_truncated"]


WINDOW = {
    "account_id": "alice", "window_key": "tumbling#2026-11-02T09:00:00Z", "window": "tumbling",
    "window_start": "2026-11-02T09:00:00Z", "window_end": "2026-11-02T09:05:00Z",
    "totals": {"out": {"USD": {"count": 3, "sum_minor": 60, "min_minor": 10,
                               "max_minor": 30}}},
    "payments": 3,
}


def window_item(count: int, sum_minor: int, low: int, high: int, **extra: Any
                ) -> dict[str, Any]:
    totals = {"out": {"USD": {"count": Decimal(count), "sum_minor": Decimal(sum_minor),
                              "min_minor": Decimal(low), "max_minor": Decimal(high)}}}
    return {**WINDOW, "totals": totals, "payments": Decimal(count), "status": "final",
            "fences": {"0": "9"}, **extra}


def test_activity_is_checked_against_bounds_only() -> None:
    spec = SPECS[ACTIVITY]
    # A window whose payments were partly late, or all late (no item), is no difference
    assert reconcile(spec, [WINDOW], [window_item(2, 40, 10, 30)]) == []
    assert reconcile(spec, [WINDOW], [window_item(1, 20, 20, 20)]) == []
    assert reconcile(spec, [WINDOW], []) == []
    # A window holding more than all its payments, or a smaller minimum, is one
    over = reconcile(spec, [WINDOW], [window_item(4, 70, 5, 30)])
    assert [d.field for d in over] == [
        "payments", "totals.out.USD.count", "totals.out.USD.min_minor",
        "totals.out.USD.sum_minor"]
    # and so is a currency, a window or an account the batch has no payment for
    odd = window_item(1, 10, 10, 10, window_start="2026-11-02T09:01:00Z")
    odd["totals"]["in"] = {"EUR": {"count": Decimal(1), "sum_minor": Decimal(1),
                                   "min_minor": Decimal(1), "max_minor": Decimal(1)}}
    assert {d.field for d in reconcile(spec, [WINDOW], [odd])} == {
        "window_start", "totals.in.EUR.count", "totals.in.EUR.sum_minor",
        "totals.in.EUR.min_minor", "totals.in.EUR.max_minor"}
    stray = {**window_item(1, 5, 5, 5), "account_id": "mallory"}
    assert [d.kind for d in reconcile(spec, [WINDOW], [stray])] == ["unexpected_in_view"]


# --- run_audit on moto ------------------------------------------------------------------------

TABLE_KEYS = {BALANCES: ("account_id", None), PROFILES: ("customer_id", None),
              ALERTS: ("account_id", "alert_key"), ACTIVITY: ("account_id", "window_key")}


def payment(event_id: str, payer: str, payee: str, amount: int) -> bytes:
    return json.dumps({
        "event_id": event_id, "type": "payment.made", "version": 1, "key": payer,
        "occurred_at": "2026-11-02T09:00:00Z",
        "data": {"payer": payer, "payee": payee, "amount_minor": amount, "currency": "USD"},
    }).encode()


def provision(tmp: Path, records: list[RawRecord], rules: FraudRules) -> tuple[Any, Any]:
    """An archive bucket holding `records` and view tables holding exactly their recomputation
    (plus bookkeeping attributes and activity-view's shard items, which the audit ignores)."""
    import boto3
    from boto3.dynamodb.types import TypeSerializer

    s3 = boto3.client("s3", region_name="us-east-1")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    s3.create_bucket(Bucket="archive")
    for key, body in archive_objects(records).items():
        s3.put_object(Bucket="archive", Key=key, Body=body)
    s3.put_object(Bucket="archive", Key="events/README", Body=b"not an archive object")
    for key, body in archive_objects(records).items():
        path = tmp / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    ser = TypeSerializer()
    for view, items in recompute(tmp, rules).items():
        pk, sk = TABLE_KEYS[view]
        schema = [{"AttributeName": pk, "KeyType": "HASH"}]
        attrs = [{"AttributeName": pk, "AttributeType": "S"}]
        if sk:
            schema.append({"AttributeName": sk, "KeyType": "RANGE"})
            attrs.append({"AttributeName": sk, "AttributeType": "S"})
        ddb.create_table(TableName=view, KeySchema=schema, AttributeDefinitions=attrs,
                         BillingMode="PAY_PER_REQUEST")
        for item in items:
            stored = {**item, "version": 3, "fences": {"0": "1"}}
            ddb.put_item(TableName=view, Item={k: ser.serialize(v) for k, v in stored.items()})
    ddb.put_item(TableName=ACTIVITY, Item={"account_id": {"S": "#shards"},
                                           "window_key": {"S": "payments/shard-0"}})
    return s3, ddb


@pytest.mark.usefixtures("aws")
def test_run_audit_reconciles_the_tables_of_a_version(tmp_path: Path) -> None:
    # Given an archive and a version's tables that match it
    records = [RawRecord("payments-raw", "shardId-000000000000", str(n), "k", 1_000 + n,
                         payment(f"p{n}", "alice", f"payee{n}", 60_000 * n))
               for n in range(1, 4)]
    records.append(RawRecord("payments-raw", "shardId-000000000000", "9", "k", 2_000, b"{"))
    s3, ddb = provision(tmp_path, records, DEFAULT_RULES)
    progress: list[str] = []
    tables = {v: v for v in (BALANCES, PROFILES, ALERTS, ACTIVITY)}
    # When the audit runs
    report = run_audit(s3=s3, dynamodb=ddb, archive_bucket="archive", tables=tables,
                       rules=DEFAULT_RULES, version="v2", on_progress=progress.append)
    # Then it finds nothing, says what it read, and what it could not compare exactly
    out = report.to_json()
    assert out["total_differences"] == 0 and out["differences"] == []
    assert out["version"] == "v2"
    assert out["archive"] == {"objects": 2, "events": 3, "errors": 1}
    assert out["views"][ALERTS]["batch_keys"] == out["views"][ALERTS]["view_keys"] == 5
    assert out["views"][ACTIVITY]["view_keys"] == out["views"][ACTIVITY]["batch_keys"]
    assert out["not_compared"] == {ACTIVITY: NOT_EXACT}
    assert progress and all(isinstance(p, str) for p in progress)

    # When the same tables are audited as if the version ran other rules, without a table
    stricter = FraudRules(new_payee_threshold_minor=200_000)
    report = run_audit(s3=s3, dynamodb=ddb, archive_bucket="archive",
                       tables={BALANCES: BALANCES, ALERTS: ALERTS}, rules=stricter,
                       version="v3", limit_examples=1)
    # Then the alerts those rules would not raise are unexpected, listed up to the limit
    out = report.to_json()
    assert out["views"][ALERTS]["differences"] == out["total_differences"] == 3
    assert [d["kind"] for d in out["differences"]] == ["unexpected_in_view"]
    assert out["not_compared"] == {PROFILES: NO_TABLE, ACTIVITY: NO_TABLE}
    json.dumps(out)


def test_run_audit_refuses_a_view_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="unknown view"):
        run_audit(s3=None, dynamodb=None, archive_bucket="b", tables={"ledger": "t"},
                  rules=DEFAULT_RULES, version="v1")
