"""`cascata plan`: fan-out from the declaration, shards, concurrency, capacity, cost, limits."""

from __future__ import annotations

import dataclasses
import json
import math
from decimal import Decimal

import pytest
import typer

from cascata import prices
from cascata.cli import app, main
from cascata.cli_extra import register
from cascata.pipeline import Binding, Bucket, EventSource, Pipeline, Processor, Stream, Table
from cascata.plan import (
    ASSUMPTIONS,
    LIMITS,
    BrokerCost,
    Plan,
    PlanError,
    compare,
    distinct,
    plan,
)
from payments.pipeline import PIPELINE
from payments.tooling.cost_models import INVALID_SHARE


def _cli() -> typer.Typer:
    registered = {c.callback.__name__ for c in app.registered_commands if c.callback}
    if "plan" not in registered:
        register(app)
    return app


def _hits(result: Plan, limit: str) -> list[str]:
    return [c.resource for c in result.hits if c.limit == limit]


def test_fan_out_follows_the_declaration() -> None:
    # Given 1,000 payments a second of 300 bytes
    result = plan(1000, 300)
    # Then validate passes the valid ones on, postings doubles them, and every declared
    # consumer of a stream is counted on it
    valid = 1000 * (1 - INVALID_SHARE)
    assert result.streams["payments-raw"].records_per_s == pytest.approx(1000)
    assert result.streams["payments-validated"].records_per_s == pytest.approx(valid)
    assert result.streams["ledger-entries"].records_per_s == pytest.approx(2 * valid)
    readers = sum(1 for p in PIPELINE.processors for s in p.sources
                  if s.stream == "payments-validated")
    assert result.streams["payments-validated"].consumers == readers
    assert result.functions["balances"].records_per_s == pytest.approx(2 * valid)
    # and derived records are bigger than raw ones (they carry lineage)
    assert result.streams["ledger-entries"].record_bytes > result.streams[
        "payments-raw"].record_bytes


def test_shards_keep_every_stream_within_the_per_shard_limits() -> None:
    result = plan(20_000, 1000)
    u = ASSUMPTIONS.target_utilisation
    for stream in result.streams.values():
        assert stream.records_per_s <= stream.shards * LIMITS[
            "kinesis_shard_write_records"].value * u + 1e-6
        assert stream.bytes_per_s <= stream.shards * LIMITS["kinesis_shard_write_bytes"].value * u
        assert stream.bytes_per_s * max(1, stream.consumers) <= stream.shards * LIMITS[
            "kinesis_shard_read_bytes"].value * u
    # 20k records/s of 1 KB into the raw stream needs at least 25 shards at 80%
    assert result.streams["payments-raw"].shards >= 25


def test_concurrency_is_one_per_shard_lane() -> None:
    result = plan(5000, 400)
    for proc in PIPELINE.processors:
        lanes = sum(result.streams[s.stream].shards * s.parallelization_factor
                    for s in proc.sources)
        assert result.functions[proc.name].max_concurrency == lanes


def test_a_quiet_pipeline_hits_no_limit_and_costs_mostly_fixed_hours() -> None:
    result = plan(1, 300)
    assert result.hits == []
    active = [s for s in result.streams.values() if s.records_per_s > 0]
    fixed = len(active) * prices.HOURS_PER_MONTH * prices.usd("kinesis_shard_hour")
    assert result.monthly_usd["kinesis"] == pytest.approx(fixed, rel=0.05)


def test_a_hot_account_hits_the_per_shard_limit_that_more_shards_cannot_fix() -> None:
    hot = dataclasses.replace(ASSUMPTIONS, hot_key_share=0.05)
    result = plan(50_000, 300, assumptions=hot)
    # 5% of 50k payments on one account: 2,500 records/s on one raw shard, 5,000 postings/s
    assert "payments-raw (busiest key)" in _hits(result, "kinesis_shard_write_records")
    assert "ledger-entries (busiest key)" in _hits(result, "kinesis_shard_write_records")


def test_big_records_hit_the_six_megabyte_invocation_payload() -> None:
    result = plan(2, 200_000)
    assert "validate ← payments-raw" in _hits(result, "lambda_payload_bytes")
    small = plan(2, 300)
    assert _hits(small, "lambda_payload_bytes") == []


def test_high_rates_hit_account_concurrency_and_table_quotas() -> None:
    result = plan(200_000, 300)
    assert _hits(result, "lambda_account_concurrency")
    assert "balances" in _hits(result, "dynamodb_table_wcu")


