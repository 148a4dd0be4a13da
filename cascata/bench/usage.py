"""AWS requests, capacity units and stream records per input event, pipeline and baseline.

The workload goes to the raw stream once; then each runnable processor, upstream first, reads
its source streams shard by shard in batches of its declared batch size (full batches, the
steady state of a busy stream) and is invoked with metered clients. The baseline reads the
same raw records in batches of its own size. Every request a function makes is counted; the
producer's writes to the raw stream are common to both and are not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cascata.bench import functions as fns
from cascata.bench.metering import InProcessAws, Meter, metered
from cascata.local.emulator import provision
from cascata.pipeline import Pipeline
from cascata.producer import Outgoing, produce
from cascata.workload import Generated

SHARDS = 1
"""One shard per stream: every record of a stream is in one ordered log, so the CPU
measurements can take full batches of one shard (a Lambda batch never spans shards)."""


@dataclass
class Usage:
    events: int
    """Records sent to the raw stream (the denominator of every per-event figure)."""
    meters: dict[str, Meter]
    """Function -> what it asked of AWS; the baseline under `fns.BASELINE`."""
    streams: dict[str, dict[str, list[fns.StoredRecord]]] = field(default_factory=dict)
    """Every stream's records after the run, for the CPU measurements."""
    batch_sizes: dict[str, int] = field(default_factory=dict)
    memory_mb: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    """Processors whose handler raised (left out of the later phases, with the reason)."""

    def per_event(self, value: float) -> float:
        return value / self.events if self.events else 0.0


def measure(
    pipeline: Pipeline,
    events: Sequence[Generated],
    *,
    with_baseline: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Usage:
    with InProcessAws() as aws:
        provisioned = provision(pipeline, aws, stage=fns.STAGE, shards=SHARDS)
        if with_baseline:
            fns.provision_baseline(pipeline, aws)
        kinesis = aws.client("kinesis")
        raw_stream = provisioned.names["payments-raw"]
        report = produce(kinesis, raw_stream, [Outgoing(e.key, e.data) for e in events])
        if report.failed:
            raise RuntimeError(f"the emulator refused {report.failed} raw records")
        factory = fns.EventFactory(aws)
        usage = Usage(events=report.sent, meters={})
        for proc in fns.order(pipeline):
            meter = Meter()
            handler = fns.build_processor(pipeline, proc.name, aws,
                                          wrap=metered(meter))
            context = functools.partial(factory.context, proc.name, proc.memory_mb,
                                        proc.timeout_s)
            try:
                for source in proc.sources:
                    stream = provisioned.names[source.stream]
                    _drive(handler, context, factory, stream,
                           fns.read_stream(kinesis, stream), source.batch_size, meter)
            except Exception as exc:  # noqa: BLE001 - a work-in-progress handler is left out
                usage.failed[proc.name] = f"the handler raised {type(exc).__name__}: {exc}"
                continue
            usage.meters[proc.name] = meter
            usage.batch_sizes[proc.name] = max(s.batch_size for s in proc.sources)
            usage.memory_mb[proc.name] = proc.memory_mb
            if on_step:
                on_step(proc.name)
        if with_baseline:
            meter = Meter()
            handler = fns.build_baseline(pipeline, aws, wrap=metered(meter))
            context = functools.partial(factory.context, fns.BASELINE, fns.baseline_memory_mb())
            _drive(handler, context, factory, raw_stream, fns.read_stream(kinesis, raw_stream),
                   fns.baseline_batch_size(), meter)
            usage.meters[fns.BASELINE] = meter
            usage.batch_sizes[fns.BASELINE] = fns.baseline_batch_size()
            usage.memory_mb[fns.BASELINE] = fns.baseline_memory_mb()
            if on_step:
                on_step(fns.BASELINE)
        usage.streams = {s.name: fns.read_stream(kinesis, provisioned.names[s.name])
                         for s in pipeline.streams}
    return usage


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
