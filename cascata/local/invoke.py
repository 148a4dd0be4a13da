"""`cascata invoke`: run one declared function once on an event file, show what it did.

The function runs against a freshly provisioned embedded emulator (or the endpoint given) with
its clients wrapped to record every effect: records written to streams, items written to
tables, records quarantined with their reasons.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from cascata.aws_env import arn
from cascata.console import CliError, out
from cascata.local.clock import SystemClock
from cascata.local.emulator import Aws, EmbeddedAws, EndpointError, external, provision
from cascata.local.esm_events import LambdaContext
from cascata.local.functions import build_function
from cascata.pipeline import Pipeline
from cascata.project import current_pipeline
from cascata_runtime.envelope import Rejection
from cascata_runtime.policy import PARSE_DEPTH, parse_json

MAX_EVENT_FILE_BYTES = 6 * 1024 * 1024
"""Lambda's synchronous invocation payload limit."""


class Recorder:
    """Wraps clients so that every successful write is also kept here."""

    def __init__(self, quarantine_bucket: str) -> None:
        self.quarantine_bucket = quarantine_bucket
        self.emitted: list[dict[str, Any]] = []
        self.written: list[dict[str, Any]] = []
        self.quarantined: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def wrap(self, service: str, client: Any) -> Any:
        return _Recording(service, client, self)


class _Recording:
    def __init__(self, service: str, client: Any, recorder: Recorder) -> None:
        self._service = service
        self._client = client
        self._recorder = recorder

    def put_records(self, **kwargs: Any) -> Any:
        response = self._client.put_records(**kwargs)
        with self._recorder._lock:
            for entry, result in zip(kwargs["Records"], response["Records"], strict=True):
                if "ErrorCode" not in result:
                    self._recorder.emitted.append({
                        "stream": kwargs.get("StreamName"),
                        "partition_key": entry["PartitionKey"],
                        "shard": result.get("ShardId"),
                        "sequence": result.get("SequenceNumber"),
                        "event": _maybe_json(entry["Data"]),
                    })
        return response

    def put_item(self, **kwargs: Any) -> Any:
        response = self._client.put_item(**kwargs)
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        item = {k: des.deserialize(v) for k, v in kwargs["Item"].items()}
        with self._recorder._lock:
            self._recorder.written.append({"table": kwargs["TableName"], "item": item})
        return response

    def put_object(self, **kwargs: Any) -> Any:
        response = self._client.put_object(**kwargs)
        if kwargs.get("Bucket") == self._recorder.quarantine_bucket:
            body = kwargs["Body"]
            with self._recorder._lock:
                self._recorder.quarantined.append(
                    {"key": kwargs["Key"], **json.loads(body if isinstance(body, bytes)
                                                        else body.read())}
                )
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _maybe_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return {"data_base64": base64.b64encode(data).decode()}


def read_event(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size > MAX_EVENT_FILE_BYTES:
        raise CliError(f"{path} is {size} bytes; Lambda accepts at most 6 MB per invocation")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    event = parse_json(raw, max_bytes=MAX_EVENT_FILE_BYTES, max_depth=PARSE_DEPTH,
                       what=str(path))
    if isinstance(event, Rejection):
        raise CliError(f"{event.reason} ({event.code})")
    if not isinstance(event, dict):
        raise CliError(f"{path} must hold a JSON object (a Lambda event)")
    return event


def event_kind(event: dict[str, Any]) -> str:
    records = event.get("Records")
    if isinstance(records, list) and records and all(
        isinstance(r, dict) and "kinesis" in r for r in records
    ):
        return "kinesis"
    if event.get("eventSource") in ("aws:kafka", "SelfManagedKafka") and isinstance(
        event.get("records"), dict
    ):
        return "kafka"
    if event.get("version") == "2.0" and "routeKey" in event and "requestContext" in event:
        return "apigateway"
    raise CliError(
        "the event is not a Kinesis, Kafka or API Gateway HTTP API event as Lambda delivers it"
    )


def invoke_once(
    function: str,
    event_path: Path,
    *,
    stage: str,
    endpoint_url: str | None,
    pipeline: Pipeline | None = None,
) -> dict[str, Any]:
    pipeline = pipeline or current_pipeline()
    declared = [f.name for f in pipeline.functions]
    if function not in declared:
        raise CliError(f"unknown function {function!r}; declared: {', '.join(declared)}")
    event = read_event(event_path)
    kind = event_kind(event)
    is_api = any(a.name == function for a in pipeline.apis)
    if kind == "apigateway" and not is_api:
        raise CliError(f"{function} consumes a stream; the file holds an API Gateway event")
    if kind != "apigateway" and is_api:
        raise CliError(f"{function} serves HTTP; the file holds a {kind} event")
    embedded = endpoint_url is None
    aws: Aws
    try:
        aws = EmbeddedAws().start() if embedded else external(endpoint_url)
        if not embedded:
            aws.check_reachable()
        provisioned = provision(pipeline, aws, stage=stage)
    except EndpointError as exc:
        raise CliError(str(exc)) from None
    try:
        quarantine = pipeline.bound(function, "QUARANTINE_BUCKET")
        recorder = Recorder(provisioned.names[quarantine] if quarantine else "")
        handler = build_function(pipeline, function, aws=aws, stage=stage, wrap=recorder.wrap)
        proc = pipeline.function(function)
        name = pipeline.physical_name(function, stage=stage)
        context = LambdaContext(
            function_name=name,
            function_arn=arn("lambda", f"function:{name}", region=aws.region,
                             account=aws.account),
            memory_limit_in_mb=proc.memory_mb,
            aws_request_id=str(uuid.uuid4()),
            log_stream_name="local/[$LATEST]invoke",
            clock=SystemClock(),
            timeout_s=proc.timeout_s,
        )
        try:
            response: Any = handler(json.loads(json.dumps(event)), context)
            error = None
        except Exception as exc:  # noqa: BLE001 - reported as Lambda reports a function error
            response = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            error = "Unhandled"
        return {
            "function": function,
            "function_error": error,
            "response": response,
            "effects": {
                "emitted": recorder.emitted,
                "written": recorder.written,
                "quarantined": recorder.quarantined,
            },
        }
    finally:
        if isinstance(aws, EmbeddedAws):
            aws.stop()


def render_invocation(function: str, result: dict[str, Any]) -> None:
    effects = result["effects"]
    status = "[red]function error[/]" if result["function_error"] else "[green]ok[/]"
    out.print(f"[bold]{function}[/]: {status}")
    out.print(f"response: {json.dumps(result['response'])}")
    out.print(f"emitted {len(effects['emitted'])} record(s)")
    for e in effects["emitted"][:20]:
        ev = e["event"]
        out.print(f"  → {e['stream']} key={e['partition_key']} "
                  f"{ev.get('type', '?')} {ev.get('event_id', '')}")
    out.print(f"wrote {len(effects['written'])} item(s)")
    for w in effects["written"][:20]:
        out.print(f"  → {w['table']} {json.dumps(w['item'], default=str)[:160]}")
    out.print(f"quarantined {len(effects['quarantined'])} record(s)")
    for q in effects["quarantined"][:20]:
        out.print(f"  → {q['source']['shard']}:{q['source']['sequence']} "
                  f"{q['reason']['field']}: {q['reason']['reason']}")
