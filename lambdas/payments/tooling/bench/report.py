"""Turns the measurements into the bench's JSON object and its readable table.

Scope. Both sides are whole pipelines over the same workload and batch sizes: cascata's
declared pipeline (every runnable processor and scheduled function) and the baseline's
(`benchmarks/baseline`: the same topology and views done the way the Powertools documentation
shows). The headline figures (`cost_per_million_usd`, `wcu_per_event`,
`requests_per_1000_events`, `pipeline`, `hot_keys`) compare the two wholes.

Cost. Usage is priced with `cascata.prices`. Per input event, measured: DynamoDB writes
(global secondary index writes included) and reads, Kinesis writes (the producers' ingest and
every derived record) and reads, S3 and SNS requests, the archive's Firehose ingest (each
record rounded up to 5 KB) and its reads of the stream, and the bytes the functions log at the
deployed level. Estimated (said so in `estimated`): Lambda duration (measured handler CPU
stretched to the function's share of a vCPU, plus assumed request latencies, `cascata.plan`),
Lambda's own log lines per invocation, storage (the state the run left, kept one month),
and the fixed costs (stream-hours or shard-hours, the scheduled functions' idle runs) spread
over the events of a month at `--rate` events per second.
"""

from __future__ import annotations

import math
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cascata import prices
from cascata.pipeline import Pipeline
from cascata.plan import ASSUMPTIONS, invocation_ms
from payments.tooling.bench import functions as fns
from payments.tooling.bench.coldstart import ColdStart
from payments.tooling.bench.cpu import CpuResult
from payments.tooling.bench.local import Local
from payments.tooling.bench.metering import KINESIS_ON_DEMAND_UNIT, Meter
from payments.tooling.bench.usage import Side, Usage
from payments.tooling.cost_models import parallelism_of

VIEW = "balances"
HEADLINE_BATCH = 100
MODES = ("on_demand", "provisioned")
SIDES = ("cascata", "baseline")
WINDOWS = "windows"
"""The processor whose write units `windows_wcu_per_payment` reports, with every scheduled
function writing the tables it writes (the close)."""
PLATFORM_LOG_BYTES = 600
"""Estimated: Lambda's own log records per invocation (start, end and report, JSON format)."""
FIREHOSE_TRANSFORM_MB = 1
"""Estimated: Firehose invokes the archive's record transformation per 1 MB buffered."""
MONTH_S = prices.HOURS_PER_MONTH * 3600
GB = 1024**3
ESTIMATED = {
    "lambda_duration": "measured handler CPU stretched to the memory's vCPU share plus assumed "
                       "request latencies (cascata/plan.py)",
    "cloudwatch_logs": "handler log bytes measured at the deployed level (INFO); Lambda's own "
                       f"records estimated at {PLATFORM_LOG_BYTES} bytes per invocation",
    "storage": "the tables' items and index entries the run left (and the archive's objects), "
               "kept one month; state per key does not grow with events, so this is an upper "
               "bound",
    "stream_hours": "fixed per stream, spread over a month of events at the assumed rate",
    "scheduled_idle": "each scheduled function's idle run (measured) once per period, spread "
                      "over a month of events at the assumed rate",
    "firehose_archive": "ingest measured (5 KB rounding); dynamic partitioning per GB of "
                        "record bytes; transformation Lambda requests at 1 per MB",
}


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
                if src.stream in pipeline.outputs(up.name) and up.name not in wanted:
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
    meter: Meter, us_per_record: float, memory_mb: int, mode: str, parallelism: int = 1,
    *, cpu_us_per_invocation: float | None = None,
) -> FunctionCost:
    """What one function's metered usage costs. `cpu_us_per_invocation` replaces the per-record
    CPU for functions invoked without records (scheduled ones)."""
    if not meter.invocations:
        return FunctionCost({}, 0.0)
    per_invocation = {op: n / meter.invocations for op, n in meter.requests.items()}
    if cpu_us_per_invocation is None:
        cpu, records = us_per_record, meter.records_in / meter.invocations
    else:
        cpu, records = cpu_us_per_invocation, 1.0
    ms = invocation_ms(cpu_us_per_record=cpu, records=records, requests=per_invocation,
                       memory_mb=memory_mb, parallelism=parallelism)
    index = meter.index_write_units * prices.usd("dynamodb_write_request_unit")
    usd = {
        "lambda_requests": meter.invocations * prices.usd("lambda_request"),
        "lambda_duration": meter.invocations * ms / 1000 * memory_mb / 1024
        * prices.usd("lambda_gb_second_arm"),
        "dynamodb_writes": meter.write_units * prices.usd("dynamodb_write_request_unit") - index,
        "dynamodb_index_writes": index,
        "dynamodb_reads": meter.read_units * prices.usd("dynamodb_read_request_unit"),
        "requests": sum(n * prices.usd(prices.REQUEST_PRICES[op])
                        for op, n in meter.requests.items() if op in prices.REQUEST_PRICES),
        "cloudwatch_logs": (meter.log_bytes + meter.invocations * PLATFORM_LOG_BYTES) / GB
        * prices.usd("cloudwatch_logs_ingest_gb"),
    }
    usd.update(kinesis_cost(meter, mode))
    return FunctionCost(usd, ms)


