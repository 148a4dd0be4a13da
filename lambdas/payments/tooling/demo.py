"""`cascata demo`: the whole pipeline on one machine, checked against a reference model.

Provisions the declared pipeline (embedded emulator by default), starts every processor behind
an emulated event source mapping, produces a generated workload while they run, drains, then
reads what the pipeline left (views, streams, quarantine, on-failure records) and checks the
invariants. The process exit status says whether every invariant held.
"""

from __future__ import annotations

import json
import math
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
from cascata.local.runtime import LocalRuntime, mapping_key
from cascata.pipeline import Pipeline
from cascata.producer import Outgoing, produce
from cascata_runtime.records import decode_event
from payments.pipeline import PIPELINE
from payments.tooling.reference import (
    Invariant,
    Observed,
    Reference,
    check,
    notifications_tap,
    observe,
    read_tap,
)
from payments.tooling.workload import Generated, WorkloadSpec, generate, generate_customers

QUIET_AFTER_S = 3600.0
"""How far the demo moves the clock before the scheduled functions' turn."""


@dataclass(frozen=True)
class DemoOptions:
    workload: WorkloadSpec
    chaos: ChaosSettings | None = None
    timeout_s: float = 300.0
    endpoint_url: str | None = None
    stage: str = "local"
    show_progress: bool = True
    rate: float | None = None
    """Offer the payments at this many events a second (None: as fast as they go)."""
    broker: str = "kinesis"
    """`msk`: the streams are topics on a Kafka protocol broker on loopback."""


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
    region: str = ""
    offered_eps: float | None = None
    """The rate the payments were offered at (None: all at once)."""
    applied: int = 0
    """Distinct payments fully applied to the balances view (what throughput counts)."""
    peak_rss_mb: float = 0.0
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
            "applied": self.applied,
            "offered_eps": self.offered_eps,
            "latency_ms": {k: round(v, 1) for k, v in self.latency_ms.items()},
            "chaos": self.chaos,
            "endpoint": self.endpoint,
            "region": self.region,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "notes": self.notes,
        }


class _Latency:
    """When each payment was fully applied to the balances view (both of its postings), kept
    as the balances invocations return, so that reading progress is O(1)."""

    def __init__(self) -> None:
        self._postings: dict[str, set[str]] = {}
        self._done: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(self, processor: str, event: Mapping[str, Any], response: Any,
                finished_at: float) -> None:
        if processor != "balances":
            return
        failed = [f.get("itemIdentifier") for f in
                  (response or {}).get("batchItemFailures", [])]
        with self._lock:
            for record in decode_event(event):  # Kinesis or MSK
                if record.item_identifier in failed:
                    continue
                try:
                    posting = json.loads(record.data)
                    payment = str(posting["data"]["payment_event_id"])
                    direction = str(posting["data"]["direction"])
                except (ValueError, KeyError, TypeError):
                    continue
                if payment in self._done:
                    continue
                seen = self._postings.setdefault(payment, set())
                seen.add(direction)
                if len(seen) == 2:  # debit and credit: the payment is in the view
                    del self._postings[payment]
                    self._done[payment] = finished_at

    @property
    def completed(self) -> int:
        return len(self._done)

    def per_payment(self) -> dict[str, float]:
        with self._lock:
            return dict(self._done)


class _Reader:
    """The state read back the quickest way this process can: in-process where the embedded
    emulator serves the operation (the same state the endpoint serves)."""

    def __init__(self, aws: Aws) -> None:
        self._aws = aws

    def client(self, service: str) -> Any:
        return self._aws.reading_client(service)


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


