"""The `plan` command, registered on the main CLI by `register(app)`.

Same conventions as `cascata.cli`: a readable summary on stdout (one JSON object with
`--json`), progress on stderr, and every bad argument a one-line `error:` with exit status 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cascata.console import CliError, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def register(app: typer.Typer) -> None:

    app.command()(plan)


def plan(
    rate: Annotated[float, typer.Option("--rate", help="Events per second into the origin "
                                        "streams (each at its declared share_of_rate).")],
    record_bytes: Annotated[int, typer.Option("--record-bytes",
                                              help="Bytes per origin event (data + key).")],
    keys: Annotated[int | None, typer.Option(help="Distinct keys [default: 1,000,000].")]
    = None,
    hot_key_share: Annotated[float | None, typer.Option(
        help="Share of events involving the busiest key [default: 0.01].")] = None,
    broker: Annotated[str | None, typer.Option(
        help="Also cost the pipeline term by term on kinesis, msk-serverless, "
             "msk-provisioned or all, with the floor at zero traffic and where they cross.")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Shards, Lambda concurrency, DynamoDB capacity and monthly cost of the declared pipeline
    at a given rate, with every AWS limit it would hit (and with --broker, its cost on Kinesis
    and MSK)."""
    import dataclasses

    from cascata.plan import ASSUMPTIONS, BROKERS, PlanError, compare, render, render_comparison
    from cascata.plan import plan as make_plan

    brokers: tuple[str, ...] = ()
    if broker is not None:
        brokers = BROKERS if broker == "all" else (broker,)
        if not set(brokers) <= set(BROKERS):
            raise CliError(f"--broker must be one of {', '.join(BROKERS)} or all, "
                           f"got {broker!r}")

    changes: dict[str, float | int] = {}
    if keys is not None:
        if keys < 1:
            raise CliError(f"--keys must be a positive number of keys, got {keys}")
        changes["keys"] = keys
    if hot_key_share is not None:
        if not 0.0 <= hot_key_share <= 1.0:
            raise CliError(f"--hot-key-share must be from 0 to 1, got {hot_key_share:g}")
        changes["hot_key_share"] = hot_key_share
    assumptions = dataclasses.replace(ASSUMPTIONS, **changes)  # type: ignore[arg-type]
    try:
        result = make_plan(rate, record_bytes, assumptions=assumptions)
        comparison = compare(result, brokers) if brokers else None
    except PlanError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print_json({**result.to_json(),
                    **({"brokers": comparison.to_json()} if comparison else {})})
    else:
        render(result)
        if comparison:
            render_comparison(comparison)