def kinesis_cost(meter: Meter, mode: str) -> dict[str, float]:
    """Kinesis writes (and, on-demand, reads) of one meter."""
    if mode == "on_demand":
        return {
            "kinesis_writes": meter.ingest_kb * KINESIS_ON_DEMAND_UNIT / GB
            * prices.usd("kinesis_on_demand_ingest_gb"),
            "kinesis_reads": meter.retrieved_kb * KINESIS_ON_DEMAND_UNIT / GB
            * prices.usd("kinesis_on_demand_retrieval_gb"),
        }
    return {"kinesis_writes": meter.put_payload_units * prices.usd("kinesis_put_payload_unit")}


def archive_cost(side: Side, mode: str) -> float:
    """The Firehose archive of the origin streams: ingest (5 KB rounding), dynamic
    partitioning, the transformation's Lambda requests, and (on-demand) its reads."""
    if not side.archive_records:
        return 0.0
    usd = side.archive_billed_bytes / GB * prices.usd("firehose_ingest_gb")
    usd += side.archive_bytes / GB * prices.usd("firehose_dynamic_partitioning_gb")
    usd += math.ceil(side.archive_bytes / (FIREHOSE_TRANSFORM_MB * 1024**2)) \
        * prices.usd("lambda_request")
    if mode == "on_demand":
        usd += side.archive_retrieved_kb * KINESIS_ON_DEMAND_UNIT / GB \
            * prices.usd("kinesis_on_demand_retrieval_gb")
    return usd


def storage_cost(side: Side) -> float:
    """One month of the state the run left (upper bound: see `ESTIMATED`), with the tables'
    point-in-time recovery, which the stacks turn on for every table."""
    tables = sum(side.stored_bytes.values()) / GB * (
        prices.usd("dynamodb_storage_gb_month") + prices.usd("dynamodb_pitr_gb_month"))
    archive = side.archive_bytes / GB * prices.usd("s3_storage_gb_month")
    return tables + archive


def shards_for(records_per_s: float, bytes_per_s: float) -> int:
    """Provisioned shards a stream needs for its writes (1,000 records/s and 1 MiB/s each)."""
    return max(1, math.ceil(records_per_s / 1000), math.ceil(bytes_per_s / 1024**2))


def stream_hours_monthly(side: Side, events: int, rate: float, mode: str) -> float:
    """Monthly stream-hours (on-demand) or shard-hours (provisioned, shards for the rate)."""
    total = 0.0
    for name in side.stream_records:
        if mode == "on_demand":
            total += prices.HOURS_PER_MONTH * prices.usd("kinesis_on_demand_stream_hour")
            continue
        per_event = side.stream_records[name] / events if events else 0.0
        bytes_per_event = side.stream_bytes.get(name, 0) / events if events else 0.0
        shards = shards_for(rate * per_event, rate * bytes_per_event)
        total += shards * prices.HOURS_PER_MONTH * prices.usd("kinesis_shard_hour")
    return total


