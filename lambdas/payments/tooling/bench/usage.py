"""AWS requests, capacity units, stream records, archive, logs and storage per input event, for
cascata's pipeline and for the baseline's, over the same workload.

Each side runs on a fresh emulator. The producers' records go to the origin streams through a
metered client (the raw-stream ingest both sides pay); then each runnable processor, upstream
first, reads its source streams shard by shard in batches of its declared batch size (full
batches, the steady state of a busy stream) and is invoked with metered clients; then each
scheduled function is invoked, as its schedule would, until an invocation finds nothing to do
(it is never capped by the bench: the windows the run opened all close). That last, idle
invocation is kept apart: the schedule pays one every period whatever the traffic. Every
request a function makes is counted; what its loggers write at the deployed level is counted;
the tables' stored bytes are read at the end; the archive's Firehose ingest is computed from
the origin records it copies.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cascata.local.emulator import provision
from cascata.pipeline import Pipeline
from cascata.producer import Outgoing, produce
from payments.tooling.bench import functions as fns
from payments.tooling.bench.metering import (
    EmulatorCpu,
    InProcessAws,
    ItemSizes,
    LogMeter,
    Meter,
    firehose_billed_bytes,
    metered,
)
from payments.tooling.workload import Generated

SHARDS = 1
"""One shard per stream: every record of a stream is in one ordered log, so the CPU
measurements can take full batches of one shard (a Lambda batch never spans shards)."""
QUIET_AFTER_S = 3600.0
"""How far after the last event (and after now) the scheduled functions run: every key and
shard has gone quiet, so every window the run opened is due."""
MAX_SCHEDULED_RUNS = 500
"""A safety stop only: a scheduled function still writing after this many runs is reported
as failed rather than looping for ever."""
LOG_LEVEL = "INFO"
"""The deployed log level (`log_level` in cdk.json, every stage)."""
PRODUCER = "producer"


@dataclass
class Side:
    """One pipeline (cascata's or the baseline's) run over the workload."""

    pipeline: Pipeline
    meters: dict[str, Meter] = field(default_factory=dict)
    """Function -> what it asked of AWS (a scheduled function without its idle run)."""
    idle_ticks: dict[str, Meter] = field(default_factory=dict)
    """Scheduled function -> one invocation with nothing left to do (paid every period)."""
    scheduled_runs: dict[str, int] = field(default_factory=dict)
    scheduled_cpu_s: dict[str, float] = field(default_factory=dict)
    """Scheduled function -> handler CPU seconds of its working runs (emulator subtracted)."""
    idle_cpu_s: dict[str, float] = field(default_factory=dict)
    producer: Meter = field(default_factory=Meter)
    """The producers' PutRecords into the origin streams."""
    archive_bytes: int = 0
    archive_billed_bytes: int = 0
    archive_records: int = 0
    archive_retrieved_kb: int = 0
    """What the archive's Firehose reads from the streams, each record rounded up to 1 KB."""
    stored_bytes: dict[str, int] = field(default_factory=dict)
    """Declared table -> bytes stored at the end (items and index entries, with overhead)."""
    stream_records: dict[str, int] = field(default_factory=dict)
    stream_bytes: dict[str, int] = field(default_factory=dict)
    streams: dict[str, dict[str, list[fns.StoredRecord]]] = field(default_factory=dict)
    """Every stream's records after the run, for the CPU measurements."""
    batch_sizes: dict[str, int] = field(default_factory=dict)
    memory_mb: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    """Functions whose handler raised (left out of the later phases, with the reason)."""


@dataclass
class Usage:
    events: int
    """Records sent to the origin streams, payments and customer events: the denominator of
    every per-event figure."""
    payments: int
    sides: dict[str, Side]
    """"cascata" and, unless left out, "baseline"."""

    def per_event(self, value: float) -> float:
        return value / self.events if self.events else 0.0

    @property
    def cascata(self) -> Side:
        return self.sides["cascata"]

    @property
    def failed(self) -> dict[str, str]:
        return dict(self.cascata.failed)

    @property
    def streams(self) -> dict[str, dict[str, list[fns.StoredRecord]]]:
        return self.cascata.streams


def measure(
    pipeline: Pipeline,
    events: Sequence[Generated],
    *,
    baseline: Pipeline | None = None,
    on_step: Callable[[str], None] | None = None,
) -> Usage:
    sides = {"cascata": run_side(pipeline, events, on_step=on_step)}
    if baseline is not None:
        sides["baseline"] = run_side(baseline, events, on_step=on_step)
    origins = {s.name for s in pipeline.streams if s.origin}
    return Usage(events=sum(1 for e in events if e.stream in origins),
                 payments=sum(1 for e in events if e.stream == "payments-raw"), sides=sides)


