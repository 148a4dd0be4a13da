"""The local runtime's end-to-end rate, beside the emulator's raw Kinesis rate as its ceiling.

`demo` runs every runnable processor behind the emulated event source mappings on the
embedded server and reports payments per second into the balances view and the latency from
produce to view. The ceiling is what the same embedded server does with nothing else going on:
the same records written with PutRecords (the producer's own path) then read back with
GetRecords over HTTP, one after the other. No pipeline can move an event faster than one write
and one read, and the pipeline writes and reads each payment several times (1 raw record, 1
validated, 2 postings, more for other consumers), so the ratio is an upper-bounded efficiency,
not a percentage of a reachable target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cascata.local.demo import DemoOptions, run_demo
from cascata.local.emulator import EmbeddedAws
from cascata.pipeline import Pipeline
from cascata.producer import Outgoing, produce
from cascata.workload import WorkloadSpec, generate

CEILING_SHARDS = 2
"""As many shards as the local runtime gives every stream."""


@dataclass(frozen=True, slots=True)
class Ceiling:
    records: int
    put_eps: float
    get_eps: float
    ceiling_eps: float
    """Records per second through one PutRecords and one GetRecords: n / (t_put + t_get)."""


@dataclass(frozen=True, slots=True)
class DemoRun:
    processors: tuple[str, ...]
    throughput_eps: float
    latency_ms: dict[str, float]
    ok: bool
    failed_invariants: tuple[str, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class Local:
    events: int
    throughput_eps: float
    latency_ms: dict[str, float]
    demo_ok: bool
    demo_seconds: float
    ceiling: Ceiling
    failed_invariants: tuple[str, ...]
    scoped: DemoRun | None = None
    """The same demo with only the compared processors (where the throughput goes)."""

    @property
    def ratio(self) -> float:
        return self.throughput_eps / self.ceiling.ceiling_eps if self.ceiling.ceiling_eps else 0.0


def ceiling(spec: WorkloadSpec) -> Ceiling:
    records = [Outgoing(g.key, g.data) for g in generate(spec)]
    with EmbeddedAws() as aws:
        kinesis = aws.client("kinesis")
        name = "cascata-bench-ceiling"
        kinesis.create_stream(StreamName=name, ShardCount=CEILING_SHARDS)
        kinesis.get_waiter("stream_exists").wait(StreamName=name,
                                                 WaiterConfig={"Delay": 0.2})
        started = time.perf_counter()
        report = produce(kinesis, name, records)
        written = time.perf_counter()
        read = _read_all(kinesis, name)
        finished = time.perf_counter()
    if report.failed or read != report.sent:
        raise RuntimeError(f"the emulator lost records: sent {report.sent}, read {read}")
    put_s, get_s = written - started, finished - written
    return Ceiling(records=read, put_eps=read / put_s, get_eps=read / get_s,
                   ceiling_eps=read / (put_s + get_s))


def _read_all(kinesis: Any, stream: str) -> int:
    count = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"]:
                break
            count += len(page["Records"])
            iterator = page.get("NextShardIterator")
    return count


def demo(pipeline: Pipeline, spec: WorkloadSpec, *, timeout_s: float) -> DemoRun:
    started = time.perf_counter()
    result = run_demo(DemoOptions(workload=spec, timeout_s=timeout_s, show_progress=False),
                      pipeline)
    return DemoRun(
        processors=tuple(p.name for p in pipeline.processors),
        throughput_eps=result.throughput_eps,
        latency_ms=dict(result.latency_ms),
        ok=result.ok,
        failed_invariants=tuple(i.name for i in result.invariants if not i.ok),
        seconds=time.perf_counter() - started,
    )


def measure(
    pipeline: Pipeline,
    spec: WorkloadSpec,
    *,
    timeout_s: float = 300.0,
    scoped: Pipeline | None = None,
) -> Local:
    roof = ceiling(spec)
    whole = demo(pipeline, spec, timeout_s=timeout_s)
    part = None
    if scoped is not None and len(scoped.processors) < len(pipeline.processors):
        part = demo(scoped, spec, timeout_s=timeout_s)
    return Local(
        events=spec.events,
        throughput_eps=whole.throughput_eps,
        latency_ms=whole.latency_ms,
        demo_ok=whole.ok,
        demo_seconds=whole.seconds,
        ceiling=roof,
        failed_invariants=whole.failed_invariants,
        scoped=part,
    )