@dataclass(frozen=True, slots=True)
class SideCost:
    """One side's cost over the usage run, by function and by component."""

    functions: dict[str, FunctionCost]
    """Label -> the function's own cost (its share of the run)."""
    components: dict[str, float]
    """Component -> USD over the run, every function and the side-level terms together."""
    monthly_fixed: dict[str, float]
    """Fixed monthly terms (stream-hours, idle scheduled runs) in USD a month."""

    @property
    def total(self) -> float:
        return sum(self.components.values())


def side_cost(
    side_name: str, side: Side, events: int, cpu: CpuResult, mode: str, rate: float
) -> SideCost:
    funcs: dict[str, FunctionCost] = {}
    for fn, meter in side.meters.items():
        label = fns.label(side_name, fn)
        if fn in side.scheduled_cpu_s:
            runs = max(1, meter.invocations)
            funcs[label] = function_cost(
                meter, 0.0, side.memory_mb[fn], mode, parallelism_of(fn),
                cpu_us_per_invocation=side.scheduled_cpu_s[fn] / runs * 1e6)
        else:
            by = cpu.us_per_record.get(label, {})
            us = by[nearest_batch(by, side.batch_sizes[fn])] if by else 0.0
            funcs[label] = function_cost(meter, us, side.memory_mb[fn], mode,
                                         parallelism_of(fn) if side_name == "cascata" else 1)
    components: dict[str, float] = {}
    for cost in funcs.values():
        for key, value in cost.usd.items():
            components[key] = components.get(key, 0.0) + value
    producer = kinesis_cost(side.producer, mode)
    components["kinesis_ingest_producers"] = producer["kinesis_writes"]
    components["firehose_archive"] = archive_cost(side, mode)
    components["storage"] = storage_cost(side)
    idle = 0.0
    for sched in side.pipeline.scheduled:
        tick = side.idle_ticks.get(sched.name)
        if tick is None:
            continue
        one = function_cost(tick, 0.0, sched.memory_mb, mode,
                            cpu_us_per_invocation=side.idle_cpu_s.get(sched.name, 0.0) * 1e6)
        idle += sum(one.usd.values()) / max(1, tick.invocations) * MONTH_S / sched.every_s
    monthly = {"stream_hours": stream_hours_monthly(side, events, rate, mode),
               "scheduled_idle": idle}
    events_per_month = rate * MONTH_S
    for key, usd in monthly.items():
        components[key] = usd / events_per_month * events if events_per_month else 0.0
    return SideCost(funcs, components, monthly)


def estimated_share(cost: SideCost) -> float:
    """The share of a side's cost that is estimated rather than measured."""
    keys = ("lambda_duration", "storage", "stream_hours", "scheduled_idle")
    total = cost.total
    return sum(cost.components.get(k, 0.0) for k in keys) / total if total else 0.0


def windows_functions(side: Side) -> list[str]:
    """The windows processor and every scheduled function writing a table it writes."""
    pipeline = side.pipeline
    procs = [p for p in pipeline.processors if p.name == WINDOWS]
    if not procs:
        return []
    tables = {b.resource for b in procs[0].bindings if b.access in ("write", "read_write")
              and not b.env.endswith("_STREAM")}
    tables -= {"idempotency", "dedupe"}
    return [WINDOWS] + [s.name for s in pipeline.scheduled
                        if any(b.resource in tables and b.access != "read" for b in s.bindings)]


