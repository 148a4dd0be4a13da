"""Turns the measurements into the bench's JSON object and its readable table.

Scope. The baseline does one job: raw payments to the balances view. The like-for-like figures
(`cost_per_million_usd`, `wcu_per_event`, `requests_per_1000_events`, the ratios) compare it
with the processors that job takes in cascata, found from the declaration: the processors that
write the balances table and every processor upstream of them. The whole runnable pipeline
(fraud detection, windows, profiles, notifications: work the baseline does not do) is reported
beside it, never mixed in.

Cost. Usage is priced with `cascata.prices`. Lambda duration per invocation is the measured
handler CPU time (at the measured batch size nearest the declared one) stretched to the
function's share of a vCPU, plus the assumed wall time of its requests (`cascata.plan`).
Kinesis is priced on-demand (the prod stage's streams are on-demand) and, beside it,
provisioned; stream-hours and shard-hours are fixed costs, reported per month apart.
"""

from __future__ import annotations

import math
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cascata import prices
from cascata.bench import functions as fns
from cascata.bench.coldstart import ColdStart
from cascata.bench.cpu import CpuResult
from cascata.bench.local import Local
from cascata.bench.metering import Meter
from cascata.bench.usage import Usage
from cascata.pipeline import Pipeline, ResourceKind
from cascata.plan import ASSUMPTIONS, invocation_ms, parallelism_of

VIEW = "balances"
"""The view the baseline maintains; the compared scope is what cascata needs to maintain it."""
HEADLINE_BATCH = 100
MODES = ("on_demand", "provisioned")


def scope(pipeline: Pipeline, table: str = VIEW) -> list[str]:
    """The processors writing `table` and every processor upstream of them, in pipeline order."""
    writes = {p.name for p in pipeline.processors
              if any(b.resource == table and b.access in ("write", "read_write")
                     for b in p.bindings)}
    wanted = set(writes)
    frontier = list(writes)
    while frontier:
        proc = pipeline.processor(frontier.pop())
        for src in proc.sources:
            for up in pipeline.processors:
                if src.stream in up.outputs and up.name not in wanted:
                    wanted.add(up.name)
                    frontier.append(up.name)
    return [p.name for p in pipeline.processors if p.name in wanted]


def nearest_batch(sizes: Iterable[int], declared: int) -> int:
    return min(sizes, key=lambda s: abs(math.log(s) - math.log(max(1, declared))))


@dataclass(frozen=True, slots=True)
class FunctionCost:
    usd: dict[str, float]
    """component -> USD over the usage run."""
    lambda_ms: float


def function_cost(
    meter: Meter, us_per_record: float, memory_mb: int, mode: str, parallelism: int = 1
) -> FunctionCost:
    if not meter.invocations:
        return FunctionCost({}, 0.0)
    per_invocation = {op: n / meter.invocations for op, n in meter.requests.items()}
    ms = invocation_ms(cpu_us_per_record=us_per_record,
                       records=meter.records_in / meter.invocations,
                       requests=per_invocation, memory_mb=memory_mb, parallelism=parallelism)
    gb = 1024 * 1024
    usd = {
        "lambda_requests": meter.invocations * prices.usd("lambda_request"),
        "lambda_duration": meter.invocations * ms / 1000 * memory_mb / 1024
        * prices.usd("lambda_gb_second_arm"),
        "dynamodb_writes": meter.write_units * prices.usd("dynamodb_write_request_unit"),
        "dynamodb_reads": meter.read_units * prices.usd("dynamodb_read_request_unit"),
        "requests": sum(n * prices.usd(prices.REQUEST_PRICES[op])
                        for op, n in meter.requests.items() if op in prices.REQUEST_PRICES),
    }
    if mode == "on_demand":
        usd["kinesis_writes"] = meter.ingest_kb / gb * prices.usd("kinesis_on_demand_ingest_gb")
        usd["kinesis_reads"] = meter.retrieved_kb / gb * prices.usd(
            "kinesis_on_demand_retrieval_gb")
    else:
        usd["kinesis_writes"] = meter.put_payload_units * prices.usd("kinesis_put_payload_unit")
    return FunctionCost(usd, ms)


