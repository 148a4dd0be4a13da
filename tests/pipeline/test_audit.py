"""The batch audit against the real pipeline on the embedded emulator.

The pipeline runs a generated workload (valid, invalid and duplicate payments, fraud bursts,
customer events); the archive is built here from what the raw streams hold, read back from
TRIM_HORIZON (not by the local archiver: this test must not depend on it); the audit must find
the views equal to their recomputation, then find exactly the damage done to them.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from cascata.local.emulator import EmbeddedAws
from cascata.local.runtime import LocalRuntime
from cascata.producer import Outgoing, produce
from cascata_runtime.archive import RawRecord
from payments.domain.fraud import DEFAULT_RULES
from payments.pipeline import PIPELINE
from payments.tooling.audit import (
    ACTIVITY,
    ALERTS,
    BALANCES,
    PROFILES,
    VIEWS,
    archive_objects,
    run_audit,
)
from payments.tooling.workload import Generated, WorkloadSpec, generate, generate_customers

pytestmark = pytest.mark.pipeline

BUCKET = "audit-test-archive"
ORIGINS = ("customers", "payments-raw")


@pytest.fixture(scope="module")
def pipeline_run() -> Iterator[LocalRuntime]:
    """The pipeline after a workload: customers first and drained (so every payment sees its
    payer's registration, and tiers are determinate), then the payments, drained."""
    aws = EmbeddedAws().start()
    # The local archiver is not part of this test: the archive is built below.
    pipeline = (dataclasses.replace(PIPELINE, archives=())
                if getattr(PIPELINE, "archives", ()) else PIPELINE)
    runtime = LocalRuntime(pipeline, aws, stage="audittest")
    try:
        runtime.start()
        runtime.run_in_background()
        spec = WorkloadSpec(events=400, seed=21, fraud_share=0.06)
        customers = generate_customers(spec)
        payments = [Outgoing(e.key, e.data) for e in generate(spec)]
        kinesis = aws.client("kinesis")
        for stream, events in (("customers", [Outgoing(c.key, c.data) for c in customers]),
                               ("payments-raw", payments + tier_payments(customers))):
            report = produce(kinesis, runtime.name(stream), events)
            assert report.failed == 0
            runtime.drain(120)
        yield runtime
    finally:
        runtime.close()
        aws.stop()


def tier_payments(customers: list[Generated]) -> list[Outgoing]:
    """3,000.00 USD from registered customers of each tier: above basic's limit, below plus's
    and premium's, so whether tier_limit fires depends on the tier fraud-detect read."""
    tiers: dict[str, set[str]] = {}
    for c in customers:
        if c.valid and c.customer and "tier" in c.customer:
            tiers.setdefault(c.key, set()).add(c.customer["tier"])
    chosen = {tier: [k for k, ts in sorted(tiers.items()) if ts == {tier}][:2]
              for tier in ("basic", "plus", "premium")}
    out = []
    for n, payer in enumerate(p for payers in chosen.values() for p in payers):
        event = {"event_id": f"large-{n}", "type": "payment.made", "version": 1, "key": payer,
                 "occurred_at": f"2026-11-03T09:00:{n:02d}Z",
                 "data": {"payer": payer, "payee": "merchant.large", "amount_minor": 300_000,
                          "currency": "USD"}}
        out.append(Outgoing(payer, json.dumps(event).encode()))
    assert len(out) == 6
    return out


def raw_records(kinesis: Any, physical: str, declared: str) -> Iterator[RawRecord]:
    """Every record of a stream, per shard from TRIM_HORIZON, as the archiver would see it."""
    for shard in kinesis.list_shards(StreamName=physical)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=physical, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1_000)
            for r in page["Records"]:
                arrival = r["ApproximateArrivalTimestamp"].astimezone(UTC)
                yield RawRecord(
                    stream=declared, shard_id=shard["ShardId"],
                    sequence_number=r["SequenceNumber"], partition_key=r["PartitionKey"],
                    arrival_ms=round(arrival.timestamp() * 1000), data=r["Data"],
                )
            if not page["Records"] or page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")