def whole(usage: Usage, cpu: CpuResult, rate: float) -> dict[str, Any]:
    """`pipeline` / `hot_keys`: each side's whole cost and write units, per input event."""
    costs = {s: side_cost(s, usage.sides[s], usage.events, cpu, "on_demand", rate)
             for s in SIDES if s in usage.sides}
    provisioned = {s: side_cost(s, usage.sides[s], usage.events, cpu, "provisioned", rate)
                   for s in costs}

    def per_m(value: float) -> float:
        return usage.per_event(value) * 1e6

    def wcu(side: Side) -> float:
        return usage.per_event(sum(m.write_units for m in side.meters.values()))

    def windows(side: Side) -> float:
        spent = sum(side.meters[f].write_units for f in windows_functions(side)
                    if f in side.meters)
        return spent / usage.payments if usage.payments else 0.0

    measured_keys = [k for k in next(iter(costs.values())).components
                     if k not in ("lambda_duration", "storage", "stream_hours",
                                  "scheduled_idle")]
    return {
        "cost_per_million_usd": {s: _r(per_m(c.total)) for s, c in costs.items()},
        "wcu_per_event": {s: _r(wcu(usage.sides[s])) for s in costs},
        "index_wcu_per_event": {s: _r(usage.per_event(sum(
            m.index_write_units for m in usage.sides[s].meters.values()))) for s in costs},
        "windows_wcu_per_payment": {s: _r(windows(usage.sides[s])) for s in costs},
        "measured_cost_per_million_usd": {
            s: _r(per_m(sum(c.components.get(k, 0.0) for k in measured_keys)))
            for s, c in costs.items()},
        "estimated_share_of_cost": {s: round(estimated_share(c), 3) for s, c in costs.items()},
        "cost_per_million_usd_provisioned_kinesis": {
            s: _r(per_m(c.total)) for s, c in provisioned.items()},
        "cost_breakdown_per_million_usd": {
            s: {k: _r(per_m(v)) for k, v in sorted(c.components.items())}
            for s, c in costs.items()},
        "monthly_fixed_usd": {s: {k: round(v, 2) for k, v in c.monthly_fixed.items()}
                              for s, c in costs.items()},
        "requests_per_1000_events": {s: _r(usage.per_event(sum(
            m.total_requests for m in usage.sides[s].meters.values())) * 1000) for s in costs},
        "events": usage.events,
        "payments": usage.payments,
        "failed_records": {fns.label(s, f): m.failed_records for s in costs
                           for f, m in usage.sides[s].meters.items() if m.failed_records},
        "scheduled_runs": {fns.label(s, f): n for s in costs
                           for f, n in usage.sides[s].scheduled_runs.items()},
        "_costs": costs,
    }