def test_coalescing_caps_the_busiest_accounts_writes_per_batch() -> None:
    # Given a merchant in 30% of 20k payments a second
    hot = dataclasses.replace(ASSUMPTIONS, hot_key_share=0.3)
    result = plan(20_000, 300, assumptions=hot)
    balances = result.functions["balances"]
    # Then its balance item is written at most once per invocation of its lane
    lanes = balances.max_concurrency
    assert result.tables["balances"].hot_key_wcu_per_s <= balances.invocations_per_s / lanes + 1e-9
    assert not [c for c in result.hits if c.resource == "balances (busiest key)"]


def test_a_processor_without_a_model_gets_declared_outputs_and_conservative_writes() -> None:
    # Given a new processor declared with an output stream and a table, and no model
    extra = Processor(
        name="enrich", handler="payments.handlers.enrich.handler", description="d",
        sources=(EventSource(stream="payments-validated", batch_size=100),),
        bindings=(Binding(env="ENRICHED_STREAM", resource="enriched", access="write"),
                  Binding(env="CACHE_TABLE", resource="cache", access="read_write")),
    )
    pipeline = dataclasses.replace(
        PIPELINE,
        streams=(*PIPELINE.streams, Stream(name="enriched", partition_key="k", description="d")),
        tables=(*PIPELINE.tables, Table(name="cache", description="d")),
        processors=(*PIPELINE.processors, extra),
    )
    result = plan(30_000, 300, pipeline=pipeline)
    validated = result.streams["payments-validated"].records_per_s
    # Then it emits 1:1, writes once per record, and the plan says it assumed so
    assert result.streams["enriched"].records_per_s == pytest.approx(validated)
    assert result.tables["cache"].wcu_per_s == pytest.approx(validated)
    assert "no model" in result.functions["enrich"].basis
    assert any("enrich" in note for note in result.notes)
    # and its uncoalesced hot key (1% of 30k/s = 300 writes/s) is measured against 1,000/s
    assert result.tables["cache"].hot_key_wcu_per_s == pytest.approx(0.01 * validated)


def test_cost_grows_with_the_rate_and_the_cheaper_kinesis_mode_is_chosen() -> None:
    low, high = plan(100, 300), plan(10_000, 300)
    assert high.monthly_usd["total"] > 10 * low.monthly_usd["total"]
    for result in (low, high):
        assert result.monthly_usd["kinesis"] == pytest.approx(min(result.kinesis_usd.values()))
        assert result.monthly_usd["total"] == pytest.approx(
            sum(result.monthly_usd[k] for k in ("kinesis", "lambda", "dynamodb", "s3", "sns")))


def test_distinct_keys_saturates_at_the_number_of_keys() -> None:
    assert distinct(10, 1_000_000) == pytest.approx(10, rel=1e-4)
    assert distinct(1_000_000, 100) == pytest.approx(100)
    assert distinct(0, 5) == 0