def audit(runtime: LocalRuntime) -> dict[str, Any]:
    aws = runtime.aws
    report = run_audit(
        s3=aws.client("s3"), dynamodb=aws.client("dynamodb"), archive_bucket=BUCKET,
        tables={view: runtime.name(view) for view in VIEWS}, rules=DEFAULT_RULES,
        version="v1",
    )
    return report.to_json()


def test_the_audit_finds_the_views_equal_then_exactly_the_damage(
    pipeline_run: LocalRuntime,
) -> None:
    runtime = pipeline_run
    aws = runtime.aws
    s3 = aws.client("s3")
    ddb = aws.client("dynamodb")
    # Given the archive of both raw streams
    kinesis = aws.client("kinesis")
    records = [r for name in ORIGINS for r in raw_records(kinesis, runtime.name(name), name)]
    s3.create_bucket(Bucket=BUCKET)
    for key, body in archive_objects(records).items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    # When the audit runs over the pipeline's views
    clean = audit(runtime)
    # Then the views equal their recomputation, and there was something to compare
    assert clean["differences"] == [] and clean["total_differences"] == 0
    assert clean["archive"]["events"] + clean["archive"]["errors"] == len(records)
    assert clean["archive"]["errors"] > 0  # the workload's not-JSON and bad-time records
    views = clean["views"]
    assert views[BALANCES]["batch_keys"] == views[BALANCES]["view_keys"] >= 40
    assert views[PROFILES]["batch_keys"] == views[PROFILES]["view_keys"] >= 40
    assert views[ALERTS]["batch_keys"] == views[ALERTS]["view_keys"] >= 10
    alerts = list(_scan(ddb, runtime.name(ALERTS)))
    assert Counter(a["evidence"]["tier"] for a in alerts if a["rule"] == "tier_limit"
                   and a["payment_event_id"].startswith("large-")) == {"basic": 2}
    assert views[ACTIVITY]["view_keys"] > 0
    assert set(clean["not_compared"]) == {ACTIVITY}

    # When one balance and one alert are overwritten and one profile is deleted
    ser = TypeSerializer()
    des_items = {view: list(_scan(ddb, runtime.name(view))) for view in (BALANCES, ALERTS,
                                                                         PROFILES)}
    balance = des_items[BALANCES][0]
    currency = sorted(balance["balances"])[0]
    wrong_balance = int(balance["balances"][currency]) + 1
    ddb.put_item(TableName=runtime.name(BALANCES), Item={k: ser.serialize(v) for k, v in {
        **balance, "balances": {**balance["balances"], currency: wrong_balance}}.items()})
    alert = next(a for a in des_items[ALERTS] if a["rule"] == "velocity")
    ddb.put_item(TableName=runtime.name(ALERTS), Item={k: ser.serialize(v) for k, v in {
        **alert, "severity": "low", "notified_at": "2026-11-02T10:00:00Z"}.items()})
    profile = des_items[PROFILES][0]
    ddb.delete_item(TableName=runtime.name(PROFILES),
                    Key={"customer_id": {"S": profile["customer_id"]}})
    damaged = audit(runtime)

    # Then exactly those three differences are listed, nothing else
    assert damaged["total_differences"] == 3
    by_view = {d["view"]: d for d in damaged["differences"]}
    assert len(by_view) == 3
    assert by_view[BALANCES] == {
        "view": BALANCES, "key": {"account_id": balance["account_id"]}, "kind": "field",
        "field": f"balances.{currency}", "batch": int(balance["balances"][currency]),
        "view_value": wrong_balance,
    }
    assert by_view[ALERTS] == {
        "view": ALERTS, "key": {"account_id": alert["account_id"],
                                "alert_key": alert["alert_key"]},
        "kind": "field", "field": "severity", "batch": "medium", "view_value": "low",
    }
    missing = by_view[PROFILES]
    assert (missing["kind"], missing["key"], missing["view_value"]) == (
        "missing_in_view", {"customer_id": profile["customer_id"]}, None)
    assert missing["batch"]["as_payer"] or missing["batch"]["as_payee"]


def _scan(ddb: Any, table: str) -> Iterator[dict[str, Any]]:
    from payments.tooling.audit import scan_table

    yield from scan_table(ddb, table)
