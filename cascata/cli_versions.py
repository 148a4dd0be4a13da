"""`replay`, `versions`, `diff`, `promote`, `retire` and `audit`: reprocessing and the batch audit.

They work on a running pipeline: by default the local one `cascata up` serves at
http://127.0.0.1:4566, or any endpoint with `--endpoint-url`; `--aws` uses AWS itself (the
default credential chain) for what makes sense there (versions, diff, promote, retire; a replay
on AWS is a version stack, see docs/deploy.md). Same conventions as `cascata.cli`: a readable
summary on stdout (one JSON object with `--json`), progress on stderr, and every bad argument a
one-line `error:` with exit status 2.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

from cascata.console import CliError, out, print_json, progress
from cascata.local.emulator import Aws, EndpointError, external

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
StageOpt = Annotated[
    str,
    typer.Option("--stage", help="Stage whose resource names to use.", envvar="CASCATA_STAGE"),
]
EndpointOpt = Annotated[
    str | None,
    typer.Option("--endpoint-url", help="The pipeline's AWS endpoint [default: the local "
                 "`cascata up` at http://127.0.0.1:4566; AWS_ENDPOINT_URL is honoured]."),
]
AwsOpt = Annotated[bool, typer.Option("--aws", help="Use AWS itself (default credential "
                                      "chain) instead of an endpoint.")]
LOCAL_UP = "http://127.0.0.1:4566"


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(versions)
    app.command()(diff)
    app.command()(promote)
    app.command()(retire)
    app.command()(audit)


def connect(endpoint_url: str | None, use_aws: bool) -> Aws:
    if use_aws and endpoint_url:
        raise CliError("give --aws or --endpoint-url, not both")
    try:
        if use_aws:
            return Aws(endpoint_url=None, region=os.environ.get("AWS_REGION")
                       or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                       account=_account())
        aws = external(endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or LOCAL_UP)
        aws.check_reachable()
    except EndpointError as exc:
        raise CliError(f"{exc} (is `cascata up` running?)") from None
    return aws


def _account() -> str:
    import boto3

    try:
        return str(boto3.client("sts").get_caller_identity()["Account"])
    except Exception as exc:  # noqa: BLE001 - one line for the user
        raise CliError(f"no AWS credentials usable: {type(exc).__name__}: {exc}") from None


def parse_settings(values: list[str]) -> dict[str, dict[str, str]]:
    """`--set fraud-detect.new_payee_threshold_minor=100000` -> each function's environment
    overrides (`FRAUD_RULES` for fraud-detect), checked now rather than inside a replay."""
    from payments.domain.fraud import rules_from_overrides, rules_overrides

    rules: dict[str, Any] = {}
    for value in values:
        name, sep, raw = value.partition("=")
        function, dot, setting = name.partition(".")
        if not sep or not dot or not setting:
            raise CliError(f"--set takes FUNCTION.SETTING=VALUE, got {value!r}")
        if function != "fraud-detect":
            raise CliError(f"--set: {function!r} has no settings a version may change; "
                           "settable: fraud-detect.<rule setting>")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        rules[setting] = parsed
    if not rules:
        return {}
    try:
        overrides = rules_overrides(rules_from_overrides(rules))
    except ValueError as exc:
        raise CliError(f"--set: {exc}") from None
    if not overrides:
        return {}
    return {"fraud-detect": {"FRAUD_RULES": json.dumps(overrides, sort_keys=True)}}


def replay(
    to_version: Annotated[str, typer.Option("--to-version", help="The version to build, "
                                            "e.g. v2 (run again to resume it).")],
    source: Annotated[str, typer.Option("--from", help="stream: the origin streams (within "
                                        "their retention); archive: the S3 archive.")]
    = "stream",
    since: Annotated[str | None, typer.Option(help="Replay records that arrived from this "
                                              "time (RFC 3339).")] = None,
    until: Annotated[str | None, typer.Option(help="...and before this time [default: when "
                                              "the replay starts].")] = None,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="A changed setting for this version, FUNCTION.SETTING=VALUE, e.g. "
        "fraud-detect.new_payee_threshold_minor=100000 (repeatable).")] = None,
    max_records: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many origin records; run again to continue.")] = None,
    timeout: Annotated[float, typer.Option(min=1, max=86_400, help="Seconds to wait for "
                                           "the processors to drain.")] = 900,
    stage: StageOpt = "local",
    endpoint_url: EndpointOpt = None,
    use_aws: AwsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the processors over history into a new version of every view (resumable)."""
    from cascata.replay import ReplayOptions, parse_time_option, run_replay

    if source not in ("stream", "archive"):
        raise CliError(f"--from must be stream or archive, got {source!r}")
    if use_aws:
        raise CliError("on AWS a replay is a version stack: `npx cdk deploy -c version=V "
                       "-c replayFrom=stream|archive` (docs/deploy.md)")
    options = ReplayOptions(
        version=_version(to_version), replay_from=source,  # type: ignore[arg-type]
        since=parse_time_option(since, "--since"), until=parse_time_option(until, "--until"),
        config=parse_settings(settings) if settings else None,
        max_records=max_records, timeout_s=timeout, stage=stage,
    )
    aws = connect(endpoint_url, False)
    with progress(not as_json) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(phase: str, count: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{phase} → {options.version}", total=None)
            if phase == "republish":
                bar.advance(tasks[phase], count)
            else:
                bar.update(tasks[phase], completed=count)

        result = run_replay(aws, options, on_progress=on_progress)
    if as_json:
        print_json(result.to_json())
        return
    verb = "resumed" if result.resumed else "replayed"
    out.print(f"{verb} [bold]{result.records_this_run:,}[/] origin records into "
              f"{result.version} from the {result.replay_from} in {result.duration_s:.1f} s "
              f"({result.records_total:,} in all; until {result.until})")
    if result.republished:
        out.print(f"republished {result.republished:,} archived records first")
    if result.complete:
        out.print(f"{result.version} is [bold]ready[/]: `cascata diff <live> "
                  f"{result.version}`, then `cascata promote {result.version}`")
    else:
        out.print(f"{result.version} is still building: run the same command to continue")


def versions(
    stage: StageOpt = "local",
    endpoint_url: EndpointOpt = None,
    use_aws: AwsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Every version of the views, its state and which one readers use."""
    from cascata.replay import registry_for
    from cascata.versions import DEPLOYED

    registry = registry_for(connect(endpoint_url, use_aws), stage)
    live = registry.live()
    rows = [{"version": "v1", "state": DEPLOYED, "live": live == "v1"}]
    rows += [r.summary(live) for r in registry.records()]
    if as_json:
        print_json({"live": live, "versions": rows})
        return
    for row in rows:
        marker = "*" if row["live"] else " "
        detail = ""
        if row.get("replay_from"):
            detail = (f"from {row['replay_from']}, {row['records']:,} records, until "
                      f"{row['until']}" + (f", settings {row['config']}" if row["config"]
                                           else ""))
        out.print(f"{marker} {row['version']:<8} {row['state']:<9} {detail}")
    out.print(f"live: [bold]{live}[/]")


def diff(
    a: Annotated[str, typer.Argument(help="A version, e.g. v1.")],
    b: Annotated[str, typer.Argument(help="Another version, e.g. v2.")],
    examples: Annotated[int, typer.Option(min=0, max=100_000, help="Differences shown per "
                                          "view.")] = 5,
    stage: StageOpt = "local",
    endpoint_url: EndpointOpt = None,
    use_aws: AwsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """How two versions of every view differ, row by row (bookkeeping attributes ignored)."""
    from cascata.versions import diff_versions

    a, b = _version(a), _version(b)
    aws = connect(endpoint_url, use_aws)
    with progress(not as_json) as bar:
        task = bar.add_task(f"diff {a} {b}", total=None)
        report = diff_versions(aws.client("dynamodb"), a, b, stage=stage, account=aws.account,
                               region=aws.region, examples=examples,
                               on_view=lambda v: bar.update(task, description=f"diff {v}"))
    exit_code = 1 if report.total_differences else 0
    if as_json:
        print_json(report.to_json())
        raise typer.Exit(exit_code)
    for view, counts in report.views.items():
        out.print(f"{view:<14} {counts['differences']:>6} different of "
                  f"{counts['rows_a']:,} / {counts['rows_b']:,} rows")
    for d in report.differences:
        key = ", ".join(f"{k}={v}" for k, v in d.key.items())
        if d.kind == "changed":
            out.print(f"  {d.view} [{key}] {', '.join(d.fields)}: {d.a} → {d.b}", markup=False)
        else:
            where = a if d.kind == "only_in_a" else b
            out.print(f"  {d.view} [{key}] only in {where}", markup=False)
    out.print(f"total differences: [bold]{report.total_differences}[/]")
    raise typer.Exit(exit_code)


def promote(
    version: Annotated[str, typer.Argument(help="The version readers switch to.")],
    stage: StageOpt = "local",
    endpoint_url: EndpointOpt = None,
    use_aws: AwsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Switch every reader to a version at once (one conditional write of the live pointer)."""
    from cascata.replay import registry_for
    from cascata.versions import views_exist

    aws = connect(endpoint_url, use_aws)
    registry = registry_for(aws, stage)
    previous, live = registry.promote(_version(version), deployed=lambda v: views_exist(
        aws.client("dynamodb"), v, stage=stage, account=aws.account, region=aws.region))
    if as_json:
        print_json({"previous": previous, "live": live, "changed": previous != live})
    elif previous == live:
        out.print(f"{live} is already live")
    else:
        out.print(f"readers now use [bold]{live}[/] (was {previous})")


def retire(
    version: Annotated[str, typer.Argument(help="A version that is not live.")],
    stage: StageOpt = "local",
    endpoint_url: EndpointOpt = None,
    use_aws: AwsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a version's tables and streams (never the live one)."""
    from cascata.replay import registry_for
    from cascata.versions import retire as retire_version

    aws = connect(endpoint_url, use_aws)
    registry = registry_for(aws, stage)
    deleted = retire_version(aws, registry, _version(version), stage=stage)
    if as_json:
        print_json({"version": version, "deleted": deleted})
    else:
        out.print(f"retired {version}: deleted {len(deleted)} tables and streams")


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
    from cascata.audit import run_audit
    from cascata.project import current_pipeline
    from cascata.replay import registry_for
    from cascata.versions import table_name
    from payments.domain.fraud import rules_from_json

    if use_aws:
        raise CliError("on AWS the audit runs on Athena over the archive's Glue tables "
                       "(docs/deploy.md); --aws is not supported by this command yet")
    aws = connect(endpoint_url, False)
    registry = registry_for(aws, stage)
    target = _version(version) if version else registry.live()
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
        arrived = (_epoch_ms(record.since), _epoch_ms(record.until))
    try:
        rules = rules_from_json(config.get("fraud-detect", {}).get("FRAUD_RULES", ""))
    except ValueError as exc:
        raise CliError(f"{target}'s recorded settings are invalid: {exc}") from None
    pipeline = current_pipeline()
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


def _epoch_ms(value: str | None) -> int | None:
    from cascata.replay import parse_time_option
    from cascata_runtime.republish import epoch_ms

    parsed = parse_time_option(value, "the recorded time")
    return None if parsed is None else epoch_ms(parsed)


def _version(value: str) -> str:
    from cascata.pipeline import check_version

    try:
        return check_version(value)
    except ValueError as exc:
        raise CliError(str(exc)) from None
