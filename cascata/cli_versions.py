"""`replay`, `versions`, `diff`, `promote` and `retire`: reprocessing into versions of the views.

They work on a running pipeline: by default the local one `cascata up` serves at
http://127.0.0.1:4566 (or where the AWS configuration's endpoint, such as AWS_ENDPOINT_URL,
says), or any endpoint with `--endpoint-url`; `--aws` uses AWS itself (the profile's
credentials, region and any endpoint it configures) for what makes sense there (versions,
diff, promote, retire; a replay on AWS is a version stack, see docs/deploy.md). Same
conventions as `cascata.cli`: a readable summary on stdout (one JSON object with `--json`),
progress on stderr, and every bad argument a one-line `error:` with exit status 2.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cascata.console import CliError, out, print_json, progress
from cascata.local.emulator import UP_ENDPOINT, Aws, EndpointError, external, find_pipeline
from cascata.pipeline import Pipeline

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
StageOpt = Annotated[
    str,
    typer.Option("--stage", help="Stage whose resource names to use.", envvar="CASCATA_STAGE"),
]
EndpointOpt = Annotated[
    str | None,
    typer.Option("--endpoint-url", help="The pipeline's AWS endpoint [default: the one the "
                 "AWS configuration gives (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, the "
                 "profile's endpoint_url), else the local `cascata up` at "
                 "http://127.0.0.1:4566]."),
]
AwsOpt = Annotated[bool, typer.Option("--aws", help="Use AWS itself (the profile's "
                                      "credentials and region) instead of an endpoint.")]
LOCAL_UP = UP_ENDPOINT


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(versions)
    app.command()(diff)
    app.command()(promote)
    app.command()(retire)


def connect(endpoint_url: str | None, use_aws: bool, *, stage: str = "local") -> Aws:
    """The pipeline's endpoint: `--endpoint-url`, else the AWS configuration's, else the local
    `cascata up` (in the region it runs in when nothing names one, `find_pipeline`); with
    `--aws`, AWS itself as the profile has it (credentials, region, any endpoint it gives)."""
    from cascata.project import current_pipeline

    if use_aws and endpoint_url:
        raise CliError("give --aws or --endpoint-url, not both")
    try:
        if use_aws:
            aws = external(None, default_region=None)
            aws.account = _account(aws)
            return aws
        aws = external(endpoint_url, default_endpoint=UP_ENDPOINT)
        aws.check_reachable()
        return find_pipeline(aws, current_pipeline(), stage=stage)
    except EndpointError as exc:
        raise CliError(f"{exc} (is `cascata up` running?)") from None


def require_kinesis(aws: Aws, command: str, *, stage: str) -> None:
    """Refuse, in one line, to run `command` (which reads the archive) on a local pipeline
    whose streams are Kafka topics (`up --broker msk`), where nothing is archived: it would
    report an empty result as if it were one."""
    from cascata.local.serve import local_kafka
    from cascata.project import current_pipeline

    if local_kafka(aws, current_pipeline(), stage=stage) is not None:
        raise CliError(f"the pipeline at {aws.where()} runs on Kafka (`up --broker msk`), "
                       f"where {command} does not run locally "
                       "(it reads the archive, which Firehose fills from Kinesis); replay "
                       "--from stream, versions, diff and promote do")


def _account(aws: Aws) -> str:
    try:
        return str(aws.client("sts").get_caller_identity()["Account"])
    except Exception as exc:  # noqa: BLE001 - one line for the user
        raise CliError(f"no AWS credentials usable: {type(exc).__name__}: {exc}") from None


def parse_settings(values: list[str], pipeline: Pipeline | None = None
                   ) -> dict[str, dict[str, str]]:
    """`--set PROCESSOR.NAME=VALUE` (repeatable) -> each processor's environment overrides,
    checked now by the processor's declared tunables (`Processor.tunables`) rather than inside
    a replay. A value is JSON where it parses as JSON, else the text itself."""
    from cascata.project import ProjectError, current_pipeline, load_hook

    pipeline = pipeline or current_pipeline()
    tunable = {p.name: p.tunables for p in pipeline.processors if p.tunables is not None}
    settable = ", ".join(f"{name}.<setting>" for name in tunable) or "nothing"
    wanted: dict[str, dict[str, Any]] = {}
    for value in values:
        name, sep, raw = value.partition("=")
        function, dot, setting = name.partition(".")
        if not sep or not dot or not setting:
            raise CliError(f"--set takes PROCESSOR.SETTING=VALUE, got {value!r}")
        if function not in tunable:
            raise CliError(f"--set: {function!r} has no settings a version may change; "
                           f"settable: {settable}")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        wanted.setdefault(function, {})[setting] = parsed
    overrides: dict[str, dict[str, str]] = {}
    for function, settings in wanted.items():
        declared = tunable[function]
        assert declared is not None
        try:
            check = load_hook(declared.check, what=f"{function}'s tunables")
            checked = check(settings)
        except ProjectError as exc:
            raise CliError(str(exc)) from None
        except ValueError as exc:
            raise CliError(f"--set {function}: {exc}") from None
        if checked:
            overrides[function] = {declared.variable: json.dumps(checked, sort_keys=True)}
    return overrides


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
        "fraud-detect.new_payee_threshold_minor=100000 (repeatable; what a processor's "
        "declared tunables allow).")] = None,
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
        version=version_arg(to_version), replay_from=source,  # type: ignore[arg-type]
        since=parse_time_option(since, "--since"), until=parse_time_option(until, "--until"),
        config=parse_settings(settings) if settings else None,
        max_records=max_records, timeout_s=timeout, stage=stage,
    )
    aws = connect(endpoint_url, False, stage=stage)
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

    registry = registry_for(connect(endpoint_url, use_aws, stage=stage), stage)
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

    a, b = version_arg(a), version_arg(b)
    aws = connect(endpoint_url, use_aws, stage=stage)
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

    aws = connect(endpoint_url, use_aws, stage=stage)
    registry = registry_for(aws, stage)
    previous, live = registry.promote(version_arg(version), deployed=lambda v: views_exist(
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

    aws = connect(endpoint_url, use_aws, stage=stage)
    registry = registry_for(aws, stage)
    deleted = retire_version(aws, registry, version_arg(version), stage=stage)
    if as_json:
        print_json({"version": version, "deleted": deleted})
    else:
        out.print(f"retired {version}: deleted {len(deleted)} tables and streams")


def epoch_ms_arg(value: str | None) -> int | None:
    """An RFC 3339 time recorded by a replay, as epoch milliseconds (None stays None)."""
    from cascata.replay import parse_time_option
    from cascata_runtime.republish import epoch_ms

    parsed = parse_time_option(value, "the recorded time")
    return None if parsed is None else epoch_ms(parsed)


def version_arg(value: str) -> str:
    """A version name from the command line, or a one-line error."""

    from cascata.pipeline import check_version

    try:
        return check_version(value)
    except ValueError as exc:
        raise CliError(str(exc)) from None
