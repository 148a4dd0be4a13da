"""The cascata command line: `python -m cascata demo|produce|invoke ...`.

Every command prints a readable summary (or one JSON object with `--json`) on stdout and its
progress on stderr. Any bad argument or unreachable endpoint ends in a one-line `error:` on
stderr and exit status 2, never a traceback.

`--pipeline`, `--profile` and `--region` are global: given before or after the command's name,
they apply to every command (`cascata.aws_env` says how the profile and region are resolved).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cascata.aws_env import AwsSettingsError, use_settings
from cascata.console import CliError, err, out, print_json, progress
from cascata.project import ProjectError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="cascata: serverless stream processing on AWS, and its local runtime.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help="An AWS-compatible endpoint to use instead of the embedded emulator "
        "(an endpoint the AWS configuration gives is honoured too: AWS_ENDPOINT_URL, "
        "AWS_ENDPOINT_URL_<SERVICE>, the profile's endpoint_url).",
    ),
]
ProduceEndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help="An AWS-compatible endpoint, such as a running `cascata up` [default: the one "
        "the AWS configuration gives (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, the "
        "profile's endpoint_url), else AWS].",
    ),
]
StageOpt = Annotated[
    str,
    typer.Option("--stage", help="Stage whose resource names to use.", envvar="CASCATA_STAGE"),
]
MAX_EVENTS = 1_000_000


@app.callback()
def _project(
    pipeline: Annotated[str | None, typer.Option(
        "--pipeline", metavar="MODULE:ATTR|DIR",
        help="The pipeline to work on, instead of pyproject.toml's [tool.cascata] pipeline: "
        "module:attr, or another project's directory (CASCATA_PIPELINE is honoured too).")]
    = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", metavar="NAME",
        help="The AWS profile (credentials, region, endpoint_url) [default: AWS_PROFILE, "
        "else the default profile].")] = None,
    region: Annotated[str | None, typer.Option(
        "--region", metavar="REGION",
        help="The AWS region, for AWS and for the local runtime alike [default: AWS_REGION, "
        "AWS_DEFAULT_REGION, the profile's region; locally, else us-east-1].")] = None,
) -> None:
    """cascata: serverless stream processing on AWS, and its local runtime."""
    from cascata.project import add_code_path, find_project, use_pipeline

    use_pipeline(pipeline)
    use_settings(profile=profile, region=region)
    add_code_path(find_project())


@app.command()
def produce(
    file: Annotated[Path | None, typer.Option("--file", help="A JSON Lines file of events.")]
    = None,
    events: Annotated[int | None, typer.Option(
        min=1, max=MAX_EVENTS, help="Generate this many sample events instead (the project's "
        "[tool.cascata] workload).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the sample events.")] = 7,
    stream: Annotated[str | None, typer.Option(
        help="Declared stream to write to [default: the workload's stream, or the only "
        "origin stream].")] = None,
    stage: StageOpt = "local",
    endpoint_url: ProduceEndpointOpt = None,
    broker: Annotated[str, typer.Option(
        help="kinesis, or msk: write the stream's Kafka topic at --bootstrap-servers.")]
    = "kinesis",
    bootstrap_servers: Annotated[str | None, typer.Option(
        "--bootstrap-servers", help="host:port[,host:port...] of the Kafka brokers "
        "(--broker msk).")] = None,
    kafka_auth: Annotated[str, typer.Option(
        help="iam (MSK: TLS and IAM, signed with the AWS configuration) or none (a plaintext "
        "broker, such as a local one).")] = "iam",
    as_json: JsonOpt = False,
) -> None:
    """Send events to a stream (or its Kafka topic), from a JSON Lines file or the project's
    sample workload."""
    from cascata.local.emulator import EndpointError, external, find_pipeline
    from cascata.pipeline import ResourceKind
    from cascata.producer import InputFileError, Outgoing, read_jsonl
    from cascata.producer import produce as send
    from cascata.project import current_pipeline, find_project, load_hook

    if (file is None) == (events is None):
        raise CliError("give exactly one of --file FILE or --events N")
    project = find_project()
    pipeline = current_pipeline()
    sample = load_hook(project.workload, project=project, what="workload") \
        if project.workload else None
    batch: list[Outgoing] = []
    sample_stream: str | None = None
    if file is not None:
        try:
            batch = read_jsonl(file)
        except InputFileError as exc:
            raise CliError(str(exc)) from None
    else:
        if sample is None:
            raise CliError("--events needs a sample workload: set [tool.cascata] workload = "
                           "'module:function' in pyproject.toml, or use --file")
        assert events is not None
        sample_stream, records = sample(events, seed)
        batch = [Outgoing(key, data) for key, data in records]
    if stream is None:
        if sample is not None and sample_stream is None:
            sample_stream, _ = sample(0, seed)  # an empty sample names its stream
        origins = [s.name for s in pipeline.streams if s.origin]
        stream = sample_stream or (origins[0] if len(origins) == 1 else None)
        if stream is None:
            raise CliError(f"give --stream: the pipeline has {len(origins)} origin streams "
                           f"({', '.join(origins)})")
    declared = {s.name for s in pipeline.streams}
    if stream not in declared or pipeline.resource(stream).kind is not ResourceKind.STREAM:
        raise CliError(f"unknown stream {stream!r}; declared: {', '.join(sorted(declared))}")
    if broker == "msk":
        _produce_to_kafka(pipeline.physical_name(stream, stage=stage), batch,
                          bootstrap_servers=bootstrap_servers, auth=kafka_auth,
                          as_json=as_json)
        return
    if broker != "kinesis":
        raise CliError(f"--broker must be kinesis or msk, not {broker!r}")
    if bootstrap_servers is not None:
        raise CliError("--bootstrap-servers goes with --broker msk")
    try:
        aws = external(endpoint_url)
        aws.check_reachable()
        aws = find_pipeline(aws, pipeline, stage=stage)
    except EndpointError as exc:
        raise CliError(str(exc)) from None
    name = pipeline.physical_name(stream, stage=stage, account=aws.account, region=aws.region)
    with progress(not as_json) as bar:
        task = bar.add_task(f"produce → {stream}", total=len(batch))
        try:
            report = send(aws.client("kinesis"), name, batch,
                          on_progress=lambda n: bar.advance(task, n))
        except Exception as exc:  # noqa: BLE001 - one line for the user
            raise CliError(f"cannot write to {name}: {_aws_error(exc)}") from None
    if as_json:
        print_json(report.to_json())
    else:
        out.print(
            f"sent [bold]{report.sent}[/] events to {name} in {report.duration_s:.1f} s "
            f"({report.events_per_second:,.0f}/s, {report.requests} PutRecords requests); "
            f"failed: {report.failed}"
        )
        for failure in report.failures[:5]:
            out.print(f"  {failure}")
    if report.failed:
        raise typer.Exit(1)


def _produce_to_kafka(topic: str, batch: list[Any], *, bootstrap_servers: str | None,
                      auth: str, as_json: bool) -> None:
    """`produce --broker msk`: the events to `topic` with the functions' Kafka sink
    (idempotent producer, acks=all, keys kept)."""
    from cascata.aws_env import resolve
    from cascata.producer import produce as send
    from cascata_runtime.kafka_sink import KafkaSink, producer_config

    if not bootstrap_servers:
        raise CliError("--broker msk needs --bootstrap-servers host:port[,host:port...]")
    servers = [s.strip() for s in bootstrap_servers.split(",")]
    if len(bootstrap_servers) > 4096 or not all(
            s.rpartition(":")[0] and s.rpartition(":")[2].isdigit() for s in servers):
        raise CliError(f"--bootstrap-servers must be host:port[,host:port...], got "
                       f"{bootstrap_servers[:200]!r}")
    if auth not in ("iam", "none"):
        raise CliError(f"--kafka-auth must be iam or none, not {auth!r}")
    region = resolve(default_region=None).region if auth == "iam" else ""
    from confluent_kafka import KafkaException, Producer

    config = producer_config(",".join(servers), region=region, iam=auth == "iam")
    # The client's own log lines (one per failed connection attempt) would flood the
    # terminal; this command reports what went wrong itself, in one line.
    config["log_level"] = 0
    try:
        producer = Producer(config)
    except KafkaException as exc:
        raise CliError(f"cannot make a Kafka producer: {exc}") from None
    try:  # reach the brokers and find the topic before sending anything
        metadata = producer.list_topics(topic, timeout=10)
    except KafkaException as exc:
        raise CliError(f"cannot reach the Kafka brokers at {','.join(servers)}: "
                       f"{exc.args[0].str() if exc.args else exc}") from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        why = found.error.str() if found is not None and found.error is not None else "absent"
        raise CliError(f"no topic {topic} at {','.join(servers)} ({why}): create it first")
    with progress(not as_json) as bar:
        task = bar.add_task(f"produce → {topic}", total=len(batch))
        report = send(None, topic, batch, sink=KafkaSink(producer, timeout_s=30.0),
                      on_progress=lambda n: bar.advance(task, n))
    if as_json:
        print_json({**report.to_json(), "broker": "msk", "topic": topic})
    else:
        out.print(f"sent [bold]{report.sent}[/] events to topic {topic} in "
                  f"{report.duration_s:.1f} s ({report.events_per_second:,.0f}/s); failed: "
                  f"{report.failed}")
        for failure in report.failures[:5]:
            out.print(f"  {failure}")
    if report.failed:
        raise typer.Exit(1)


@app.command()
def invoke(
    function: Annotated[str, typer.Argument(help="A declared function, e.g. validate.")],
    event: Annotated[Path, typer.Option("--event", help="A Lambda event as JSON (Kinesis, "
                                        "Kafka or API Gateway shape).")],
    stage: StageOpt = "local",
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one declared function once on an event file and show its response and effects."""
    from cascata.local.invoke import invoke_once, render_invocation

    result = invoke_once(function, event, stage=stage, endpoint_url=endpoint_arg(endpoint_url))
    if as_json:
        print_json(result)
    else:
        render_invocation(function, result)