def run_side(
    pipeline: Pipeline,
    events: Sequence[Generated],
    *,
    on_step: Callable[[str], None] | None = None,
) -> Side:
    side = Side(pipeline=pipeline)
    with InProcessAws() as aws, LogMeter(LOG_LEVEL) as logs, EmulatorCpu() as emulator:
        provisioned = provision(pipeline, aws, stage=fns.STAGE, shards=SHARDS)
        tables = {provisioned.names[t.name]: t for t in pipeline.tables}
        items = ItemSizes(aws.account, aws.region, tables=tables)
        kinesis = aws.client("kinesis")
        _ingest(pipeline, events, provisioned.names, metered(side.producer, items)("kinesis",
                                                                                   kinesis))
        for archive in pipeline.archives:
            sizes = [len(e.data) for e in events if e.stream == archive.stream]
            side.archive_records += len(sizes)
            side.archive_bytes += sum(sizes)
            side.archive_billed_bytes += firehose_billed_bytes(sizes)
            side.archive_retrieved_kb += sum(max(1, -(-size // 1024)) for size in sizes)
        factory = fns.EventFactory(aws)
        for proc in fns.order(pipeline):
            meter = Meter()
            logs.current = meter
            handler = fns.build(pipeline, proc.name, aws, wrap=metered(meter, items))
            context = functools.partial(factory.context, proc.name, proc.memory_mb,
                                        proc.timeout_s)
            try:
                for source in proc.sources:
                    stream = provisioned.names[source.stream]
                    _drive(handler, context, factory, stream,
                           fns.read_stream(kinesis, stream), source.batch_size, meter)
            except Exception as exc:  # noqa: BLE001 - a work-in-progress handler is left out
                side.failed[proc.name] = f"the handler raised {type(exc).__name__}: {exc}"
                continue
            finally:
                logs.current = None
            side.meters[proc.name] = meter
            side.batch_sizes[proc.name] = max(s.batch_size for s in proc.sources)
            side.memory_mb[proc.name] = proc.memory_mb
            if on_step:
                on_step(proc.name)
        late = max(time.time(), _latest(events)) + QUIET_AFTER_S
        for sched in pipeline.scheduled:
            meter = Meter()
            logs.current = meter
            try:
                handler = fns.build(pipeline, sched.name, aws, wrap=metered(meter, items),
                                    now=lambda: late)
                context = functools.partial(factory.context, sched.name, sched.memory_mb,
                                            sched.timeout_s)
                runs, idle, cpu_s = _until_idle(handler, context, meter,
                                                _scheduled_event(late), emulator)
            except Exception as exc:  # noqa: BLE001 - as above
                side.failed[sched.name] = f"the handler raised {type(exc).__name__}: {exc}"
                continue
            finally:
                logs.current = None
            side.meters[sched.name] = meter.minus(idle)
            side.idle_ticks[sched.name] = idle
            side.scheduled_runs[sched.name] = runs
            side.scheduled_cpu_s[sched.name] = sum(cpu_s[:-1])
            side.idle_cpu_s[sched.name] = cpu_s[-1]
            side.batch_sizes[sched.name] = 0
            side.memory_mb[sched.name] = sched.memory_mb
            if on_step:
                on_step(sched.name)
        side.streams = {s.name: fns.read_stream(kinesis, provisioned.names[s.name])
                        for s in pipeline.streams}
        for name, shards in side.streams.items():
            side.stream_records[name] = sum(len(r) for r in shards.values())
            side.stream_bytes[name] = sum(len(r.data) + len(r.partition_key.encode())
                                          for rs in shards.values() for r in rs)
        side.stored_bytes = {t.name: items.stored_bytes(provisioned.names[t.name])
                             for t in pipeline.tables}
    return side


def _ingest(
    pipeline: Pipeline, events: Sequence[Generated], names: Mapping[str, str], kinesis: Any
) -> None:
    for stream in pipeline.streams:
        if not stream.origin:
            continue
        records = [Outgoing(e.key, e.data) for e in events if e.stream == stream.name]
        if not records:
            continue
        report = produce(kinesis, names[stream.name], records)
        if report.failed:
            raise RuntimeError(f"the emulator refused {report.failed} records of {stream.name}")


def _until_idle(
    handler: fns.Invoke,
    context: Callable[[], Any],
    meter: Meter,
    event: Mapping[str, Any],
    emulator: EmulatorCpu,
) -> tuple[int, Meter, list[float]]:
    """Invoke until a run writes nothing; returns the runs, what the idle run cost, and the
    handler CPU seconds of each run."""
    cpu_s: list[float] = []
    for run in range(1, MAX_SCHEDULED_RUNS + 1):
        before = meter.copy()
        in_emulator = emulator.seconds
        started = time.process_time()
        handler(event, context())
        cpu_s.append(max(0.0, time.process_time() - started - (emulator.seconds - in_emulator)))
        meter.invocations += 1
        spent = meter.minus(before)
        if not spent.write_units and not sum(spent.kinesis_records.values()):
            return run, spent, cpu_s
    raise RuntimeError(f"still writing after {MAX_SCHEDULED_RUNS} runs")


def _scheduled_event(when: float) -> dict[str, Any]:
    return {
        "version": "0", "id": "bench", "detail-type": "Scheduled Event",
        "source": "aws.scheduler", "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        "region": "us-east-1", "resources": [], "detail": {},
    }


def _latest(events: Sequence[Generated]) -> float:
    times = [datetime.fromisoformat(e.occurred_at.replace("Z", "+00:00")).timestamp()
             for e in events if e.occurred_at]
    return max(times, default=0.0)


def _drive(
    handler: fns.Invoke,
    context: Callable[[], Any],
    factory: fns.EventFactory,
    stream: str,
    records: Mapping[str, list[fns.StoredRecord]],
    batch_size: int,
    meter: Meter,
) -> None:
    for batch in fns.batches(records, batch_size):
        # A fresh context per invocation, as Lambda gives (its remaining time counts down).
        response = handler(factory.event(stream, batch), context()) or {}
        meter.invocations += 1
        meter.records_in += len(batch)
        meter.retrieved_kb += sum(r.billable_kb for r in batch)
        meter.failed_records += len(response.get("batchItemFailures", []))