def build(
    *,
    pipeline: Pipeline,
    skipped: Mapping[str, str],
    usage: Usage,
    unique: Usage | None,
    cpu: CpuResult,
    cold: ColdStart,
    local: Local | None,
    settings: Mapping[str, Any],
    duration_s: float,
    phases: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    names = [p.name for p in pipeline.processors]
    compared = scope(pipeline)
    sizes = sorted({s for by in cpu.us_per_record.values() for s in by})
    headline = HEADLINE_BATCH if HEADLINE_BATCH in sizes else sizes[0]
    base = fns.BASELINE

    def us(fn: str, size: int) -> float:
        return cpu.us_per_record.get(fn, {}).get(size, 0.0)

    def cost_us(fn: str) -> float:
        by = cpu.us_per_record.get(fn, {})
        return by[nearest_batch(by, usage.batch_sizes[fn])] if by else 0.0

    costs = {mode: {fn: function_cost(usage.meters[fn], cost_us(fn), usage.memory_mb[fn], mode,
                                      parallelism_of(fn))
                    for fn in usage.meters} for mode in MODES}

    def per_million(fns_: Iterable[str], mode: str = "on_demand") -> float:
        return usage.per_event(sum(sum(costs[mode][f].usd.values()) for f in fns_)) * 1e6

    def breakdown(fns_: Iterable[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for f in fns_:
            for k, v in costs["on_demand"][f].usd.items():
                out[k] = out.get(k, 0.0) + usage.per_event(v) * 1e6
        return {k: round(v, 4) for k, v in sorted(out.items())}

    def requests_per_1000(fns_: Iterable[str]) -> float:
        return usage.per_event(sum(usage.meters[f].total_requests for f in fns_)) * 1000

    def wcu(fns_: Iterable[str], u: Usage = usage) -> float:
        return u.per_event(sum(u.meters[f].write_units for f in fns_ if f in u.meters))

    def us_per_event(fns_: Iterable[str], size: int) -> float:
        return sum(us(f, size) * usage.per_event(usage.meters[f].records_in) for f in fns_)

    headline_figures: dict[str, Any] = {
        "cost_per_million_usd": {"cascata": _r(per_million(compared)),
                                 "baseline": _r(per_million([base]))},
        "wcu_per_event": {"cascata": _r(wcu(compared)), "baseline": _r(wcu([base]))},
        "requests_per_1000_events": {"cascata": _r(requests_per_1000(compared)),
                                     "baseline": _r(requests_per_1000([base]))},
        "handler_us_per_record": {"cascata": {f: _r(us(f, headline)) for f in names},
                                  "baseline": _r(us(base, headline))},
        "cold_start_ms": {"cascata": {f: _r(cold.ms[f]) for f in names},
                          "baseline": _r(cold.ms[base])},
    }
    per_event = {str(s): {"cascata": _r(us_per_event(compared, s)),
                          "baseline": _r(us_per_event([base], s))} for s in sizes}
    ratios: dict[str, Any] = {
        key: _ratio(headline_figures[key]["cascata"], headline_figures[key]["baseline"])
        for key in ("cost_per_million_usd", "wcu_per_event", "requests_per_1000_events")
    }
    ratios["handler_us_per_event"] = {s: _ratio(v["cascata"], v["baseline"])
                                      for s, v in per_event.items()}
    ratios["cold_start_ms"] = {f: _ratio(cold.ms[f], cold.ms[base]) for f in names}
    streams_used = _streams(pipeline, compared)
    result: dict[str, Any] = {
        "schema": 1,
        **headline_figures,
        "local": _local(local),
        "ratios": {**ratios, "note": "cascata / baseline: below 1 means cascata spends less"},
        "scope": {
            "compared": compared,
            "whole_pipeline": names,
            "skipped": dict(skipped),
            "note": "the baseline maintains the balances view only; 'compared' is what cascata "
                    "runs for that view, derived from the declaration",
        },
        "handler_us_per_event": per_event,
        "handler_us_per_record_by_batch": {
            str(s): {"cascata": {f: _r(us(f, s)) for f in names}, "baseline": _r(us(base, s))}
            for s in sizes},
        "handler_batch_records": {f: {str(s): n for s, n in by.items()}
                                  for f, by in cpu.batch_records.items()},
        "cost_per_million_usd_by_kinesis_mode": {
            mode: {"cascata": _r(per_million(compared, mode)),
                   "baseline": _r(per_million([base], mode))} for mode in MODES},
        "cost_breakdown_per_million_usd": {"cascata": breakdown(compared),
                                           "baseline": breakdown([base])},
        "whole_pipeline": {
            "cost_per_million_usd": _r(per_million(names)),
            "wcu_per_event": _r(wcu(names)),
            "requests_per_1000_events": _r(requests_per_1000(names)),
            "cost_breakdown_per_million_usd": breakdown(names),
        },
        "per_function": {f: _per_function(f, usage, costs["on_demand"][f])
                         for f in [*names, base]},
        "monthly_fixed_usd": {
            "cascata": _fixed(len(streams_used), streams_used),
            "baseline": _fixed(1, ["payments-raw"]),
            "whole_pipeline": _fixed(len(pipeline.streams), [s.name for s in pipeline.streams]),
        },
        "cold_start": {"interpreter_ms": _r(cold.interpreter_ms), "runs": cold.runs,
                       "import_ms": {k: _r(v) for k, v in cold.import_ms.items()},
                       "init_ms": {k: _r(v) for k, v in cold.init_ms.items()}},
        "cpu": {"emulator_share_subtracted": round(cpu.emulator_share, 3),
                "rounds": {f: {str(s): len(v) for s, v in by.items()}
                           for f, by in cpu.samples.items()},
                "samples_us_per_record": {f: {str(s): [round(x, 1) for x in v]
                                              for s, v in by.items()}
                                          for f, by in cpu.samples.items()}},
        "usage": {"events": usage.events, "batch_sizes": usage.batch_sizes,
                  "failed_records": {f: m.failed_records for f, m in usage.meters.items()}},
        "settings": dict(settings),
        "prices": {"as_of": prices.AS_OF, "region": prices.REGION,
                   "kinesis_mode_of_headline": "on_demand"},
        "assumptions": {"latency_ms": dict(ASSUMPTIONS.latency_ms),
                        "lambda_full_vcpu_mb": ASSUMPTIONS.lambda_full_vcpu_mb,
                        "lambda_architecture": "arm64"},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": _cpus()},
        "duration_s": round(duration_s, 1),
        "phases_s": dict(phases or {}),
    }
    if unique is not None:
        result["unique_keys"] = {
            "events": unique.events,
            "wcu_per_event": {"cascata": _r(wcu(compared, unique)),
                              "baseline": _r(wcu([base]))},
            "note": "accounts drawn from 1,000,000, so an account repeats in a batch only "
                    "within the workload's bursts (one payer paying one payee 4-8 times in a "
                    "row); the baseline writes per record whatever the keys, so its figure is "
                    "the main run's",
        }
    return result


def _per_function(fn: str, usage: Usage, cost: FunctionCost) -> dict[str, Any]:
    meter = usage.meters[fn]
    return {
        "batch_size": usage.batch_sizes[fn],
        "records_in_per_event": _r(usage.per_event(meter.records_in)),
        "invocations_per_1000_events": _r(usage.per_event(meter.invocations) * 1000),
        "requests_per_1000_events": _r(usage.per_event(meter.total_requests) * 1000),
        "requests_by_operation_per_1000_events": {
            op: _r(usage.per_event(n) * 1000) for op, n in sorted(meter.requests.items())},
        "wcu_per_event": _r(usage.per_event(meter.write_units)),
        "rcu_per_event": _r(usage.per_event(meter.read_units)),
        "conditional_write_failures": meter.conditional_failures,
        "kinesis_records_out_per_event": _r(usage.per_event(sum(meter.kinesis_records.values()))),
        "lambda_ms_per_invocation": _r(cost.lambda_ms),
        "cost_per_million_usd": _r(usage.per_event(sum(cost.usd.values())) * 1e6),
    }


def _streams(pipeline: Pipeline, names: Iterable[str]) -> list[str]:
    used: list[str] = []
    for name in names:
        proc = pipeline.processor(name)
        for s in [*(src.stream for src in proc.sources), *proc.outputs]:
            if s not in used and pipeline.resource(s).kind is ResourceKind.STREAM:
                used.append(s)
    return used


def _fixed(count: int, streams: list[str]) -> dict[str, Any]:
    hours = prices.HOURS_PER_MONTH
    return {
        "streams": streams,
        "provisioned_1_shard_each": round(count * hours * prices.usd("kinesis_shard_hour"), 2),
        "on_demand": round(count * hours * prices.usd("kinesis_on_demand_stream_hour"), 2),
    }


def _local(local: Local | None) -> dict[str, Any]:
    if local is None:
        return {"throughput_eps": None, "ceiling_eps": None, "skipped": True}
    return {
        "throughput_eps": _r(local.throughput_eps),
        "ceiling_eps": _r(local.ceiling.ceiling_eps),
        "ratio": round(local.ratio, 5),
        "latency_ms": {k: _r(v) for k, v in local.latency_ms.items()},
        "events": local.events,
        "demo_ok": local.demo_ok,
        "demo_failed_invariants": list(local.failed_invariants),
        "demo_seconds": round(local.demo_seconds, 1),
        "ceiling_put_eps": _r(local.ceiling.put_eps),
        "ceiling_get_eps": _r(local.ceiling.get_eps),
        "ceiling_records": local.ceiling.records,
        "compared_scope_only": None if local.scoped is None else {
            "processors": list(local.scoped.processors),
            "throughput_eps": _r(local.scoped.throughput_eps),
            "ratio": round(local.scoped.throughput_eps / local.ceiling.ceiling_eps, 5)
            if local.ceiling.ceiling_eps else None,
            "latency_ms": {k: _r(v) for k, v in local.scoped.latency_ms.items()},
            "note": "throughput into the balances view with the other processors absent; the "
                    "demo's invariants describe the whole pipeline, so they are not checked "
                    "here",
        },
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _r(value: float) -> float:
    """Three significant digits: the machine is noisy and more would be false precision."""
    if value == 0 or not math.isfinite(value):
        return value
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return round(value, digits)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# The readable table -------------------------------------------------------------------------


def render(result: Mapping[str, Any]) -> None:
    from rich.table import Table

    from cascata.console import out

    ratios = result["ratios"]
    compared = ", ".join(result["scope"]["compared"])
    main = Table(title=f"cascata ({compared}) vs the Powertools baseline, same run",
                 title_justify="left", header_style="bold")
    for col in ("figure", "cascata", "baseline", "cascata / baseline"):
        main.add_column(col, justify="left" if col == "figure" else "right")

    def row(label: str, key: str, fmt: str) -> None:
        fig = result[key]
        main.add_row(label, format(fig["cascata"], fmt), format(fig["baseline"], fmt),
                     _x(ratios.get(key)))

    row("cost per million events, USD", "cost_per_million_usd", ",.3f")
    row("DynamoDB write units per event", "wcu_per_event", ",.2f")
    row("AWS requests per 1,000 events", "requests_per_1000_events", ",.0f")
    for size, fig in result["handler_us_per_event"].items():
        main.add_row(f"handler CPU µs per event, batches of {int(size):,}",
                     f"{fig['cascata']:,.0f}", f"{fig['baseline']:,.0f}",
                     _x(ratios["handler_us_per_event"].get(size)))
    cold = result["cold_start_ms"]
    slowest = max(result["scope"]["compared"], key=lambda f: cold["cascata"][f])
    main.add_row(f"cold start ms (slowest compared: {slowest})",
                 f"{cold['cascata'][slowest]:,.0f}", f"{cold['baseline']:,.0f}",
                 _x(ratios["cold_start_ms"].get(slowest)))
    out.print(main)

    per = Table(title="per function", title_justify="left", header_style="bold")
    sizes = list(result["handler_us_per_record_by_batch"])
    for col in ("function", *[f"µs/record @{int(s):,}" for s in sizes], "cold start ms",
                "requests/1k events", "WCU/event", "USD/M events"):
        per.add_column(col, justify="left" if col == "function" else "right")
    for fn, fig in result["per_function"].items():
        side = "baseline" if fn == fns.BASELINE else "cascata"
        cells = []
        for s in sizes:
            by = result["handler_us_per_record_by_batch"][s][side]
            cells.append(f"{(by if side == 'baseline' else by[fn]):,.0f}")
        cold_ms = cold["baseline"] if side == "baseline" else cold["cascata"][fn]
        mark = "" if fn == fns.BASELINE or fn in result["scope"]["compared"] else " *"
        per.add_row(fn + mark, *cells, f"{cold_ms:,.0f}", f"{fig['requests_per_1000_events']:,.0f}",
                    f"{fig['wcu_per_event']:,.2f}", f"{fig['cost_per_million_usd']:,.3f}")
    out.print(per)
    whole = result["whole_pipeline"]
    out.print(f"* not in the compared scope. Whole runnable pipeline: "
              f"${whole['cost_per_million_usd']:,.3f} per million events, "
              f"{whole['wcu_per_event']:,.2f} WCU/event, "
              f"{whole['requests_per_1000_events']:,.0f} requests per 1,000 events.")
    if "unique_keys" in result:
        uk = result["unique_keys"]["wcu_per_event"]
        out.print(f"With accounts drawn from a million (almost no coalescing): "
                  f"{uk['cascata']:,.2f} WCU/event for cascata against {uk['baseline']:,.2f} "
                  f"for the baseline.")
    local = result["local"]
    if not local.get("skipped"):
        lat = local["latency_ms"]
        out.print(
            f"local: demo of {local['events']:,} events at [bold]{local['throughput_eps']:,.0f}"
            f"[/] events/s (produce-to-view p50 {lat['p50']:,.0f} ms, p99 {lat['p99']:,.0f} ms); "
            f"emulator ceiling {local['ceiling_eps']:,.0f} records/s (PutRecords then "
            f"GetRecords); ratio {local['ratio']:.3f}"
            + ("" if local["demo_ok"] else
               f"; [red]demo invariants failed: {', '.join(local['demo_failed_invariants'])}[/]"))
        part = local.get("compared_scope_only")
        if part:
            out.print(f"local, compared processors only ({', '.join(part['processors'])}): "
                      f"{part['throughput_eps']:,.0f} events/s, p50 "
                      f"{part['latency_ms']['p50']:,.0f} ms; ratio {part['ratio']:.3f}")
    fixed = result["monthly_fixed_usd"]
    out.print(
        f"fixed per month, not in the per-event cost: cascata {len(fixed['cascata']['streams'])} "
        f"streams ${fixed['cascata']['on_demand']:,.2f} on-demand or "
        f"${fixed['cascata']['provisioned_1_shard_each']:,.2f} at one shard each; baseline 1 "
        f"stream ${fixed['baseline']['on_demand']:,.2f} or "
        f"${fixed['baseline']['provisioned_1_shard_each']:,.2f}.")
    skipped = result["scope"]["skipped"]
    if skipped:
        out.print("not benchmarked (handler module missing or broken): "
                  + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    out.print(f"prices {result['prices']['region']} as of {result['prices']['as_of']}; "
              f"Kinesis on-demand; ran in {result['duration_s']:,.0f} s.")


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