@app.command()
def up(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the AWS endpoint "
                                      "(127.0.0.1).")] = 4566,
    api_port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the HTTP APIs "
                                          "(0: any free port).")] = 0,
    stage: StageOpt = "local",
    tick: Annotated[float | None, typer.Option(min=0.1, max=3600, help="Run scheduled "
                                               "functions every TICK seconds.")] = None,
    console_port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the web "
                                              "console (0: any free port).")] = 0,
    no_console: Annotated[bool, typer.Option("--no-console", help="Serve no web "
                                             "console.")] = False,
    broker: Annotated[str, typer.Option(
        help="kinesis (the emulator's streams), or msk: every stream a topic on a Kafka "
        "protocol broker on loopback, at the address printed.")] = "kinesis",
    as_json: JsonOpt = False,
) -> None:
    """Run the whole pipeline locally until interrupted: AWS endpoint, processors, APIs and
    the web console."""
    from cascata.local.serve import UpOptions, print_endpoints
    from cascata.local.serve import up as run_up

    if api_port and api_port == port:
        raise CliError("--api-port must differ from --port")
    if console_port and console_port in (port, api_port):
        raise CliError("--console-port must differ from --port and --api-port")
    if broker not in ("kinesis", "msk"):
        raise CliError(f"--broker must be kinesis or msk, not {broker!r}")

    def ready(endpoints: dict[str, Any]) -> None:
        if as_json:
            print_json(endpoints)
            sys.stdout.flush()
        else:
            print_endpoints(endpoints)

    run_up(UpOptions(port=port, api_port=api_port, stage=stage, tick_s=tick,
                     console_port=None if no_console else console_port, broker=broker),
           ready=ready)
    if not as_json:
        err.print("stopped")


