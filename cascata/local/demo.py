"""`cascata demo`: the whole pipeline on one machine, checked against a reference model.

Provisions the declared pipeline (embedded emulator by default), starts every processor behind
an emulated event source mapping, produces a generated workload while they run, drains, then
reads what the pipeline left (views, streams, quarantine, on-failure records) and checks the
invariants. The process exit status says whether every invariant held.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from cascata.console import CliError, out, progress
from cascata.local.chaos import ChaosSettings
from cascata.local.emulator import Aws, EmbeddedAws, EndpointError, external
from cascata.local.esm import DrainTimeout
from cascata.local.reference import Invariant, Observed, Reference, check, observe, read_stream
from cascata.local.runtime import LocalRuntime
from cascata.pipeline import PIPELINE, Pipeline
from cascata.producer import Outgoing, produce
from cascata.workload import Generated, WorkloadSpec, generate


@dataclass(frozen=True)
class DemoOptions:
    workload: WorkloadSpec
    chaos: ChaosSettings | None = None
    timeout_s: float = 300.0
    endpoint_url: str | None = None
    stage: str = "local"
    show_progress: bool = True


@dataclass
class StageSummary:
    name: str
    records_in: int
    out: int
    quarantined: int
    invocations: int
    retried: int
    function_errors: int
    on_failure: int

    def to_json(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "name"}


@dataclass
class DemoResult:
    ok: bool
    invariants: list[Invariant]
    stages: list[StageSummary]
    events: int
    sent: int
    duration_s: float
    throughput_eps: float
    latency_ms: dict[str, float]
    chaos: dict[str, Any] | None
    endpoint: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "invariants": {i.name: i.to_json() for i in self.invariants},
            "stages": {s.name: s.to_json() for s in self.stages},
            "events": self.events,
            "sent": self.sent,
            "duration_s": round(self.duration_s, 3),
            "throughput_eps": round(self.throughput_eps, 1),
            "latency_ms": {k: round(v, 1) for k, v in self.latency_ms.items()},
            "chaos": self.chaos,
            "endpoint": self.endpoint,
            "notes": self.notes,
        }


class _Latency:
    """First time each posting was applied to the balances view, by payment id."""

    def __init__(self) -> None:
        self.applied: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(self, processor: str, event: Mapping[str, Any], response: Any,
                finished_at: float) -> None:
        if processor != "balances":
            return
        failed = {f.get("itemIdentifier") for f in (response or {}).get("batchItemFailures", [])}
        with self._lock:
            for record in event.get("Records", []):
                kin = record["kinesis"]
                if kin["sequenceNumber"] in failed:
                    continue
                try:
                    posting = json.loads(base64.b64decode(kin["data"]))
                    key = f"{posting['data']['payment_event_id']}/{posting['data']['direction']}"
                except (ValueError, KeyError, TypeError):
                    continue
                self.applied.setdefault(key, finished_at)

    def per_payment(self) -> dict[str, float]:
        done: dict[str, float] = {}
        for key, when in self.applied.items():
            payment = key.rsplit("/", 1)[0]
            done[payment] = max(done.get(payment, 0.0), when)
        return done


def _with_producer_duplicates(
    events: list[Generated], chaos: ChaosSettings | None
) -> tuple[list[Generated], int]:
    if chaos is None or chaos.duplicate_rate == 0:
        return events, 0
    rng = random.Random(chaos.seed + 99)
    out: list[Generated] = []
    added = 0
    for event in events:
        out.append(event)
        if rng.random() < chaos.duplicate_rate:
            out.append(Generated(len(out), event.key, event.data, event.event_id, event.valid,
                                 event.expected_code, True, event.payer, event.payee,
                                 event.amount_minor, event.currency))
            added += 1
    return out, added


def run_demo(options: DemoOptions, pipeline: Pipeline = PIPELINE) -> DemoResult:
    problems = options.workload.problems() + (options.chaos.problems() if options.chaos else [])
    if problems:
        raise CliError(problems[0])
    aws: Aws
    try:
        if options.endpoint_url:
            aws = external(options.endpoint_url)
            aws.check_reachable()
        else:
            aws = EmbeddedAws().start()
    except EndpointError as exc:
        raise CliError(str(exc)) from None
    latency = _Latency()
    runtime = LocalRuntime(pipeline, aws, stage=options.stage, chaos=options.chaos,
                           observer=latency.observe)
    try:
        return _run(options, runtime, latency)
    finally:
        runtime.close()
        if isinstance(aws, EmbeddedAws):
            aws.stop()


def _run(options: DemoOptions, runtime: LocalRuntime, latency: _Latency) -> DemoResult:
    aws = runtime.aws
    events = list(generate(options.workload))
    events, producer_dups = _with_producer_duplicates(events, options.chaos)
    reference = Reference.of(events)
    with progress(options.show_progress) as bar:
        setup = bar.add_task("provision", total=1)
        runtime.start()
        bar.advance(setup)
        runtime.run_in_background()
        task = bar.add_task("produce → payments-raw", total=len(events))
        started = time.time()
        report = produce(aws.client("kinesis"), runtime.name("payments-raw"),
                         [Outgoing(e.key, e.data) for e in events],
                         on_progress=lambda n: bar.advance(task, n))
        if report.failed:
            raise CliError(f"the producer could not write {report.failed} events: "
                           f"{report.failures[0]}")
        wait = bar.add_task("process until drained", total=len(reference.valid_ids))
        stop = threading.Event()

        def follow() -> None:
            while not stop.wait(0.2):
                bar.update(wait, completed=len(latency.per_payment()))

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        try:
            runtime.drain(options.timeout_s)
        except DrainTimeout as exc:
            raise CliError(f"the pipeline did not drain within {options.timeout_s:.0f} s: "
                           f"{exc}") from None
        finally:
            stop.set()
            follower.join()
        bar.update(wait, completed=len(latency.per_payment()))
        check_task = bar.add_task("check invariants", total=1)
        names = runtime.provisioned.names if runtime.provisioned else {}
        seen = observe(aws, names)
        invariants = check(reference, seen)
        bar.advance(check_task)
    applied = latency.per_payment()
    finished = max(applied.values(), default=time.time())
    send_times: dict[str, float] = {}
    for index, event in enumerate(events):
        if event.valid and event.event_id and index in report.send_times:
            send_times.setdefault(event.event_id, report.send_times[index])
    lat = sorted((applied[e] - t) * 1000 for e, t in send_times.items() if e in applied)
    duration = max(finished - started, 1e-9)
    return DemoResult(
        ok=all(i.ok for i in invariants),
        invariants=invariants,
        stages=_stages(runtime, seen, names),
        events=options.workload.events,
        sent=report.sent,
        duration_s=duration,
        throughput_eps=len(applied) / duration,
        latency_ms=_percentiles(lat),
        chaos=_chaos_summary(runtime, options.chaos, producer_dups),
        endpoint=aws.endpoint_url or "aws",
    )


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    if len(values) == 1:
        return {"p50": values[0], "p99": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p99": cuts[98], "max": values[-1]}


def _stages(runtime: LocalRuntime, seen: Observed, names: Mapping[str, str]) -> list[StageSummary]:
    kinesis = runtime.aws.client("kinesis")
    counts = {
        s.name: sum(1 for _ in read_stream(kinesis, names[s.name]))
        for s in runtime.pipeline.streams
    }
    quarantined: dict[str, int] = {}
    for q in seen.quarantined:
        quarantined[str(q.get("processor"))] = quarantined.get(str(q.get("processor")), 0) + 1
    summaries = []
    for proc in runtime.pipeline.processors:
        stats = runtime.mappings[proc.name].stats
        outputs = proc.outputs
        produced = sum(counts.get(o, 0) for o in outputs) if outputs else len(
            seen.balance_items)
        summaries.append(StageSummary(
            name=proc.name,
            records_in=counts.get(proc.source.stream, 0),
            out=produced,
            quarantined=quarantined.get(proc.name, 0),
            invocations=stats.invocations,
            retried=stats.retries + stats.bisects,
            function_errors=stats.function_errors,
            on_failure=stats.on_failure_records,
        ))
    return summaries


def _chaos_summary(
    runtime: LocalRuntime, chaos: ChaosSettings | None, duplicates: int
) -> dict[str, Any] | None:
    if chaos is None:
        return None
    stats = [m.stats for m in runtime.mappings.values()]
    return {
        "settings": {k: getattr(chaos, k) for k in chaos.__dataclass_fields__},
        "injected": {
            "handler_crashes": sum(s.function_errors for s in stats),
            "invocations_throttled": sum(s.throttles for s in stats),
            "put_records_entries_failed": sum(
                c.counters.put_entries_failed for c in runtime.chaos_clients),
            "put_records_requests_throttled": sum(
                c.counters.put_requests_throttled for c in runtime.chaos_clients),
            "duplicate_sends": duplicates,
        },
    }


def render(result: DemoResult) -> None:
    table = Table(title="stages", title_justify="left", header_style="bold")
    for column in ("processor", "in", "out", "quarantined", "invocations", "retried",
                   "function errors", "on-failure"):
        table.add_column(column, justify="left" if column == "processor" else "right")
    for s in result.stages:
        table.add_row(s.name, f"{s.records_in:,}", f"{s.out:,}", f"{s.quarantined:,}",
                      f"{s.invocations:,}", f"{s.retried:,}", f"{s.function_errors:,}",
                      f"{s.on_failure:,}")
    out.print(table)
    lat = result.latency_ms
    out.print(
        f"{result.events:,} events generated, {result.sent:,} sent to {result.endpoint}; "
        f"throughput [bold]{result.throughput_eps:,.0f}[/] events/s; "
        f"produce-to-view latency p50 {lat['p50']:,.0f} ms, p99 {lat['p99']:,.0f} ms"
    )
    if result.chaos:
        injected = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in
                             result.chaos["injected"].items())
        out.print(f"chaos injected: {injected}")
    out.print()
    for inv in result.invariants:
        mark = "[green]PASS[/]" if inv.ok else "[red]FAIL[/]"
        out.print(f"{mark} {inv.name.replace('_', ' ')}: {inv.detail}")
    out.print()
    out.print("[green bold]every invariant holds[/]" if result.ok
              else "[red bold]some invariants failed[/]")
