"""The `bench` and `plan` commands, registered on the main CLI by `register(app)`.

Same conventions as `cascata.cli`: a readable summary on stdout (one JSON object with
`--json`), progress on stderr, and every bad argument a one-line `error:` with exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cascata.console import CliError, err, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def register(app: typer.Typer) -> None:
    app.command()(bench)
    app.command()(plan)


def bench(
    events: Annotated[int, typer.Option("--events", help="Events of the metered usage run "
                                        "(enough for 1,000-record batches by default).")] = 1200,
    demo_events: Annotated[int, typer.Option(help="Events of the local end-to-end run.")] = 500,
    unique_key_events: Annotated[int, typer.Option(
        help="Events of the run with accounts drawn from a million (0 to skip).")] = 500,
    batch_sizes: Annotated[str, typer.Option(help="Handler CPU batch sizes, comma-separated.")]
    = "100,1000",
    rounds: Annotated[str, typer.Option(help="Timed rounds per batch size, comma-separated "
                                        "(one per size, or one for all).")] = "5,3",
    cold_runs: Annotated[int, typer.Option(help="Fresh interpreters per function.")] = 5,
    hot_share: Annotated[float, typer.Option(
        help="Hot-key run: share of payments to the hottest merchants (0 to skip).")] = 0.3,
    hot_merchants: Annotated[int, typer.Option(help="How many merchants are hot.")] = 3,
    rate: Annotated[float, typer.Option(
        help="Events per second the fixed monthly costs are spread over.")] = 100.0,
    local: Annotated[bool, typer.Option("--local/--no-local",
                                        help="Run the local end-to-end demo.")] = True,
    seed: Annotated[int, typer.Option(min=0)] = 7,
    output: Annotated[Path | None, typer.Option(
        help="Where to write the JSON result [default: bench-results/latest.json].")] = None,
    save: Annotated[bool, typer.Option("--save/--no-save", help="Write the JSON result.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Measure the whole pipeline's cost per event (write units, index writes, streams, archive,
    logs, storage), handler CPU and cold starts, side by side with the whole pipeline done the
    Powertools way, at the default key mix and with hot keys."""
    from cascata.bench import report
    from cascata.bench.functions import ROOT
    from cascata.bench.run import Options, run_bench
    from cascata.bench.run import save as save_result

    sizes = _ints(batch_sizes, "--batch-sizes")
    counts = _ints(rounds, "--rounds")
    if len(counts) == 1:
        counts = counts * len(sizes)
    if len(counts) != len(sizes):
        raise CliError(f"--rounds gives {len(counts)} counts for {len(sizes)} batch sizes")
    options = Options(usage_events=events, unique_key_events=unique_key_events,
                      demo_events=demo_events, seed=seed, cold_runs=cold_runs,
                      hot_share=hot_share, hot_merchants=hot_merchants, rate=rate, local=local,
                      cpu_sizes=tuple(sizes), cpu_rounds=dict(zip(sizes, counts, strict=True)))
    problems = options.problems()
    if problems:
        raise CliError(problems[0])
    try:
        result = run_bench(options)
    except (RuntimeError, ValueError, OSError) as exc:
        raise CliError(f"the bench failed: {exc}") from None
    if save:
        path = output or ROOT / "bench-results" / "latest.json"
        try:
            save_result(result, path)
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
        err.print(f"results written to {path}", markup=False)
    if as_json:
        print_json(result)
    else:
        report.render(result)


def plan(
    rate: Annotated[float, typer.Option("--rate", help="Events per second into payments-raw.")],
    record_bytes: Annotated[int, typer.Option("--record-bytes",
                                              help="Bytes per raw event (data + key).")],
    keys: Annotated[int | None, typer.Option(help="Distinct accounts [default: 1,000,000].")]
    = None,
    hot_key_share: Annotated[float | None, typer.Option(
        help="Share of payments involving the busiest account [default: 0.01].")] = None,
    invalid_share: Annotated[float | None, typer.Option(
        help="Share of raw events that are invalid [default: 0.01].")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Shards, Lambda concurrency, DynamoDB capacity and monthly cost of the declared pipeline
    at a given rate, with every AWS limit it would hit."""
    import dataclasses

    from cascata.plan import ASSUMPTIONS, PlanError, render
    from cascata.plan import plan as make_plan

    changes: dict[str, float | int] = {}
    if keys is not None:
        if keys < 1:
            raise CliError(f"--keys must be a positive number of accounts, got {keys}")
        changes["keys"] = keys
    for flag, value, name in (("--hot-key-share", hot_key_share, "hot_key_share"),
                              ("--invalid-share", invalid_share, "invalid_share")):
        if value is not None:
            if not 0.0 <= value <= 1.0:
                raise CliError(f"{flag} must be from 0 to 1, got {value:g}")
            changes[name] = value
    assumptions = dataclasses.replace(ASSUMPTIONS, **changes)  # type: ignore[arg-type]
    try:
        result = make_plan(rate, record_bytes, assumptions=assumptions)
    except PlanError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print_json(result.to_json())
    else:
        render(result)


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CliError(f"{flag} must be whole numbers separated by commas, got {text!r}") from None
    if not values:
        raise CliError(f"{flag} needs at least one number")
    return values
