"""CPU microseconds per record of each handler, on batches of 100 and of 1,000 records.

Each handler runs in this process, single-threaded from the bench's side (a handler may use
threads of its own: process CPU time counts them), against the emulator in this process. The
emulator's own CPU time is measured separately and subtracted, so a figure is what the
handler costs: decoding, the domain, the client side of boto3 (serialisation, signing,
parsing), logging. The functions take turns within each round, starting with a different one
each round, so machine noise hits every function alike; the figure is the median of the rounds.

Every timed call starts from the same state: empty tables (cleared outside the timed region),
so a round applies its records afresh instead of meeting them as redeliveries.
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cascata.local.emulator import provision
from cascata.pipeline import EventSource, Pipeline
from payments.tooling.bench import functions as fns
from payments.tooling.bench.metering import EmulatorCpu, InProcessAws

WARMUP_RECORDS = 20


@dataclass(frozen=True, slots=True)
class Settings:
    sizes: tuple[int, ...] = (100, 1000)
    rounds: Mapping[int, int] = field(default_factory=lambda: {100: 5, 1000: 3})
    always: frozenset[str] = frozenset()
    """Functions that get every round (the compared ones and the baseline). The others stop
    taking rounds at a size once they have spent `budget_s` of wall time on it (at least one
    round each), so one slow processor cannot hold the whole bench hostage."""
    budget_s: float = 20.0

    def rounds_for(self, size: int) -> int:
        return self.rounds.get(size, 3)


@dataclass
class CpuResult:
    us_per_record: dict[str, dict[int, float]]
    """function -> batch size -> median CPU microseconds per record."""
    samples: dict[str, dict[int, list[float]]]
    batch_records: dict[str, dict[int, int]]
    """function -> nominal batch size -> records actually in the batch (fewer when the
    function's input stream held fewer)."""
    emulator_share: float
    """Share of the measured process CPU time that was the emulator's (subtracted)."""


def measure(
    sides: Mapping[str, tuple[Pipeline, Mapping[str, Mapping[str, list[fns.StoredRecord]]]]],
    settings: Settings,
    *,
    on_round: Callable[[int, str], None] | None = None,
) -> CpuResult:
    """`sides`: side ("cascata", "baseline") -> its pipeline and its streams (declared stream
    -> shard -> records, as the usage run left them). Results are keyed by `fns.label`."""
    with InProcessAws() as aws, EmulatorCpu() as emulator:
        factory = fns.EventFactory(aws)
        handlers: dict[str, fns.Invoke] = {}
        contexts: dict[str, Callable[[], object]] = {}
        inputs: dict[str, tuple[str, list[fns.StoredRecord]]] = {}
        for side, (pipeline, streams) in sides.items():
            provisioned = provision(pipeline, aws, stage=fns.STAGE, shards=1)
            for proc in pipeline.processors:
                name = fns.label(side, proc.name)
                source = _busiest(proc.sources, streams)
                handlers[name] = fns.build(pipeline, proc.name, aws)
                contexts[name] = functools.partial(factory.context, proc.name, proc.memory_mb,
                                                   proc.timeout_s)
                inputs[name] = (provisioned.names[source], _longest_shard(streams[source]))
        names = [n for n in handlers if inputs[n][1]]
        events = {
            name: {size: factory.event(inputs[name][0], inputs[name][1][:size])
                   for size in (WARMUP_RECORDS, *settings.sizes)}
            for name in names
        }
        clear = _table_clearer()
        for name in names:  # first calls import lazily and fill caches: not timed
            clear()
            handlers[name](events[name][WARMUP_RECORDS], contexts[name]())
        samples: dict[str, dict[int, list[float]]] = {n: {} for n in names}
        cpu_total = emulator_total = 0.0
        turn = 0
        for size in settings.sizes:
            wall: dict[str, float] = dict.fromkeys(names, 0.0)
            for round_no in range(settings.rounds_for(size)):
                if on_round:
                    on_round(size, f"round {round_no + 1}/{settings.rounds_for(size)}")
                for name in names[turn % len(names):] + names[: turn % len(names)]:
                    taken = len(samples[name].get(size, []))
                    if (name not in settings.always and taken
                            and wall[name] * (taken + 1) / taken > settings.budget_s):
                        continue
                    event = events[name][size]
                    count = len(event["Records"])
                    context = contexts[name]()
                    clear()
                    gc.collect()
                    wall_started = time.perf_counter()
                    emulator_before = emulator.seconds
                    started = time.process_time()
                    handlers[name](event, context)
                    spent = time.process_time() - started
                    in_emulator = emulator.seconds - emulator_before
                    wall[name] += time.perf_counter() - wall_started
                    cpu_total += spent
                    emulator_total += in_emulator
                    samples[name].setdefault(size, []).append(
                        max(0.0, spent - in_emulator) / count * 1e6)
                turn += 1
        clear()
    return CpuResult(
        us_per_record={n: {s: statistics.median(v) for s, v in by.items()}
                       for n, by in samples.items()},
        samples=samples,
        batch_records={n: {s: len(events[n][s]["Records"]) for s in settings.sizes}
                       for n in names},
        emulator_share=emulator_total / cpu_total if cpu_total else 0.0,
    )


def _busiest(
    sources: Sequence[EventSource], streams: Mapping[str, Mapping[str, list[fns.StoredRecord]]]
) -> str:
    """The source stream with the most records (a processor reading two streams is timed on the
    one that carries its main load)."""
    names = [s.stream for s in sources]
    return max(names, key=lambda n: sum(len(r) for r in streams.get(n, {}).values()))


def _longest_shard(shards: Mapping[str, list[fns.StoredRecord]]) -> list[fns.StoredRecord]:
    return max(shards.values(), key=len, default=[])


def _table_clearer() -> Callable[[], None]:
    """Empties every table of the emulator in place (microseconds; no request is made)."""
    from moto.dynamodb.models import dynamodb_backends

    from cascata.pipeline import LOCAL_ACCOUNT, LOCAL_REGION

    backend = dynamodb_backends[LOCAL_ACCOUNT][LOCAL_REGION]

    def clear() -> None:
        for table in backend.tables.values():
            table.items.clear()

    return clear
