"""The payments application's own commands: `demo` (the tour), `audit` and `bench`.

pyproject.toml's `[tool.cascata] commands = "payments.tooling.cli:register"` adds them to the
`cascata` command line beside the platform's generic ones; same conventions (a readable
summary, `--json`, progress on stderr, one-line errors with exit status 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cascata.cli import MAX_EVENTS, EndpointOpt, JsonOpt, StageOpt, endpoint_arg
from cascata.cli_versions import AwsOpt, connect, epoch_ms_arg, require_kinesis, version_arg
from cascata.console import CliError, err, out, print_json, progress


def register(app: typer.Typer) -> None:
    app.command()(demo)
    app.command()(audit)
    app.command()(bench)


def demo(
    events: Annotated[int, typer.Option(min=1, max=MAX_EVENTS, help="Events to generate.")] = 1500,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the workload and the faults.")] = 7,
    invalid_share: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.05,
    duplicate_share: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.02,
    chaos: Annotated[bool, typer.Option("--chaos", help="Inject faults at default rates.")] = False,
    crash_rate: Annotated[float | None, typer.Option(min=0.0, max=0.5)] = None,
    put_failure_rate: Annotated[float | None, typer.Option(min=0.0, max=0.5)] = None,
    throttle_rate: Annotated[float | None, typer.Option(min=0.0, max=0.5)] = None,
    duplicate_rate: Annotated[float | None, typer.Option(min=0.0, max=0.5)] = None,
    timeout: Annotated[float, typer.Option(min=1, max=3600, help="Seconds the pipeline may go "
                                           "without progress before the demo gives up.")] = 300,
    rate: Annotated[float | None, typer.Option(
        min=1, max=100_000, help="Offer the payments at this many a second (latency at a "
        "steady rate) instead of all at once.")] = None,
    broker: Annotated[str, typer.Option(
        help="kinesis (the emulator's streams), or msk: every stream a topic on a Kafka "
        "protocol broker on loopback.")] = "kinesis",
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Provision the pipeline, produce a generated workload, run every processor, check it."""
    from cascata.local.chaos import ChaosSettings
    from payments.tooling.demo import DemoOptions, render, run_demo
    from payments.tooling.workload import WorkloadSpec

    if broker not in ("kinesis", "msk"):
        raise CliError(f"--broker must be kinesis or msk, not {broker!r}")
    rates = {k: v for k, v in {"crash_rate": crash_rate, "put_failure_rate": put_failure_rate,
                               "throttle_rate": throttle_rate,
                               "duplicate_rate": duplicate_rate}.items() if v is not None}
    chaos_settings = None
    if chaos or rates:
        base = ChaosSettings(seed=seed) if chaos else ChaosSettings(
            seed=seed, crash_rate=0, put_failure_rate=0, throttle_rate=0, duplicate_rate=0)
        chaos_settings = ChaosSettings(**{**_fields(base), **rates})
    spec = WorkloadSpec(events=events, seed=seed, invalid_share=invalid_share,
                        duplicate_share=duplicate_share)
    result = run_demo(DemoOptions(workload=spec, chaos=chaos_settings, timeout_s=timeout,
                                  endpoint_url=endpoint_arg(endpoint_url), show_progress=True,
                                  rate=rate, broker=broker))
    if as_json:
        print_json(result.to_json())
    else:
        render(result)
    if not result.ok:
        raise typer.Exit(1)


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def audit(
    version: Annotated[str | None, typer.Option(help="The version to audit [default: the "
                                                "live one].")] = None,
    examples: Annotated[int | None, typer.Option(min=0, help="Differences listed (default: "
                                                 "all).")] = None,
    stage: StageOpt = "local",
    endpoint_url: EndpointOpt = None,
    use_aws: AwsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the views from the archive in one batch pass and reconcile them with a
    version's views, listing every difference."""
    from cascata.replay import registry_for
    from cascata.versions import table_name
    from payments.domain.fraud import rules_from_json
    from payments.pipeline import PIPELINE
    from payments.tooling.audit import run_audit

    if use_aws:
        raise CliError("on AWS the audit runs on Athena over the archive's Glue tables "
                       "(docs/deploy.md); --aws is not supported by this command yet")
    aws = connect(endpoint_url, False, stage=stage)
    require_kinesis(aws, "audit", stage=stage)
    registry = registry_for(aws, stage)
    target = version_arg(version) if version else registry.live()
    config: dict[str, dict[str, str]] = {}
    arrived: tuple[int | None, int | None] = (None, None)
    if target != "v1":
        record = registry.get(target)
        if record is None:
            raise CliError(f"{target} does not exist; `cascata versions` lists them")
        if record.state != "ready":
            raise CliError(f"{target} is {record.state}: only a complete version can be "
                           "audited")
        config = record.config
        arrived = (epoch_ms_arg(record.since), epoch_ms_arg(record.until))
    try:
        rules = rules_from_json(config.get("fraud-detect", {}).get("FRAUD_RULES", ""))
    except ValueError as exc:
        raise CliError(f"{target}'s recorded settings are invalid: {exc}") from None
    pipeline = PIPELINE
    tables = {t.name: table_name(pipeline, t.name, target, stage=stage, account=aws.account,
                                 region=aws.region) for t in pipeline.views}
    archive = pipeline.physical_name("archive", stage=stage, account=aws.account,
                                     region=aws.region)
    with progress(not as_json) as bar:
        task = bar.add_task(f"audit {target}", total=None)
        report = run_audit(s3=aws.client("s3"), dynamodb=aws.client("dynamodb"),
                           archive_bucket=archive, tables=tables, rules=rules, version=target,
                           on_progress=lambda step: bar.update(task, description=step),
                           limit_examples=examples, arrived=arrived)
    body = report.to_json()
    exit_code = 1 if body["total_differences"] else 0
    if as_json:
        print_json(body)
        raise typer.Exit(exit_code)
    archive_info = body.get("archive", {})
    out.print(f"audited {target} against {archive_info.get('events', 0):,} archived events "
              f"({archive_info.get('objects', 0):,} objects)")
    for view, counts in body["views"].items():
        out.print(f"{view:<14} {counts['differences']:>6} differences "
                  f"(batch {counts['batch_keys']:,} keys, view {counts['view_keys']:,})")
    for view, reason in body.get("not_compared", {}).items():
        out.print(f"{view:<14} not compared: {reason}")
    for d in body["differences"]:
        out.print(f"  {d['view']} {d['key']} {d['kind']} {d.get('field') or ''}: "
                  f"batch {d.get('batch')} / view {d.get('view_value', d.get('view'))}",
                  markup=False)
    out.print(f"total differences: [bold]{body['total_differences']}[/]")
    raise typer.Exit(exit_code)


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
    from payments.tooling.bench import report
    from payments.tooling.bench.functions import ROOT
    from payments.tooling.bench.run import Options, run_bench
    from payments.tooling.bench.run import save as save_result

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


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CliError(f"{flag} must be whole numbers separated by commas, got {text!r}") from None
    if not values:
        raise CliError(f"{flag} needs at least one number")
    return values
