"""`cascata up` and `cascata status`: the pipeline as a long-running local service.

`up` starts the embedded emulator on a chosen loopback port, provisions and runs every
processor, runs the scheduled functions on the clock, serves the HTTP APIs on loopback, and
keeps running until Ctrl-C or SIGTERM, then stops everything cleanly. Its resources live in the
region the command line and the environment name (`--region`, `AWS_REGION`, ...), as they would
on AWS. While it runs, it keeps
its mappings' checkpoints in the emulator, so `status` (any process, any AWS client) can report
each processor's backlog and each view's size.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from cascata.console import CliError, err, out
from cascata.local.emulator import (
    UP_ENDPOINT,
    Aws,
    EmbeddedAws,
    EndpointError,
    external,
    find_pipeline,
)
from cascata.local.objects import list_keys
from cascata.local.observe import build_status
from cascata.local.runtime import STATUS_KEY, LocalRuntime
from cascata.pipeline import Pipeline
from cascata.project import current_pipeline


@dataclass(frozen=True)
class UpOptions:
    port: int = 4566
    api_port: int = 0
    stage: str = "local"
    tick_s: float | None = None
    """Run scheduled functions this often instead of their declared period (demos, tests)."""
    region: str | None = None
    """The region of every resource [default: the one the command line and the environment
    name, `cascata.aws_env`]."""
    console_port: int | None = 0
    """The web console's port (0: any free port; None: no console)."""
    broker: str = "kinesis"
    """`msk`: the streams are topics on a Kafka protocol broker on loopback, which any Kafka
    client can reach at the address `up` prints."""


def up(options: UpOptions, *, pipeline: Pipeline | None = None,
       ready: Callable[[dict[str, Any]], None] | None = None,
       stop: threading.Event | None = None) -> None:
    pipeline = pipeline or current_pipeline()
    from cascata.local.http import serve

    stop = stop or threading.Event()
    try:
        aws = EmbeddedAws(port=options.port, region=options.region).start()
    except EndpointError as exc:
        raise CliError(str(exc)) from None
    runtime = LocalRuntime(pipeline, aws, stage=options.stage, broker=options.broker)
    server: Any = None
    console: Any = None
    threads: list[threading.Thread] = []
    try:
        runtime.start()
        runtime.run_in_background()
        try:
            server = serve(runtime.routes(), port=options.api_port,
                           context=runtime.route_context)
        except OSError as exc:
            raise CliError(f"cannot serve the APIs on 127.0.0.1:{options.api_port}: "
                           f"{exc.strerror or exc}") from None
        for sched in pipeline.scheduled:
            period = options.tick_s or float(sched.every_s)
            threads.append(_every(period, partial(runtime.run_scheduled, sched.name), stop))
        # The first report before `up` says it is up: `status` answers from that moment on.
        runtime.publish_checkpoints()
        threads.append(_every(1.0, runtime.publish_checkpoints, stop))
        api_url = server.url
        endpoints: dict[str, Any] = {
            "aws_endpoint_url": aws.endpoint_url,
            "region": aws.region,
            "api_url": api_url,
            "console_url": None,
            "stage": options.stage,
            "routes": sorted(runtime.routes()),
            "streams": {s.name: runtime.name(s.name) for s in pipeline.streams},
            "broker": options.broker,
            "kafka_bootstrap_servers": (runtime.kafka.bootstrap_servers
                                        if runtime.kafka is not None else None),
        }
        if options.console_port is not None:
            from cascata.local.webconsole import ConsoleData, ConsoleServer

            try:
                console = ConsoleServer(ConsoleData(runtime, endpoints),
                                        port=options.console_port).start()
            except OSError as exc:
                raise CliError(f"cannot serve the console on 127.0.0.1:{options.console_port}: "
                               f"{exc.strerror or exc}") from None
            endpoints["console_url"] = console.url
        if ready:
            ready(endpoints)
        _wait_for_signal(stop)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        if console is not None:
            console.shutdown()
        if server is not None:
            server.shutdown()
        runtime.close()
        aws.stop()


