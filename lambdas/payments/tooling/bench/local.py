"""The local runtime's end-to-end rate, beside the emulator's own ceiling for the same work.

`demo` runs every runnable processor behind the emulated event source mappings on the
embedded emulator and reports payments per second into the balances view, the latency from
produce to view and the peak memory. While it runs, every request the functions make to the
emulator is recorded (`inprocess.record_calls`). The ceiling replays exactly those requests,
in order, through the same in-process path, against a freshly provisioned emulator with
nothing else running: how fast the emulator alone could serve this pipeline's work if the
event source mappings and the functions' own code took no time. The ratio is the share of
that ceiling the runtime reaches. A second demo offers the payments at a steady 200 a second
for the latency a user of `cascata up` sees at that rate. The emulator's raw Kinesis rate over
HTTP (one PutRecords
and one GetRecords per record, the producers' path) is reported beside it.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cascata.local.emulator import EmbeddedAws, provision
from cascata.local.inprocess import Call, record_calls
from cascata.pipeline import Pipeline
from cascata.producer import Outgoing, produce
from payments.tooling.demo import DemoOptions, run_demo
from payments.tooling.workload import WorkloadSpec, generate

OFFERED_EPS = 200.0
"""The steady rate the latency run offers payments at."""
CEILING_SHARDS = 2
"""As many shards as the local runtime gives every stream."""


@dataclass(frozen=True, slots=True)
class Ceiling:
    records: int
    put_eps: float
    get_eps: float
    ceiling_eps: float
    """Records per second through one PutRecords and one GetRecords over HTTP:
    n / (t_put + t_get)."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """The demo's own requests to the emulator, replayed alone through the in-process path."""

    calls: int
    calls_per_payment: float
    seconds: float
    ceiling_eps: float
    """Payments per second the emulator alone could serve: applied payments / seconds."""
    by_operation: dict[str, int]


@dataclass(frozen=True, slots=True)
class DemoRun:
    processors: tuple[str, ...]
    throughput_eps: float
    latency_ms: dict[str, float]
    ok: bool
    failed_invariants: tuple[str, ...]
    seconds: float
    applied: int = 0
    peak_rss_mb: float = 0.0
    calls: tuple[Call, ...] = ()
    offered_eps: float | None = None


@dataclass(frozen=True, slots=True)
class Local:
    events: int
    throughput_eps: float
    latency_ms: dict[str, float]
    demo_ok: bool
    demo_seconds: float
    ceiling: Ceiling
    failed_invariants: tuple[str, ...]
    replayed: Replayed | None = None
    peak_rss_mb: float = 0.0
    offered: DemoRun | None = None
    """The demo again with the payments offered at `OFFERED_EPS`: latency at a steady rate."""
    scoped: DemoRun | None = None
    """The same demo with only the compared processors (where the throughput goes)."""

    @property
    def ratio(self) -> float:
        """End-to-end payments per second over the emulator's own ceiling for that work."""
        if self.replayed is None or not self.replayed.ceiling_eps:
            return 0.0
        return self.throughput_eps / self.replayed.ceiling_eps


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


def demo(pipeline: Pipeline, spec: WorkloadSpec, *, timeout_s: float,
         record: bool = False, rate: float | None = None) -> DemoRun:
    started = time.perf_counter()
    options = DemoOptions(workload=spec, timeout_s=timeout_s, show_progress=False, rate=rate)
    calls: list[Call] = []
    if record:
        with record_calls() as calls:
            result = run_demo(options, pipeline)
    else:
        result = run_demo(options, pipeline)
    return DemoRun(
        processors=tuple(p.name for p in pipeline.processors),
        throughput_eps=result.throughput_eps,
        latency_ms=dict(result.latency_ms),
        ok=result.ok,
        failed_invariants=tuple(i.name for i in result.invariants if not i.ok),
        seconds=time.perf_counter() - started,
        applied=result.applied,
        peak_rss_mb=result.peak_rss_mb,
        calls=tuple(calls),
        offered_eps=rate,
    )


def replay(pipeline: Pipeline, run: DemoRun, *, stage: str = "local") -> Replayed:
    """The run's requests, in their order, against a fresh emulator and nothing else."""
    from botocore.exceptions import ClientError

    with EmbeddedAws() as aws:
        provision(pipeline, aws, stage=stage)
        clients = {service: aws.function_client(service) for service, _, _ in run.calls}
        started = time.perf_counter()
        for service, method, params in run.calls:
            # Conditional writes that lost a race live may win here and the other way round:
            # the work is the same request either way.
            with contextlib.suppress(ClientError):
                getattr(clients[service], method)(**params)
        seconds = time.perf_counter() - started
    counts = Counter(f"{service}.{method}" for service, method, _ in run.calls)
    return Replayed(
        calls=len(run.calls),
        calls_per_payment=len(run.calls) / run.applied if run.applied else 0.0,
        seconds=seconds,
        ceiling_eps=run.applied / seconds if seconds > 0 else 0.0,
        by_operation=dict(counts.most_common()),
    )


def measure(
    pipeline: Pipeline,
    spec: WorkloadSpec,
    *,
    timeout_s: float = 300.0,
    scoped: Pipeline | None = None,
    offered_eps: float | None = OFFERED_EPS,
) -> Local:
    roof = ceiling(spec)
    whole = demo(pipeline, spec, timeout_s=timeout_s, record=True)
    replayed = replay(pipeline, whole)
    offered = None
    if offered_eps:
        offered = demo(pipeline, spec, timeout_s=timeout_s, rate=offered_eps)
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
        replayed=replayed,
        peak_rss_mb=whole.peak_rss_mb,
        offered=offered,
        scoped=part,
    )