@app.command()
def status(
    stage: StageOpt = "local",
    endpoint_url: Annotated[str | None, typer.Option(
        "--endpoint-url", help="The endpoint of a running `cascata up` [default: the one the "
        "AWS configuration gives (AWS_ENDPOINT_URL...), else http://127.0.0.1:4566].")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Each processor's backlog and each view's size, from a running `cascata up`."""
    from cascata.local.serve import render_status
    from cascata.local.serve import status as read_status

    report = read_status(endpoint_url, stage=stage)
    if as_json:
        print_json(report)
    else:
        render_status(report)


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="The project's name: a-z, 0-9 and '-', it "
                                        "prefixes every AWS resource name.")],
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Where to write the project [default: ./NAME].")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new pipeline project: declaration, handler, domain, tests, CDK app, Makefile."""
    from cascata.scaffold import ScaffoldError, create

    try:
        created = create(name, directory)
    except ScaffoldError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write the project: {exc}") from None
    if as_json:
        print_json(created.to_json())
        return
    out.print(f"created [bold]{name}[/] in {created.directory} ({len(created.files)} files)")
    out.print(f"  cd {created.directory}")
    out.print("  make test     # the domain's tests and the pipeline end to end, offline")
    out.print("  make demo     # the pipeline locally (cascata up)")
    out.print("  make synth    # the CloudFormation template, offline (cdk.out/)")


def _register_extra_commands() -> None:
    from cascata.cli_extra import register
    from cascata.cli_versions import register as register_versions

    register(app)
    register_versions(app)


_register_extra_commands()


def endpoint_arg(flag: str | None) -> str | None:
    """The endpoint of a command that otherwise runs on the embedded emulator (invoke, demo):
    --endpoint-url, else the one the AWS configuration gives Kinesis (botocore resolves it:
    AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, the profile's endpoint_url), else None."""
    from cascata.local.emulator import configured_endpoint

    return flag or configured_endpoint("kinesis")


def _aws_error(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    if error:
        return f"{error.get('Code')}: {error.get('Message')}"
    return f"{type(exc).__name__}: {exc}"


_REGISTERED: set[str] = set()
GLOBAL_OPTIONS = ("--pipeline", "--profile", "--region")
"""The root's options, each taking a value: accepted after the command's name too."""


def global_options_first(argv: list[str]) -> list[str]:
    """`argv` with the global options moved before the command's name, where the root
    command reads them: `cascata produce --region eu-west-1` as `cascata --region eu-west-1
    produce`, as the AWS CLI accepts its global options anywhere. Nothing after `--` moves."""
    first: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            rest.extend(argv[index:])
            break
        name = arg.partition("=")[0]
        if name in GLOBAL_OPTIONS:
            takes_next = "=" not in arg and index + 1 < len(argv)
            first.extend(argv[index:index + 2] if takes_next else [arg])
            index += 2 if takes_next else 1
            continue
        rest.append(arg)
        index += 1
    return first + rest


def _project_commands(argv: list[str]) -> None:
    """Add the project's own commands (`[tool.cascata] commands`), once per process: the
    project `--pipeline DIR` names, if it does, else the one around the working directory."""
    from cascata.project import find_project, load_hook, use_pipeline

    chosen: str | None = None
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--pipeline" and index + 1 < len(argv):
            chosen = argv[index + 1]
        elif arg.startswith("--pipeline="):
            chosen = arg.partition("=")[2]
        elif not arg.startswith("-"):
            break  # the command: what follows is its own arguments
        index += 2 if arg in GLOBAL_OPTIONS else 1
    use_pipeline(chosen)
    project = find_project()
    if project.commands and project.commands not in _REGISTERED:
        register = load_hook(project.commands, project=project, what="commands")
        register(app)
        _REGISTERED.add(project.commands)
    for command in app.registered_commands:
        command.epilog = command.epilog or GLOBAL_OPTIONS_HELP


GLOBAL_OPTIONS_HELP = (
    "Global options, before or after the command: --profile NAME, --region REGION, "
    "--pipeline MODULE:ATTR|DIR (see `cascata --help`)."
)
"""Every command's help ends with this: the global options are the callback's, and a
command's own --help would not list them."""


def main(argv: list[str] | None = None) -> int:
    from cascata.local.kafka_broker import BrokerUnavailableError

    # No arguments: the help, as `cascata --help` prints it.
    args = global_options_first(list(sys.argv[1:] if argv is None else argv)) or ["--help"]
    try:
        _project_commands(args)
        # Not standalone, typer returns a command's `typer.Exit` code instead of raising it.
        code = app(args=args, prog_name="cascata", standalone_mode=False)
    except (CliError, ProjectError, AwsSettingsError, BrokerUnavailableError) as exc:
        err.print(f"error: {exc}", markup=False)
        return 2
    except typer.TyperException as exc:
        # A usage error (typer's own rendering is a multi-line panel): one line, naming the
        # command when typer says which.
        ctx = getattr(exc, "ctx", None)
        where = f" ({ctx.command_path})" if ctx is not None else ""
        err.print(f"error{where}: {exc.format_message()}", markup=False)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("error: interrupted", markup=False)
        return 130
    except KeyboardInterrupt:
        err.print("error: interrupted", markup=False)
        return 130
    finally:
        # The profile and region were this command's: a next `main` in the process starts
        # from the environment again.
        use_settings(profile=None, region=None)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