@pytest.mark.parametrize(
    ("rate", "record_bytes", "message"),
    [(0, 300, "positive"), (-5, 300, "positive"), (math.nan, 300, "positive"),
     (math.inf, 300, "positive"), (1e12, 300, "beyond"), (10, 0, "positive"),
     (10, 2_000_000, "record size limit")],
)
def test_bad_numbers_are_refused(rate: float, record_bytes: int, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan(rate, record_bytes)


@pytest.mark.parametrize(
    "args",
    [["--rate", "0", "--record-bytes", "300"], ["--rate", "-1", "--record-bytes", "300"],
     ["--rate", "1e15", "--record-bytes", "300"], ["--rate", "10", "--record-bytes", "-3"],
     ["--rate", "ten", "--record-bytes", "300"], ["--rate", "10"],
     ["--rate", "10", "--record-bytes", "300", "--hot-key-share", "1.5"],
     ["--rate", "10", "--record-bytes", "300", "--broker", "nope"],
     ["--rate", "10", "--record-bytes", "300", "--broker", ""],
     ["--rate", "0", "--record-bytes", "300", "--broker", "all"]],
)
def test_bad_arguments_get_one_line_and_exit_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _cli()
    assert main(["plan", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error")


def test_json_output_has_shards_concurrency_capacity_cost_and_limits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _cli()
    assert main(["plan", "--rate", "150000", "--record-bytes", "500", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shards"]["payments-raw"] >= 1
    assert {p.name for p in PIPELINE.processors} <= set(out["functions"])
    assert out["functions"]["balances"]["concurrency"]["max"] >= 1
    assert out["dynamodb"]["balances"]["wcu_per_s"] > 0
    assert out["dynamodb"]["balances"]["rcu_per_s"] > 0
    assert out["monthly_usd"]["total"] > 0
    assert out["limits_hit"], "150k events/s must hit some limit"
    for hit in out["limits_hit"]:
        assert hit["figure"] > hit["max"] and hit["unit"] and hit["advice"]
    assert out["prices"]["as_of"] == prices.AS_OF


def test_text_output_names_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    _cli()
    assert main(["plan", "--rate", "200000", "--record-bytes", "300"]) == 0
    text = capsys.readouterr().out
    assert "LIMIT" in text and "shards" in text and "monthly" in text


def test_every_declared_stream_and_written_table_is_planned() -> None:
    result = plan(100, 300)
    assert set(result.streams) == {s.name for s in PIPELINE.streams}
    written = {b.resource for p in PIPELINE.processors for b in p.bindings
               if b.access != "read" and b.resource in {t.name for t in PIPELINE.tables}}
    assert written <= set(result.tables)


def test_the_price_table_is_dated_and_sourced() -> None:
    assert prices.AS_OF and prices.REGION == "us-east-1"
    for price in prices.PRICES.values():
        assert price.usd > 0
        assert prices.SOURCES[price.source].startswith(
            ("https://aws.amazon.com/", "https://docs.aws.amazon.com/"))


def test_prices_are_exact_decimals_as_written() -> None:
    assert prices.amount("lambda_request") == Decimal("0.0000002")
    assert prices.amount("kinesis_put_payload_unit") == Decimal("0.000000014")
    assert prices.amount("msk_serverless_cluster_hour") == Decimal("0.75")
    assert prices.amount("msk_broker_hour_m7g_large") == Decimal("0.204")
    assert prices.amount("lambda_event_poller_unit_hour") == Decimal("0.185")
    for name, price in prices.PRICES.items():
        assert float(prices.amount(name)) == pytest.approx(price.usd, rel=1e-12)


# The broker comparison -------------------------------------------------------------------

TINY = Pipeline(
    app="tiny",
    streams=(Stream(name="in", partition_key="k", description="d", origin=True),
             Stream(name="out", partition_key="k", description="d")),
    tables=(), buckets=(Bucket(name="failures", description="d"),), queues=(), topics=(),
    processors=(Processor(
        name="p", handler="tiny.handler", description="d",
        sources=(EventSource(stream="in", batch_size=100),),
        bindings=(Binding(env="OUT_STREAM", resource="out", access="write"),)),),
)
"""One origin stream read by one function that writes a second stream: at 100 events/s of 300
bytes, `in` carries 30,000 B/s to one consumer and `out` 60,000 B/s (600-byte derived records)
to none; one shard each; the function runs one 198 ms invocation of 512 MB a second."""


def _terms(option: BrokerCost) -> dict[str, Decimal | None]:
    return {t.name: t.monthly for t in option.terms}


def _cents(value: Decimal | None) -> Decimal:
    assert value is not None
    return value.quantize(Decimal("0.01"))


def test_each_broker_is_costed_term_by_term_for_a_small_pipeline() -> None:
    # Given the tiny pipeline at 100 events/s of 300 bytes
    result = compare(plan(100, 300, pipeline=TINY))
    kinesis, serverless, brokers = (result.options[b] for b in
                                    ("kinesis", "msk-serverless", "msk-provisioned"))
    # Then Kinesis is 2 shards x 730 h x $0.015 and 200 PUT payload units a second
    k = _terms(kinesis)
    assert kinesis.mode == "provisioned"
    assert k["Kinesis shard-hours"] == Decimal("21.90")
    assert k["Kinesis PUT payload units"] == Decimal("7.3584")  # 525,600,000 x $0.000000014
    # and what every broker pays alike: 2,628,000 invocations, 260,172 GB-seconds
    assert k["Lambda requests"] == Decimal("0.5256")
    assert k["Lambda duration"] == Decimal("3.4689773448")
    assert kinesis.total == Decimal("33.2529773448")
    # MSK Serverless: one cluster, a partition per topic, bytes in, bytes out and 24 h kept
    m = _terms(serverless)
    assert m["MSK Serverless cluster-hours"] == Decimal("547.50")
    assert m["MSK Serverless partition-hours"] == Decimal("2.19")
    assert _cents(m["MSK Serverless data in"]) == Decimal("22.03")  # 220.28 GiB
    assert _cents(m["MSK Serverless data out"]) == Decimal("3.67")  # 73.43 GiB
    assert _cents(m["MSK Serverless storage"]) == Decimal("0.72")  # 7.24 GiB
    # plus one Event Poller Unit for the one Kafka mapping, 3 endpoints in 3 zones
    assert m["Lambda Event Poller Unit-hours"] == Decimal("135.05")
    assert m["VPC interface endpoint-hours (Lambda, STS, X-Ray)"] == Decimal("65.70")
    assert _cents(serverless.total) == Decimal("780.86")
    # MSK provisioned: three kafka.m7g.large brokers with 100 GB each
    p = _terms(brokers)
    assert brokers.sizing.startswith("3 x kafka.m7g.large")
    assert p["MSK broker-hours (kafka.m7g.large)"] == Decimal("446.76")
    assert p["MSK broker storage"] == Decimal("30.00")
    assert _cents(brokers.total) == Decimal("681.50")


def test_unconfirmed_and_unestimated_terms_are_shown_but_never_counted_as_zero() -> None:
    result = compare(plan(100, 300, pipeline=TINY), ["msk-provisioned"])
    option = result.options["msk-provisioned"]
    status = {t.name: t.status for t in option.unpriced}
    assert status == {"Data between zones (clients and brokers)": "not priced",
                      "VPC interface endpoint data processed": "not estimated"}
    crossing = next(t for t in option.terms if t.name.startswith("Data between zones"))
    assert crossing.quantity == Decimal("210.24")  # 90,000 B/s x 2/3 x 2,628,000 s
    assert option.total == sum(t.monthly for t in option.terms if t.monthly is not None)
    shown = option.to_json()
    assert shown["not_priced"] == ["Data between zones (clients and brokers)"]
    assert [t["monthly_usd"] for t in shown["terms"] if t["status"] != "priced"] == [None, None]


def test_the_floor_is_what_each_broker_costs_at_zero_traffic() -> None:
    result = compare(plan(100, 300, pipeline=TINY))
    floors = {b: o.floor for b, o in result.options.items()}
    # Kinesis: a shard per stream; Serverless: cluster, two partitions, EPU, endpoints;
    # provisioned: brokers, their volumes, EPU, endpoints
    assert floors == {"kinesis": Decimal("21.90"), "msk-serverless": Decimal("750.44"),
                      "msk-provisioned": Decimal("677.51")}
    for option in result.options.values():
        assert option.rate_dependent == option.total - option.floor
        assert option.rate_dependent > 0
        moved = {t.name: t.quantity for t in option.floor_terms if "data" in t.name.lower()}
        assert all(q in (None, 0) for q in moved.values())


def test_the_rate_where_two_brokers_cross_is_found() -> None:
    result = compare(plan(100, 300, pipeline=TINY))
    (crossing,) = [c for c in result.crossovers
                   if {c.cheaper_below, c.cheaper_above} == {"kinesis", "msk-provisioned"}]
    assert crossing.cheaper_below == "kinesis"
    assert 1_000 < crossing.rate < 100_000
    below = compare(plan(crossing.rate * 0.99, 300, pipeline=TINY)).options
    above = compare(plan(crossing.rate * 1.01, 300, pipeline=TINY)).options
    assert below["kinesis"].total < below["msk-provisioned"].total
    assert above["kinesis"].total > above["msk-provisioned"].total
    # Provisioned brokers start cheaper than a Serverless cluster and stay so here
    shown = result.to_json()
    assert ["msk-provisioned", "msk-serverless"] in shown["no_crossover"]


def test_an_unknown_broker_is_refused() -> None:
    with pytest.raises(PlanError, match="--broker"):
        compare(plan(100, 300, pipeline=TINY), ["rabbitmq"])


def test_json_lists_every_term_of_every_broker(capsys: pytest.CaptureFixture[str]) -> None:
    _cli()
    assert main(["plan", "--rate", "500", "--record-bytes", "300", "--broker", "all",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["monthly_usd"]["total"] > 0  # the plan itself is still there
    brokers = out["brokers"]
    assert set(brokers["options"]) == {"kinesis", "msk-serverless", "msk-provisioned"}
    for option in brokers["options"].values():
        assert option["terms"] and option["floor_terms"]
        for term in option["terms"]:
            assert {"name", "quantity", "unit", "unit_price_usd", "monthly_usd",
                    "source"} <= set(term)
            assert term["source"].startswith("https://")
        priced = [Decimal(t["monthly_usd"]) for t in option["terms"] if t["monthly_usd"]]
        assert Decimal(option["total_usd"]) == pytest.approx(sum(priced), abs=Decimal("0.05"))
        assert Decimal(option["rate_dependent_usd"]) == (
            Decimal(option["total_usd"]) - Decimal(option["floor_usd"]))
    assert isinstance(brokers["crossovers"], list)
    serverless = brokers["options"]["msk-serverless"]["terms"]
    epu = next(t for t in serverless if t["name"] == "Lambda Event Poller Unit-hours")
    assert epu["unit_price_usd"] == "0.185"


def test_one_broker_only_prints_its_own_terms(capsys: pytest.CaptureFixture[str]) -> None:
    _cli()
    assert main(["plan", "--rate", "100", "--record-bytes", "300", "--broker",
                 "msk-serverless"]) == 0
    text = capsys.readouterr().out
    # the cluster-hours ($547.50), with the floor beside the total; no other broker's prices
    assert "$547.50" in text and "floor" in text and "$0.75" in text
    assert "$0.015" not in text and "$0.204" not in text
