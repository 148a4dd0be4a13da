"""Runs every measurement of `cascata bench` in one process, in a fixed order, and reports.

Order: cold starts first (fresh interpreters on a machine doing nothing else), then usage, CPU
time, and the local runtime last (it starts threads and an HTTP server). The CPU phase shows no
live progress bar: a refresh thread would spend CPU inside the measured intervals.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cascata.console import err, progress
from cascata.pipeline import Pipeline
from payments.pipeline import PIPELINE
from payments.tooling.bench import coldstart, cpu, local, report, usage
from payments.tooling.bench import functions as fns
from payments.tooling.workload import Generated, WorkloadSpec, generate, generate_customers

ACCOUNTS = 2000
"""Accounts in the usage workload. Key repetition inside a batch is what lets cascata coalesce
writes; it is fixed (not derived from the event count) so figures do not drift with the size
of the run, and a second, smaller run with accounts drawn from a million shows the other end."""
CUSTOMER_EVENTS_PER_PAYMENT = 0.1
"""Customer events (registrations, updates) sent to the customers stream alongside the
payments: one for every ten payments."""


def workload(spec: WorkloadSpec) -> list[Generated]:
    """The payments of `spec` and, on the customers stream, a tenth as many customer events."""
    payments = list(generate(spec))
    wanted = round(len(payments) * CUSTOMER_EVENTS_PER_PAYMENT)
    # The first n accounts of a smaller spec are the first n of this one (same draws), so the
    # customer events are about accounts that pay, without generating one per account.
    accounts = max(10, 2 * wanted)
    if spec.accounts is not None:
        accounts = max(2, min(spec.accounts, accounts))
    return payments + generate_customers(replace(spec, accounts=accounts))[:wanted]


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
    hot_share: float = 0.3
    """The hot-key run: this share of the payments goes to `hot_merchants` merchants (0 skips
    it); the main run is the workload's default mix."""
    hot_merchants: int = 3
    rate: float = 100.0
    """Events per second the fixed monthly costs are spread over (estimated figures)."""

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
        out.extend(WorkloadSpec(events=self.usage_events, hot_share=self.hot_share,
                                hot_merchants=self.hot_merchants).problems())
        if not 0.01 <= self.rate <= 1_000_000:
            out.append(f"--rate must be from 0.01 to 1,000,000 events/s, got {self.rate}")
        return out


def run_bench(options: Options, pipeline: Pipeline | None = None) -> dict[str, Any]:
    pipeline = pipeline or PIPELINE
    started = time.perf_counter()
    found = fns.available(pipeline)
    runnable = found.pipeline
    skipped = dict(found.skipped)
    for name, why in found.skipped.items():
        err.print(f"skipping {name}: {why}", markup=False)
    if "payments-raw" not in {s.name for s in runnable.streams}:
        raise ValueError("the declaration has no payments-raw stream to feed")
    baseline = fns.baseline_pipeline()

    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 1)
        clock = now

    spec = WorkloadSpec(events=options.usage_events, seed=options.seed, accounts=ACCOUNTS)
    with progress() as bar:
        task = bar.add_task("cold starts", total=options.cold_runs)
        cold = coldstart.measure({"cascata": runnable, "baseline": baseline},
                                 runs=options.cold_runs, on_run=lambda _: bar.advance(task))
        lap("cold_start")
        steps = [*runnable.processors, *runnable.scheduled, *baseline.processors,
                 *baseline.scheduled]
        task = bar.add_task("usage (metered)", total=len(steps))
        measured = usage.measure(runnable, workload(spec), baseline=baseline,
                                 on_step=lambda _: bar.advance(task))
        lap("usage")
        failed = {**measured.sides["baseline"].failed}
        if failed:
            raise RuntimeError(f"the baseline failed: {failed}")
        if measured.failed:
            for name, why in measured.failed.items():
                err.print(f"leaving out {name}: {why}", markup=False)
            skipped = {**skipped, **measured.failed}
            runnable = fns.without(runnable, measured.failed)
        hot = None
        if options.hot_share:
            task = bar.add_task("usage, hot keys", total=len(steps))
            hot_spec = replace(spec, hot_share=options.hot_share,
                               hot_merchants=options.hot_merchants)
            hot = usage.measure(runnable, workload(hot_spec), baseline=baseline,
                                on_step=lambda _: bar.advance(task))
            lap("usage_hot_keys")
        unique = None
        if options.unique_key_events:
            task = bar.add_task("usage, distinct keys", total=len(steps))
            unique = usage.measure(
                runnable, workload(WorkloadSpec(events=options.unique_key_events,
                                                seed=options.seed + 1, accounts=1_000_000)),
                baseline=baseline, on_step=lambda _: bar.advance(task))
            lap("usage_distinct_keys")

    settings = cpu.Settings(sizes=options.cpu_sizes, rounds=dict(options.cpu_rounds),
                            budget_s=options.cpu_budget_s)
    err.print("handler CPU time: functions take turns, no progress bar while measuring",
              markup=False)
    cpu_result = cpu.measure(
        {"cascata": (runnable, measured.sides["cascata"].streams),
         "baseline": (baseline, measured.sides["baseline"].streams)}, settings,
        on_round=lambda size, what: err.print(f"  batches of {size:,}: {what}", markup=False))
    lap("cpu")

    local_result = None
    if options.local:
        with progress() as bar:
            task = bar.add_task("ceiling + demo", total=1)
            local_result = local.measure(
                runnable, WorkloadSpec(events=options.demo_events, seed=options.seed),
                timeout_s=options.demo_timeout_s)
            bar.advance(task)
        lap("local")

    return report.build(
        skipped=skipped, usage=measured, hot=hot, unique=unique,
        cpu=cpu_result, cold=cold, local=local_result,
        settings={**{k: v for k, v in asdict(options).items() if k != "cpu_rounds"},
                  "cpu_rounds": {str(k): v for k, v in options.cpu_rounds.items()},
                  "usage_accounts": ACCOUNTS,
                  "customer_events_per_payment": CUSTOMER_EVENTS_PER_PAYMENT},
        duration_s=time.perf_counter() - started,
        rate=options.rate,
        hot_spec={"hot_share": options.hot_share, "hot_merchants": options.hot_merchants},
        phases=phases,
    )


def save(result: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
