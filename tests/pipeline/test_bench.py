"""`cascata bench`: a tiny run end to end, the metering rules, and the compared scope."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import typer

from cascata.bench import report
from cascata.bench.functions import available
from cascata.bench.metering import InProcessAws, Meter, item_size, metered
from cascata.cli import app, main
from cascata.cli_extra import register
from cascata.pipeline import PIPELINE, Binding, EventSource, Processor

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
    code = main(["bench", "--json", "--events", "60", "--demo-events", "30",
                 "--unique-key-events", "40", "--batch-sizes", "5,20", "--rounds", "1",
                 "--cold-runs", "1", "--output", str(output)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert json.loads(output.read_text()) == result
    compared = result["scope"]["compared"]
    assert compared == ["validate", "postings", "balances"]
    for key in ("cost_per_million_usd", "wcu_per_event", "requests_per_1000_events"):
        assert set(result[key]) >= {"cascata", "baseline"}
        assert _positive(result[key]["cascata"]) and _positive(result[key]["baseline"]), key
    for key in ("handler_us_per_record", "cold_start_ms"):
        assert _positive(result[key]["baseline"]), key
        assert set(compared) <= set(result[key]["cascata"])
        assert all(_positive(result[key]["cascata"][f]) for f in compared), key
    local = result["local"]
    assert _positive(local["throughput_eps"]) and _positive(local["ceiling_eps"])
    assert local["throughput_eps"] < local["ceiling_eps"]
    assert result["handler_us_per_record_by_batch"].keys() == {"5", "20"}
    # The baseline writes an idempotency record and two balances per payment: it cannot spend
    # fewer write units than cascata's coalesced view; the table says so whatever the machine.
    assert result["wcu_per_event"]["baseline"] > result["wcu_per_event"]["cascata"]
    assert result["ratios"]["wcu_per_event"] < 1
    assert result["usage"]["failed_records"] == dict.fromkeys(result["usage"]["failed_records"], 0)


def test_bad_bench_arguments_get_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    _cli()
    for args in (["--rounds", "1,2,3"], ["--events", "0"], ["--batch-sizes", "a,b"],
                 ["--cold-runs", "0"]):
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