def build(
    *,
    skipped: Mapping[str, str],
    usage: Usage,
    hot: Usage | None,
    unique: Usage | None,
    cpu: CpuResult,
    cold: ColdStart,
    local: Local | None,
    settings: Mapping[str, Any],
    duration_s: float,
    rate: float,
    hot_spec: Mapping[str, Any] | None = None,
    phases: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    cascata, baseline = usage.sides["cascata"], usage.sides["baseline"]
    names = list(cascata.meters)
    base_names = list(baseline.meters)
    base_labels = [fns.label("baseline", f) for f in base_names]
    sizes = sorted({s for by in cpu.us_per_record.values() for s in by})
    headline = HEADLINE_BATCH if HEADLINE_BATCH in sizes else sizes[0]
    main = whole(usage, cpu, rate)
    costs: dict[str, SideCost] = main.pop("_costs")

    def us(fn: str, size: int) -> float:
        return cpu.us_per_record.get(fn, {}).get(size, 0.0)

    def weighted_us(side_name: str, side: Side, size: int) -> float:
        """Handler CPU per record over a side's processors, weighted by records."""
        records = {f: m.records_in for f, m in side.meters.items() if m.records_in}
        total = sum(records.values())
        return sum(us(fns.label(side_name, f), size) * n for f, n in records.items()) / total \
            if total else 0.0

    def us_per_event(side_name: str, side: Side, size: int) -> float:
        return sum(us(fns.label(side_name, f), size) * usage.per_event(m.records_in)
                   for f, m in side.meters.items())

    slowest_base = max((cold.ms[b] for b in base_labels if b in cold.ms), default=0.0)
    headline_figures: dict[str, Any] = {
        "cost_per_million_usd": main["cost_per_million_usd"],
        "wcu_per_event": main["wcu_per_event"],
        "requests_per_1000_events": main["requests_per_1000_events"],
        "handler_us_per_record": {"cascata": {f: _r(us(f, headline)) for f in names
                                              if f in cpu.us_per_record},
                                  "baseline": _r(weighted_us("baseline", baseline, headline))},
        "cold_start_ms": {"cascata": {f: _r(cold.ms[f]) for f in names if f in cold.ms},
                          "baseline": _r(slowest_base)},
    }
    per_event = {str(s): {"cascata": _r(us_per_event("cascata", cascata, s)),
                          "baseline": _r(us_per_event("baseline", baseline, s))} for s in sizes}
    ratios: dict[str, Any] = {
        key: _ratio(headline_figures[key]["cascata"], headline_figures[key]["baseline"])
        for key in ("cost_per_million_usd", "wcu_per_event", "requests_per_1000_events")
    }
    ratios["windows_wcu_per_payment"] = _ratio(main["windows_wcu_per_payment"]["cascata"],
                                               main["windows_wcu_per_payment"]["baseline"])
    ratios["handler_us_per_event"] = {s: _ratio(v["cascata"], v["baseline"])
                                      for s, v in per_event.items()}
    ratios["cold_start_ms"] = {f: _ratio(cold.ms[f], cold.ms.get(fns.label("baseline", f), 0))
                               for f in names if f in cold.ms}
    hot_figures = None
    if hot is not None:
        hot_main = whole(hot, cpu, rate)
        hot_main.pop("_costs")
        hot_figures = {**hot_main, **dict(hot_spec or {}),
                       "note": "the same run with a share of the payments going to the hottest "
                               "merchants; Lambda duration uses the CPU per record measured on "
                               "the default workload"}
    pipeline_figures = {**main, "note": "whole pipeline against whole pipeline, same workload "
                        "and batch sizes; see `estimated` for what is not measured"}
    per_processor: dict[str, Any] = {}
    for side_name in SIDES:
        side = usage.sides[side_name]
        for fn, meter in side.meters.items():
            label = fns.label(side_name, fn)
            cost = costs[side_name].functions[label]
            total = sum(cost.usd.values())
            per_processor[label] = {
                "side": side_name,
                "write_units": _r(meter.write_units),
                "wcu_per_event": _r(usage.per_event(meter.write_units)),
                "index_wcu_per_event": _r(usage.per_event(meter.index_write_units)),
                "wcu_per_event_by_table": {t: _r(usage.per_event(v)) for t, v in
                                           sorted(meter.write_units_by_table.items())},
                "cost_per_event_usd": usage.per_event(total),
                "cost_per_million_usd": _r(usage.per_event(total) * 1e6),
            }
    result: dict[str, Any] = {
        "schema": 2,
        **headline_figures,
        "pipeline": pipeline_figures,
        "hot_keys": hot_figures,
        "windows_wcu_per_payment": main["windows_wcu_per_payment"],
        "per_processor": per_processor,
        "estimated": dict(ESTIMATED),
        "local": _local(local),
        "ratios": {**ratios, "note": "cascata / baseline: below 1 means cascata spends less"},
        "scope": {
            "compared": names,
            "whole_pipeline": names,
            "baseline": base_names,
            "skipped": dict(skipped),
            "note": "both sides are whole pipelines: cascata's declared processors and "
                    "scheduled functions against benchmarks/baseline (the same topology, views "
                    "and batch sizes, done the Powertools way)",
        },
        "handler_us_per_event": per_event,
        "handler_us_per_record_by_batch": {
            str(s): {"cascata": {f: _r(us(f, s)) for f in names if f in cpu.us_per_record},
                     "baseline": _r(weighted_us("baseline", baseline, s)),
                     "baseline_by_function": {f: _r(us(fns.label("baseline", f), s))
                                              for f in base_names
                                              if fns.label("baseline", f) in cpu.us_per_record}}
            for s in sizes},
        "handler_batch_records": {f: {str(s): n for s, n in by.items()}
                                  for f, by in cpu.batch_records.items()},
        "cost_per_million_usd_by_kinesis_mode": {
            "on_demand": main["cost_per_million_usd"],
            "provisioned": main["cost_per_million_usd_provisioned_kinesis"]},
        "cost_breakdown_per_million_usd": main["cost_breakdown_per_million_usd"],
        "whole_pipeline": {
            "cost_per_million_usd": main["cost_per_million_usd"]["cascata"],
            "wcu_per_event": main["wcu_per_event"]["cascata"],
            "requests_per_1000_events": main["requests_per_1000_events"]["cascata"],
            "cost_breakdown_per_million_usd": main["cost_breakdown_per_million_usd"]["cascata"],
        },
        "per_function": {
            **{f: _per_function(f, usage, cascata.meters[f], costs["cascata"].functions[f],
                                cascata.batch_sizes[f]) for f in names},
            **{fns.label("baseline", f): _per_function(
                f, usage, baseline.meters[f], costs["baseline"].functions[
                    fns.label("baseline", f)], baseline.batch_sizes[f]) for f in base_names},
        },
        "monthly_fixed_usd": {
            "cascata": _fixed(cascata, costs["cascata"]),
            "baseline": _fixed(baseline, costs["baseline"]),
            "whole_pipeline": _fixed(cascata, costs["cascata"]),
            "rate_events_per_s": rate,
        },
        "cold_start": {"interpreter_ms": _r(cold.interpreter_ms), "runs": cold.runs,
                       "ms": {k: _r(v) for k, v in cold.ms.items()},
                       "import_ms": {k: _r(v) for k, v in cold.import_ms.items()},
                       "init_ms": {k: _r(v) for k, v in cold.init_ms.items()}},
        "cpu": {"emulator_share_subtracted": round(cpu.emulator_share, 3),
                "rounds": {f: {str(s): len(v) for s, v in by.items()}
                           for f, by in cpu.samples.items()},
                "samples_us_per_record": {f: {str(s): [round(x, 1) for x in v]
                                              for s, v in by.items()}
                                          for f, by in cpu.samples.items()}},
        "usage": {"events": usage.events, "payments": usage.payments,
                  "batch_sizes": {**cascata.batch_sizes,
                                  **{fns.label("baseline", f): n
                                     for f, n in baseline.batch_sizes.items()}},
                  "failed_records": {f: m.failed_records for f, m in cascata.meters.items()},
                  "baseline_failed_records": {f: m.failed_records
                                              for f, m in baseline.meters.items()},
                  "scheduled_runs": main["scheduled_runs"],
                  "stored_bytes": {s: usage.sides[s].stored_bytes for s in SIDES},
                  "stream_records": {s: usage.sides[s].stream_records for s in SIDES},
                  "sequence_numbers": f"{fns.AWS_SEQUENCE_DIGITS} digits, as on AWS"},
        "settings": dict(settings),
        "prices": {"as_of": prices.AS_OF, "region": prices.REGION,
                   "kinesis_mode_of_headline": "on_demand"},
        "assumptions": {"latency_ms": dict(ASSUMPTIONS.latency_ms),
                        "lambda_full_vcpu_mb": ASSUMPTIONS.lambda_full_vcpu_mb,
                        "lambda_architecture": "arm64",
                        "rate_events_per_s": rate,
                        "platform_log_bytes_per_invocation": PLATFORM_LOG_BYTES},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": _cpus()},
        "duration_s": round(duration_s, 1),
        "phases_s": dict(phases or {}),
    }
    if unique is not None:
        def wcu(u: Usage, s: str) -> float:
            return u.per_event(sum(m.write_units for m in u.sides[s].meters.values()))

        result["unique_keys"] = {
            "events": unique.events,
            "wcu_per_event": {s: _r(wcu(unique, s)) for s in SIDES if s in unique.sides},
            "note": "accounts drawn from 1,000,000, so an account repeats in a batch only "
                    "within the workload's bursts (one payer paying one payee 4-8 times in a "
                    "row); both sides measured",
        }
    return result


def _per_function(
    fn: str, usage: Usage, meter: Meter, cost: FunctionCost, batch_size: int
) -> dict[str, Any]:
    return {
        "batch_size": batch_size,
        "records_in_per_event": _r(usage.per_event(meter.records_in)),
        "invocations_per_1000_events": _r(usage.per_event(meter.invocations) * 1000),
        "requests_per_1000_events": _r(usage.per_event(meter.total_requests) * 1000),
        "requests_by_operation_per_1000_events": {
            op: _r(usage.per_event(n) * 1000) for op, n in sorted(meter.requests.items())},
        "wcu_per_event": _r(usage.per_event(meter.write_units)),
        "index_wcu_per_event": _r(usage.per_event(meter.index_write_units)),
        "rcu_per_event": _r(usage.per_event(meter.read_units)),
        "conditional_write_failures": meter.conditional_failures,
        "kinesis_records_out_per_event": _r(usage.per_event(sum(meter.kinesis_records.values()))),
        "log_bytes_per_event": _r(usage.per_event(meter.log_bytes)),
        "lambda_ms_per_invocation": _r(cost.lambda_ms),
        "cost_per_million_usd": _r(usage.per_event(sum(cost.usd.values())) * 1e6),
    }


def _fixed(side: Side, cost: SideCost) -> dict[str, Any]:
    hours = prices.HOURS_PER_MONTH
    count = len(side.stream_records)
    return {
        "streams": list(side.stream_records),
        "provisioned_1_shard_each": round(count * hours * prices.usd("kinesis_shard_hour"), 2),
        "on_demand": round(count * hours * prices.usd("kinesis_on_demand_stream_hour"), 2),
        "scheduled_idle": round(cost.monthly_fixed.get("scheduled_idle", 0.0), 2),
    }


def _local(local: Local | None) -> dict[str, Any]:
    if local is None:
        return {"throughput_eps": None, "ceiling_eps": None, "skipped": True}
    return {
        "throughput_eps": _r(local.throughput_eps),
        "ceiling_eps": _r(local.replayed.ceiling_eps) if local.replayed else None,
        "ratio": round(local.ratio, 5),
        "peak_rss_mb": round(local.peak_rss_mb, 1),
        "emulator_calls_per_payment": round(local.replayed.calls_per_payment, 2)
        if local.replayed else None,
        "emulator_replay_seconds": round(local.replayed.seconds, 2) if local.replayed else None,
        "emulator_calls": local.replayed.by_operation if local.replayed else {},
        "kinesis_http_ceiling_eps": _r(local.ceiling.ceiling_eps),
        "offered": None if local.offered is None else {
            "offered_eps": local.offered.offered_eps,
            "throughput_eps": _r(local.offered.throughput_eps),
            "latency_ms": {k: _r(v) for k, v in local.offered.latency_ms.items()},
            "demo_ok": local.offered.ok,
        },
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
            "ratio": round(local.scoped.throughput_eps / local.replayed.ceiling_eps, 5)
            if local.replayed and local.replayed.ceiling_eps else None,
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
    main = Table(title="cascata's whole pipeline vs the Powertools baseline's, same run",
                 title_justify="left", header_style="bold")
    for col in ("figure", "cascata", "baseline", "cascata / baseline"):
        main.add_column(col, justify="left" if col == "figure" else "right")

    def row(label: str, fig: Mapping[str, float], fmt: str) -> None:
        ratio = _ratio(fig["cascata"], fig["baseline"])
        main.add_row(label, format(fig["cascata"], fmt), format(fig["baseline"], fmt), _x(ratio))

    pipe = result["pipeline"]
    row("cost per million events, USD", pipe["cost_per_million_usd"], ",.3f")
    row("  of which measured", pipe["measured_cost_per_million_usd"], ",.3f")
    row("DynamoDB write units per event", pipe["wcu_per_event"], ",.2f")
    row("  of which index writes", pipe["index_wcu_per_event"], ",.2f")
    row("windows write units per payment", pipe["windows_wcu_per_payment"], ",.2f")
    row("AWS requests per 1,000 events", pipe["requests_per_1000_events"], ",.0f")
    hot = result.get("hot_keys")
    if hot:
        share = f"{hot.get('hot_share', 0):.0%} to {hot.get('hot_merchants', '?')} merchants"
        row(f"hot keys ({share}): cost per million, USD", hot["cost_per_million_usd"], ",.3f")
        row("hot keys: write units per event", hot["wcu_per_event"], ",.2f")
        row("hot keys: windows write units per payment", hot["windows_wcu_per_payment"], ",.2f")
    for size, fig in result["handler_us_per_event"].items():
        main.add_row(f"handler CPU µs per event, batches of {int(size):,}",
                     f"{fig['cascata']:,.0f}", f"{fig['baseline']:,.0f}",
                     _x(ratios["handler_us_per_event"].get(size)))
    out.print(main)

    per = Table(title="per function (per input event)", title_justify="left",
                header_style="bold")
    for col in ("function", "batch", "requests/1k", "WCU", "index WCU", "USD/M events"):
        per.add_column(col, justify="left" if col == "function" else "right")
    for fn, fig in result["per_function"].items():
        per.add_row(fn, f"{fig['batch_size']:,}", f"{fig['requests_per_1000_events']:,.0f}",
                    f"{fig['wcu_per_event']:,.2f}", f"{fig['index_wcu_per_event']:,.2f}",
                    f"{fig['cost_per_million_usd']:,.3f}")
    out.print(per)
    parts = Table(title="cost per million events by component, USD (estimated ones marked *)",
                  title_justify="left", header_style="bold")
    for col in ("component", "cascata", "baseline"):
        parts.add_column(col, justify="left" if col == "component" else "right")
    breakdown = pipe["cost_breakdown_per_million_usd"]
    estimated = {"lambda_duration", "storage", "stream_hours", "scheduled_idle"}
    for key in sorted({*breakdown["cascata"], *breakdown["baseline"]}):
        parts.add_row(key + (" *" if key in estimated else ""),
                      f"{breakdown['cascata'].get(key, 0):,.3f}",
                      f"{breakdown['baseline'].get(key, 0):,.3f}")
    out.print(parts)
    if "unique_keys" in result:
        uk = result["unique_keys"]["wcu_per_event"]
        out.print(f"With accounts drawn from a million: {uk.get('cascata', 0):,.2f} WCU/event "
                  f"for cascata against {uk.get('baseline', 0):,.2f} for the baseline.")
    local = result["local"]
    if not local.get("skipped"):
        lat = local["latency_ms"]
        out.print(
            f"local: demo of {local['events']:,} events at [bold]{local['throughput_eps']:,.0f}"
            f"[/] events/s (produce-to-view p50 {lat['p50']:,.0f} ms, p99 {lat['p99']:,.0f} ms); "
            f"the emulator alone serves the same requests at {local['ceiling_eps']:,.0f} "
            f"payments/s ({local['emulator_calls_per_payment']:,.1f} calls a payment); "
            f"ratio {local['ratio']:.3f}; peak memory {local['peak_rss_mb']:,.0f} MiB"
            + ("" if not local.get("offered") else
               f"; offered {local['offered']['offered_eps']:,.0f} payments/s: p50 "
               f"{local['offered']['latency_ms']['p50']:,.0f} ms, p99 "
               f"{local['offered']['latency_ms']['p99']:,.0f} ms")
            + ("" if local["demo_ok"] else
               f"; [red]demo invariants failed: {', '.join(local['demo_failed_invariants'])}[/]"))
    fixed = result["monthly_fixed_usd"]
    out.print(
        f"fixed per month (spread over {fixed['rate_events_per_s']:,.0f} events/s above): "
        f"cascata {len(fixed['cascata']['streams'])} streams ${fixed['cascata']['on_demand']:,.2f}"
        f" on-demand, idle schedule ${fixed['cascata']['scheduled_idle']:,.2f}; baseline "
        f"{len(fixed['baseline']['streams'])} streams ${fixed['baseline']['on_demand']:,.2f}, "
        f"idle schedule ${fixed['baseline']['scheduled_idle']:,.2f}.")
    skipped = result["scope"]["skipped"]
    if skipped:
        out.print("not benchmarked (handler module missing or broken): "
                  + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    out.print(f"prices {result['prices']['region']} as of {result['prices']['as_of']}; "
              f"Kinesis on-demand; ran in {result['duration_s']:,.0f} s.")


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
