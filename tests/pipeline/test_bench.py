"""`cascata bench`: a tiny run end to end, the metering rules, and the compared scope."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import typer

from cascata.cli import app, main
from cascata.cli_extra import register
from cascata.pipeline import Binding, EventSource, Index, Processor, Table
from payments.pipeline import PIPELINE
from payments.tooling.bench import functions as fns
from payments.tooling.bench import report, usage
from payments.tooling.bench.functions import available
from payments.tooling.bench.metering import InProcessAws, ItemSizes, Meter, item_size, metered
from payments.tooling.workload import Generated

pytestmark = pytest.mark.pipeline


def _cli() -> typer.Typer:
    registered = {c.callback.__name__ for c in app.registered_commands if c.callback}
    if "bench" not in registered:
        register(app)
    return app


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


def test_a_tiny_bench_reports_every_figure_measured_and_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli()
    output = tmp_path / "bench.json"
    code = main(["bench", "--json", "--events", "20", "--no-local",
                 "--unique-key-events", "20", "--batch-sizes", "5,20", "--rounds", "1",
                 "--cold-runs", "1", "--hot-share", "0.3", "--output", str(output)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert json.loads(output.read_text()) == result
    compared = result["scope"]["compared"]
    assert {"validate", "postings", "balances", "windows", "windows-close"} <= set(compared)
    for key in ("cost_per_million_usd", "wcu_per_event", "requests_per_1000_events"):
        assert set(result[key]) >= {"cascata", "baseline"}
        assert _positive(result[key]["cascata"]) and _positive(result[key]["baseline"]), key
    for section in ("pipeline", "hot_keys"):
        for key in ("cost_per_million_usd", "wcu_per_event", "windows_wcu_per_payment"):
            assert all(_positive(result[section][key][s]) for s in ("cascata", "baseline")), \
                (section, key)
    assert result["windows_wcu_per_payment"] == result["pipeline"]["windows_wcu_per_payment"]
    assert result["hot_keys"]["hot_share"] == 0.3
    for name in [*compared, "baseline/validate", "baseline/windows-close"]:
        figures = result["per_processor"][name]
        assert {"wcu_per_event", "cost_per_million_usd", "cost_per_event_usd"} <= set(figures)
    for key in ("handler_us_per_record", "cold_start_ms"):
        assert _positive(result[key]["baseline"]), key
        assert all(_positive(result[key]["cascata"][f]) for f in ("validate", "balances")), key
    assert result["local"]["skipped"]
    assert result["handler_us_per_record_by_batch"].keys() == {"5", "20"}
    # The baseline writes two idempotency records per event per function and one item per
    # event per view item: it cannot spend fewer write units than cascata.
    assert result["wcu_per_event"]["baseline"] > result["wcu_per_event"]["cascata"]
    assert result["ratios"]["wcu_per_event"] < 1
    breakdown = result["pipeline"]["cost_breakdown_per_million_usd"]["cascata"]
    for term in ("kinesis_ingest_producers", "firehose_archive", "stream_hours", "storage",
                 "cloudwatch_logs"):
        assert _positive(breakdown[term]), term
    for key in ("failed_records", "baseline_failed_records"):
        assert not any(result["usage"][key].values()), key


def test_bad_bench_arguments_get_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    _cli()
    for args in (["--rounds", "1,2,3"], ["--events", "0"], ["--batch-sizes", "a,b"],
                 ["--cold-runs", "0"], ["--hot-share", "2"], ["--rate", "0"]):
        assert main(["bench", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error"), err


def test_write_units_come_from_item_sizes_and_failed_conditions_are_charged() -> None:
    with InProcessAws() as aws:
        ddb = aws.client("dynamodb")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        meter = Meter()
        client = metered(meter)("dynamodb", ddb)
        big = {"pk": {"S": "a"}, "payload": {"S": "x" * 2500}}
        # Given a 2.5 KB item written once: 3 units
        client.put_item(TableName="t", Item=big)
        assert meter.write_units == 3
        # When a conditional put of a small item fails against it: charged on the larger, 3
        with pytest.raises(Exception, match="ConditionalCheckFailed"):
            client.put_item(TableName="t", Item={"pk": {"S": "a"}},
                            ConditionExpression="attribute_not_exists(pk)")
        assert meter.write_units == 6 and meter.conditional_failures == 1
        # When an update shrinks it: charged on the item before, 3
        client.update_item(TableName="t", Key={"pk": {"S": "a"}}, UpdateExpression="REMOVE payload")
        assert meter.write_units == 9
        # and a strongly consistent read of a missing item still costs one read unit
        client.get_item(TableName="t", Key={"pk": {"S": "zz"}}, ConsistentRead=True)
        assert meter.read_units == 1
        assert meter.requests == {"dynamodb.PutItem": 2, "dynamodb.UpdateItem": 1,
                                  "dynamodb.GetItem": 1}


def test_item_sizes_follow_dynamodb_rules() -> None:
    # names count; a number is about one byte per two digits plus one; maps add 3 + 1 per entry
    assert item_size({"ab": {"S": "xyz"}}) == 5
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1
    assert item_size({"b": {"BOOL": True}}) == 2


def test_the_compared_scope_is_what_the_balances_view_needs() -> None:
    assert report.scope(PIPELINE) == ["validate", "postings", "balances"]
    assert report.nearest_batch([100, 1000], 200) == 100
    assert report.nearest_batch([100, 1000], 500) == 1000


def test_processors_without_a_working_handler_are_skipped_and_named() -> None:
    # Given a processor declared before its handler module exists
    ghost = Processor(
        name="ghost", handler="payments.handlers.ghost.handler", description="not yet",
        sources=(EventSource(stream="payments-validated"),),
        bindings=(Binding(env="QUARANTINE_BUCKET", resource="quarantine", access="write"),),
    )
    pipeline = dataclasses.replace(PIPELINE, processors=(*PIPELINE.processors, ghost))
    # Then the bench leaves it out, says why, and keeps every processor that builds
    found = available(pipeline)
    assert "ModuleNotFoundError" in found.skipped["ghost"]
    assert {"validate", "postings", "balances"} <= set(found.names)
    assert "ghost" not in found.names


def test_index_writes_are_metered_from_the_declared_indexes() -> None:
    # Given a declared table with a KEYS_ONLY index on (phase, closes_at)
    table = Table(name="windows-t", description="t", partition_key="pk",
                  indexes=(Index(name="open", partition_key="phase", sort_key="closes_at",
                                 projection="KEYS_ONLY"),))
    with InProcessAws() as aws:
        ddb = aws.client("dynamodb")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        meter = Meter()
        client = metered(meter, ItemSizes(tables={"t": table}))("dynamodb", ddb)

        def add(extra: str = "") -> None:
            client.update_item(TableName="t", Key={"pk": {"S": "a"}},
                               UpdateExpression="ADD n :one" + extra,
                               ExpressionAttributeValues={":one": {"N": "1"}, **(
                                   {":s": {"S": "open"}, ":c": {"S": "09:05"}} if extra else {})})

        # When the item is created with the index keys: one write and one index write
        add(" SET phase = :s, closes_at = :c")
        assert (meter.write_units, meter.index_write_units) == (2, 1)
        # When a counter the index does not project changes: no index write
        add()
        assert (meter.write_units, meter.index_write_units) == (3, 1)
        # When an index key is removed, the entry leaves the index: one index write
        client.update_item(TableName="t", Key={"pk": {"S": "a"}}, UpdateExpression="REMOVE phase")
        assert (meter.write_units, meter.index_write_units) == (5, 2)
        assert meter.write_units_by_table == {"windows-t": 5}


def _payment(seq: int, event_id: str, payer: str, payee: str, at: str) -> Generated:
    data = {"event_id": event_id, "type": "payment.made", "version": 1, "key": payer,
            "occurred_at": at, "data": {"payer": payer, "payee": payee, "amount_minor": 1250,
                                        "currency": "EUR", "channel": "card"}}
    return Generated(seq, payer, json.dumps(data).encode(), event_id, True, None, False,
                     payer, payee, 1250, "EUR", at)


def test_the_baseline_writes_per_event_what_the_powertools_way_writes() -> None:
    # Given two payments by one payer to one payee a second apart, and a resend of the first
    first = _payment(0, "7d0d7f0e-5b0a-4f57-9d4c-0f2f8a1c3b01", "ada.0001", "bob.0002",
                     "2026-11-02T09:01:00Z")
    second = _payment(1, "7d0d7f0e-5b0a-4f57-9d4c-0f2f8a1c3b02", "ada.0001", "bob.0002",
                      "2026-11-02T09:01:01Z")
    resend = dataclasses.replace(first, seq=2, duplicate=True)
    baseline = fns.only(fns.baseline_pipeline(), ["validate", "postings", "balances", "windows"])
    baseline = dataclasses.replace(baseline, scheduled=())
    # When the baseline processes them
    side = usage.run_side(baseline, [first, second, resend])
    assert not side.failed
    meters = side.meters
    # Then validate claims and completes each payment (2 writes) and is charged a failed claim
    # for the resend, which goes no further
    assert meters["validate"].write_units == 2 * 2 + 1
    assert meters["validate"].conditional_failures == 1
    assert meters["postings"].write_units == 2 * 2
    # balances: per posting (two per payment) a claim, a completion and one UpdateItem
    assert meters["balances"].write_units == 4 * 3
    # windows: per payment a claim, a completion and 6 UpdateItems (a tumbling and two hopping
    # windows, payer and payee); the first payment creates the 6 items, each entering the
    # open-by-close index once; the second changes nothing the index holds
    assert meters["windows"].write_units == 2 * 8 + 6
    assert meters["windows"].index_write_units == 6


def test_the_baseline_raises_alerts_and_publishes_them() -> None:
    # Given six payments by one payer within a minute (over the velocity limit)
    payments = [_payment(i, f"7d0d7f0e-5b0a-4f57-9d4c-0f2f8a1c3c{i:02d}", "ada.0001",
                         "bob.0002", f"2026-11-02T09:01:{i:02d}Z") for i in range(6)]
    baseline = dataclasses.replace(fns.only(fns.baseline_pipeline(),
                                            ["validate", "fraud-detect"]), scheduled=())
    side = usage.run_side(baseline, payments)
    fraud = side.meters["fraud-detect"]
    # Then every record succeeds, one alert item is written (its by-day index entry too) and
    # published: per payment a claim, a completion and the rule state
    assert fraud.failed_records == 0
    assert fraud.requests["sns.Publish"] == 1
    assert fraud.write_units == 6 * 3 + 1 + 1 and fraud.index_write_units == 1


def test_the_local_section_replays_the_demos_own_requests_for_the_emulators_ceiling() -> None:
    """The ceiling is the same requests the functions made, replayed alone: the runtime
    cannot beat it, and the requests it names are the pipeline's."""
    from payments.pipeline import PIPELINE
    from payments.tooling.bench import local
    from payments.tooling.bench.report import _local
    from payments.tooling.workload import WorkloadSpec

    measured = local.measure(PIPELINE, WorkloadSpec(events=120, seed=3), timeout_s=240,
                             offered_eps=400)
    figures = _local(measured)
    assert figures["demo_ok"], figures["demo_failed_invariants"]
    assert _positive(figures["throughput_eps"]) and _positive(figures["ceiling_eps"])
    # The ratio of two timings on a shared machine: positive, and that is all a test may say
    # (the replayed requests usually run faster than the demo, but not under every load).
    assert figures["ratio"] > 0
    assert _positive(figures["peak_rss_mb"])
    calls = figures["emulator_calls"]
    # one origin marker per event, one versioned put per key per batch, reads per batch
    assert calls["dynamodb.put_item"] > 120 * 0.9
    assert calls["dynamodb.batch_get_item"] > 0 and calls["kinesis.put_records"] > 0
    assert figures["emulator_calls_per_payment"] == pytest.approx(
        sum(calls.values()) / measured.replayed.ceiling_eps / measured.replayed.seconds, rel=0.01)
    offered = figures["offered"]
    assert offered["offered_eps"] == 400 and offered["demo_ok"]
    assert 0 < offered["latency_ms"]["p50"] <= offered["latency_ms"]["p99"]