def run_demo(options: DemoOptions, pipeline: Pipeline | None = None) -> DemoResult:
    pipeline = pipeline or PIPELINE
    problems = options.workload.problems() + (options.chaos.problems() if options.chaos else [])
    if options.rate is not None and options.rate <= 0:
        problems.append(f"--rate must be positive, got {options.rate}")
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
                           observer=latency.observe, broker=options.broker)
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
    customers = generate_customers(options.workload)
    reference = Reference.of(events)
    reference.add_customers(customers, events)
    with progress(options.show_progress) as bar:
        setup = bar.add_task("provision", total=1)
        runtime.start()
        tap = notifications_tap(aws, runtime.name("notifications"))
        bar.advance(setup)
        runtime.run_in_background()
        task = bar.add_task("produce → payments-raw", total=len(events))
        crm = bar.add_task("produce → customers", total=len(customers))
        started = time.time()
        # The CRM's customer events flow alongside the payments, so either may come first.
        crm_reports: list[Any] = []
        crm_thread = threading.Thread(target=lambda: crm_reports.append(produce(
            aws.client("kinesis"), runtime.name("customers"),
            [Outgoing(c.key, c.data) for c in customers],
            on_progress=lambda n: bar.advance(crm, n), sink=runtime.kafka_sink())),
            daemon=True)
        crm_thread.start()
        report = produce(aws.client("kinesis"), runtime.name("payments-raw"),
                         [Outgoing(e.key, e.data) for e in events],
                         on_progress=lambda n: bar.advance(task, n), rate=options.rate,
                         sink=runtime.kafka_sink())
        crm_thread.join()
        failed = report.failed + sum(r.failed for r in crm_reports)
        if failed or not crm_reports:
            first = (report.failures + [f for r in crm_reports for f in r.failures]
                     or ["the customers producer stopped"])[0]
            raise CliError(f"the producers could not write {failed} events: {first}")
        wait = bar.add_task("process until drained", total=len(reference.valid_ids))
        stop = threading.Event()

        def follow() -> None:
            while not stop.wait(0.2):
                bar.update(wait, completed=latency.completed)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        try:
            # However long the workload takes, the demo waits as long as the pipeline moves.
            runtime.drain(math.inf, stall_s=options.timeout_s)
            # The scheduler's turn, an hour later: every key has gone quiet, so the scheduled
            # close emits the final results of the windows still open.
            runtime.clock.advance(QUIET_AFTER_S)
            for scheduled in runtime.pipeline.scheduled:
                runtime.run_scheduled(scheduled.name)
            runtime.drain(math.inf, stall_s=options.timeout_s)
        except DrainTimeout as exc:
            raise CliError(f"the pipeline stopped making progress for {options.timeout_s:.0f} "
                           f"s: {exc}") from None
        finally:
            stop.set()
            follower.join()
        bar.update(wait, completed=latency.completed)
        check_task = bar.add_task("check invariants", total=1)
        names = runtime.provisioned.names if runtime.provisioned else {}
        seen = observe(_Reader(aws), names, read_tap(aws, tap),
                       streams=runtime.stream_records)
        invariants = check(reference, seen, _window_specs())
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
        endpoint=aws.where() if runtime.kafka is None
        else f"{aws.where()}, Kafka at {runtime.kafka.bootstrap_servers}",
        region=aws.region,
        offered_eps=options.rate,
        applied=len(applied),
        peak_rss_mb=peak_rss_mb(),
    )


def peak_rss_mb() -> float:
    """The most memory this process has held at once (resident set), in MiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _window_specs() -> list[tuple[str, int, int]]:
    """The windows the pipeline's windows processor runs (its configuration, as data)."""
    from payments.domain.windows import WindowConfig

    return [(w.name, w.size_s, w.advance_s) for w in WindowConfig().windows]


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    if len(values) == 1:
        return {"p50": values[0], "p99": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p99": cuts[98], "max": values[-1]}


def _stages(runtime: LocalRuntime, seen: Observed, names: Mapping[str, str]) -> list[StageSummary]:
    """Per processor: records read, records emitted (or, for view writers, items in the views
    they keep), quarantined, and what its mappings went through."""
    ddb = runtime.aws.reading_client("dynamodb")
    counts = {s.name: len(runtime.stream_records(names[s.name]))
              for s in runtime.pipeline.streams}
    items: dict[str, int] = {}
    for table in runtime.pipeline.tables:
        items[table.name] = sum(
            page["Count"] for page in ddb.get_paginator("scan").paginate(
                TableName=names[table.name], Select="COUNT")
        )
    quarantined: dict[str, int] = {}
    for q in seen.quarantined:
        quarantined[str(q.get("processor"))] = quarantined.get(str(q.get("processor")), 0) + 1
    summaries = []
    for proc in runtime.pipeline.processors:
        stats = [runtime.mappings[mapping_key(proc.name, src.stream)].stats
                 for src in proc.sources]
        produced = sum(counts.get(o, 0) for o in runtime.pipeline.outputs(proc.name))
        if not runtime.pipeline.outputs(proc.name):
            produced = sum(items.get(b.resource, 0) for b in proc.bindings
                           if b.access == "read_write")
        summaries.append(StageSummary(
            name=proc.name,
            records_in=sum(counts.get(src.stream, 0) for src in proc.sources),
            out=produced,
            quarantined=quarantined.get(proc.name, 0),
            invocations=sum(s.invocations for s in stats),
            retried=sum(s.retries + s.bisects for s in stats),
            function_errors=sum(s.function_errors for s in stats),
            on_failure=sum(s.on_failure_records for s in stats),
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
            # On Kafka: messages reported undelivered, and sends refused.
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
        f"{result.events:,} events generated, {result.sent:,} sent to {result.endpoint} "
        f"({result.region}); "
        f"throughput [bold]{result.throughput_eps:,.0f}[/] events/s; "
        + (f"offered at {result.offered_eps:,.0f} events/s; " if result.offered_eps else "")
        + f"produce-to-view latency p50 {lat['p50']:,.0f} ms, p99 {lat['p99']:,.0f} ms; "
        f"peak memory {result.peak_rss_mb:,.0f} MiB"
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