def _every(period: float, action: Callable[[], Any], stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(period):
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - a failed tick is reported, the next runs
                err.print(f"warning: {getattr(action, '__name__', 'tick')} failed: {exc}",
                          markup=False)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def _wait_for_signal(stop: threading.Event) -> None:
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        stop.wait()


def print_endpoints(endpoints: dict[str, Any]) -> None:
    out.print("[bold]cascata is up[/] (Ctrl-C or SIGTERM stops it)")
    out.print(f"  AWS endpoint   {endpoints['aws_endpoint_url']}   "
              f"(export AWS_ENDPOINT_URL={endpoints['aws_endpoint_url']})")
    out.print(f"  region         {endpoints['region']}   "
              f"(export AWS_REGION={endpoints['region']})")
    if endpoints.get("kafka_bootstrap_servers"):
        servers = endpoints["kafka_bootstrap_servers"]
        out.print(f"  Kafka brokers  {servers}   (plaintext; kcat -b {servers} -L; every "
                  "stream is a topic of the same name)")
    if endpoints.get("console_url"):
        out.print(f"  console        [bold]{endpoints['console_url']}[/]   (open it in a browser)")
    out.print(f"  HTTP APIs      {endpoints['api_url']}")
    for route in endpoints["routes"]:
        out.print(f"    {route}")
    out.print(f"  stage          {endpoints['stage']}")


def status(endpoint_url: str | None, *, stage: str, pipeline: Pipeline | None = None
           ) -> dict[str, Any]:
    """The report of the `cascata up` at `endpoint_url`, else at the endpoint the AWS
    configuration gives, else at `UP_ENDPOINT`; in the configured region, or `up`'s when
    nothing names one (`find_pipeline`)."""
    pipeline = pipeline or current_pipeline()
    try:
        aws = external(endpoint_url, default_endpoint=UP_ENDPOINT)
        aws.check_reachable()
        aws = find_pipeline(aws, pipeline, stage=stage)
    except EndpointError as exc:
        raise CliError(str(exc)) from None
    names = {r: pipeline.physical_name(r, stage=stage, account=aws.account, region=aws.region)
             for r in pipeline.resources()}
    declared = pipeline.failures_bucket
    report = _read_report(aws, names[declared]) if declared else {}
    return build_status(pipeline, report, names=names,
                        backlog=partial(_backlog, aws.client("kinesis")),
                        dynamodb=aws.client("dynamodb"), s3=aws.client("s3"),
                        region=aws.region, stage=stage, account=aws.account)


def local_kafka(aws: Aws, pipeline: Pipeline, *, stage: str) -> str | None:
    """The Kafka brokers' address when the local pipeline at `aws` runs on Kafka (its `up
    --broker msk` says so in its report), else None (it runs on Kinesis, or is on AWS)."""
    from cascata.local.emulator import origin_stream_missing

    missing = origin_stream_missing(aws, pipeline, stage=stage)
    if missing is None:
        return None
    declared = pipeline.failures_bucket
    report = _read_report(aws, pipeline.physical_name(
        declared, stage=stage, account=aws.account, region=aws.region)) if declared else {}
    servers = report.get("kafka_bootstrap_servers")
    if report.get("broker") != "msk" or not servers:
        raise CliError(f"the pipeline at {aws.where()} has no Kinesis stream {missing} and "
                       "its local runtime reports no Kafka brokers: is `cascata up` running "
                       "there?")
    return str(servers)


def _read_report(aws: Aws, bucket: str) -> dict[str, Any]:
    s3 = aws.client("s3")
    try:
        if STATUS_KEY not in set(list_keys(s3, bucket, STATUS_KEY)):
            raise CliError("no local runtime reports to this endpoint: is `cascata up` running "
                           "there, with the same --stage?")
        body = s3.get_object(Bucket=bucket, Key=STATUS_KEY)["Body"].read()
    except CliError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line for the user
        raise CliError(f"cannot read the local runtime's status: {exc}") from None
    report: dict[str, Any] = json.loads(body)
    return report


def _backlog(kinesis: Any, stream: str, checkpoints: Mapping[str, str]) -> tuple[int, int]:
    """Records after each shard's checkpoint, and the age of the oldest of them."""
    behind = 0
    oldest: float | None = None
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        shard_id = shard["ShardId"]
        done = checkpoints.get(shard_id)
        kwargs: dict[str, Any] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": done}
            if done and int(done) > 0 else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id,
                                              **kwargs)["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records = page["Records"]
            if records:
                first = records[0]["ApproximateArrivalTimestamp"].timestamp()
                oldest = first if oldest is None else min(oldest, first)
            behind += len(records)
            if len(records) < 10_000:
                break
            iterator = page.get("NextShardIterator")
    age = 0 if oldest is None else int((time.time() - oldest) * 1000)
    return behind, age


def render_status(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="processors", title_justify="left", header_style="bold")
    for column in ("mapping", "in /s", "records behind", "iterator age", "invocations",
                   "errors", "retries", "on-failure", "quarantined"):
        table.add_column(column, justify="left" if column == "mapping" else "right")
    quarantined = report.get("quarantined", {})
    for p in report["processors"]:
        table.add_row(p["mapping"], f"{p['records_in_per_s']:,.1f}", f"{p['records_behind']:,}",
                      f"{p['iterator_age_ms'] / 1000:,.1f} s", f"{p['invocations']:,}",
                      f"{p['errors']:,}", f"{p['retries']:,}", f"{p['on_failure_records']:,}",
                      f"{quarantined[p['processor']]:,}" if p["processor"] in quarantined
                      else "")
    out.print(table)
    views = ", ".join(f"{k} {'missing' if v is None else f'{v:,}'}"
                      for k, v in report["views"].items())
    out.print(f"views ({report.get('views_version', 'v1')}): {views}")
    out.print(f"total lag: [bold]{report['lag_records']:,}[/] records "
              f"(runtime report {report['report_age_s']} s old)")
