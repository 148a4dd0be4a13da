"""Runs every measurement of `cascata bench` in one process, in a fixed order, and reports.

Order: cold starts first (fresh interpreters on a machine doing nothing else), then usage, CPU
time, and the local runtime last (it starts threads and an HTTP server). The CPU phase shows no
live progress bar: a refresh thread would spend CPU inside the measured intervals.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cascata.bench import coldstart, cpu, local, report, usage
from cascata.bench import functions as fns
from cascata.console import err, progress
from cascata.pipeline import PIPELINE, Pipeline
from cascata.workload import WorkloadSpec, generate

ACCOUNTS = 2000
"""Accounts in the usage workload. Key repetition inside a batch is what lets cascata coalesce
writes; it is fixed (not derived from the event count) so figures do not drift with the size
of the run, and a second, smaller run with accounts drawn from a million shows the other end."""


@dataclass(frozen=True)
class Options:
    usage_events: int = 1200
    """Enough for one 1,000-record batch of every processor reading payments-validated."""
    unique_key_events: int = 500
    demo_events: int = 500
    seed: int = 7
    cold_runs: int = 5
    cpu_sizes: tuple[int, ...] = (100, 1000)
    cpu_rounds: Mapping[int, int] = field(default_factory=lambda: {100: 5, 1000: 3})
    cpu_budget_s: float = 20.0
    local: bool = True
    demo_timeout_s: float = 600.0

    def problems(self) -> list[str]:
        out = []
        if not 20 <= self.usage_events <= 100_000:
            out.append(f"--events must be from 20 to 100,000, got {self.usage_events}")
        if not 0 <= self.unique_key_events <= 100_000:
            out.append(f"--unique-key-events must be from 0 to 100,000, "
                       f"got {self.unique_key_events}")
        if not 10 <= self.demo_events <= 100_000:
            out.append(f"--demo-events must be from 10 to 100,000, got {self.demo_events}")
        if not 1 <= self.cold_runs <= 50:
            out.append(f"--cold-runs must be from 1 to 50, got {self.cold_runs}")
        if not self.cpu_sizes or any(not 1 <= s <= 10_000 for s in self.cpu_sizes):
            out.append("--batch-sizes must be sizes from 1 to 10,000")
        if any(not 1 <= r <= 100 for r in self.cpu_rounds.values()):
            out.append("--rounds must be from 1 to 100")
        return out


def run_bench(options: Options, pipeline: Pipeline = PIPELINE) -> dict[str, Any]:
    started = time.perf_counter()
    found = fns.available(pipeline)
    runnable = found.pipeline
    skipped = dict(found.skipped)
    for name, why in found.skipped.items():
        err.print(f"skipping {name}: {why}", markup=False)
    if "payments-raw" not in {s.name for s in runnable.streams}:
        raise ValueError("the declaration has no payments-raw stream to feed")

    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 1)
        clock = now

    with progress() as bar:
        task = bar.add_task("cold starts", total=options.cold_runs)
        cold = coldstart.measure(runnable, runs=options.cold_runs,
                                 on_run=lambda _: bar.advance(task))
        lap("cold_start")
        steps = [p.name for p in runnable.processors] + [fns.BASELINE]
        task = bar.add_task("usage (metered)", total=len(steps))
        events = list(generate(WorkloadSpec(events=options.usage_events, seed=options.seed,
                                            accounts=ACCOUNTS)))
        measured = usage.measure(runnable, events, on_step=lambda _: bar.advance(task))
        lap("usage")
        if measured.failed:
            for name, why in measured.failed.items():
                err.print(f"leaving out {name}: {why}", markup=False)
            skipped = {**skipped, **measured.failed}
            runnable = fns.without(runnable, measured.failed)
        unique = None
        compared = report.scope(runnable)
        if options.unique_key_events and compared:
            task = bar.add_task("usage, distinct keys", total=1)
            distinct = list(generate(WorkloadSpec(events=options.unique_key_events,
                                                  seed=options.seed + 1, accounts=1_000_000)))
            scoped = fns.only(runnable, compared)
            unique = usage.measure(scoped, distinct, with_baseline=False)
            bar.advance(task)
            lap("usage_distinct_keys")

    settings = cpu.Settings(sizes=options.cpu_sizes, rounds=dict(options.cpu_rounds),
                            always=frozenset([*compared, fns.BASELINE]),
                            budget_s=options.cpu_budget_s)
    err.print("handler CPU time: functions take turns, no progress bar while measuring",
              markup=False)
    cpu_result = cpu.measure(
        runnable, measured.streams, settings,
        on_round=lambda size, what: err.print(f"  batches of {size:,}: {what}", markup=False))
    lap("cpu")

    local_result = None
    if options.local:
        with progress() as bar:
            task = bar.add_task("ceiling + demo", total=1)
            local_result = local.measure(
                runnable, WorkloadSpec(events=options.demo_events, seed=options.seed),
                timeout_s=options.demo_timeout_s,
                scoped=fns.only(runnable, compared) if compared else None)
            bar.advance(task)
        lap("local")

    return report.build(
        pipeline=runnable, skipped=skipped, usage=measured, unique=unique,
        cpu=cpu_result, cold=cold, local=local_result,
        settings={**{k: v for k, v in asdict(options).items() if k != "cpu_rounds"},
                  "cpu_rounds": {str(k): v for k, v in options.cpu_rounds.items()},
                  "usage_accounts": ACCOUNTS},
        duration_s=time.perf_counter() - started,
        phases=phases,
    )


def save(result: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
