"""Lambda events shaped exactly as Lambda delivers them (Kinesis 7.1, MSK 7.5 of the ESM spec)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class LambdaContext:
    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "2026/11/25/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def encode(value: Mapping[str, Any] | bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def kinesis_record(
    data: Mapping[str, Any] | bytes | str,
    *,
    sequence: int | str,
    partition_key: str = "k",
    stream: str = "cascata-test-payments-raw",
    shard: str = "shardId-000000000000",
    arrival: float = 1_593_094_000.0,
) -> dict[str, Any]:
    seq = str(sequence)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": seq,
            "data": base64.b64encode(encode(data)).decode(),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/cascata-test-role",
        "awsRegion": REGION,
        "eventSourceARN": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}",
    }


def kinesis_event(
    payloads: Iterable[Mapping[str, Any] | bytes | str],
    *,
    start: int = 1,
    stream: str = "cascata-test-payments-raw",
    shard: str = "shardId-000000000000",
    keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    records = []
    for n, payload in enumerate(payloads):
        key = keys[n] if keys else (
            payload.get("key", "k") if isinstance(payload, Mapping) else "k"
        )
        records.append(
            kinesis_record(payload, sequence=start + n, partition_key=str(key), stream=stream,
                           shard=shard)
        )
    return {"Records": records}


def msk_event(
    payloads: Iterable[Mapping[str, Any] | bytes | str],
    *,
    topic: str = "cascata-test-payments-raw",
    partition: int = 0,
    start: int = 0,
) -> dict[str, Any]:
    records = []
    for n, payload in enumerate(payloads):
        key = payload.get("key", "k") if isinstance(payload, Mapping) else "k"
        records.append(
            {
                "topic": topic,
                "partition": partition,
                "offset": start + n,
                "timestamp": 1_593_094_000_000 + n,
                "timestampType": "CREATE_TIME",
                "key": base64.b64encode(str(key).encode()).decode(),
                "value": base64.b64encode(encode(payload)).decode(),
                "headers": [{"trace-id": [97, 98, 99]}],
            }
        )
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/cascata/{uuid.UUID(int=1)}-1",
        "bootstrapServers": "b-1.cascata.abc123.c3.kafka.us-east-1.amazonaws.com:9098",
        "records": {f"{topic}-{partition}": records},
    }


def derived(
    event: Mapping[str, Any],
    *,
    origin_sequence: int,
    low_water: int = 1,
    origin_stream: str = "cascata-test-payments-raw",
    origin_shard: str = "shardId-000000000000",
    path: Sequence[str] = (),
) -> dict[str, Any]:
    """`event` as a processor emits it on a derived stream: with the lineage of the origin
    record it comes from (a re-emitted copy carries the same lineage at a new position)."""
    out = dict(event)
    lineage: dict[str, Any] = {
        "origin": {"stream": origin_stream, "shard": origin_shard,
                   "sequence": str(origin_sequence)},
        "low_water": str(low_water),
    }
    if path:
        lineage["path"] = list(path)
    out["lineage"] = lineage
    return out


def payment(
    event_id: str = "0b7f9c1e-6f7e-4a43-9d8e-3c6a0f1b2a10",
    *,
    payer: str = "alice",
    payee: str = "bob",
    amount_minor: Any = 20000,
    currency: Any = "USD",
    channel: str | None = "card",
    occurred_at: str = "2020-06-25T14:06:00Z",
    **overrides: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "payer": payer,
        "payee": payee,
        "amount_minor": amount_minor,
        "currency": currency,
    }
    if channel is not None:
        data["channel"] = channel
    event: dict[str, Any] = {
        "event_id": event_id,
        "type": "payment.made",
        "version": 1,
        "key": payer,
        "occurred_at": occurred_at,
        "data": data,
    }
    event.update(overrides)
    return event


def customer_registered(
    event_id: str,
    *,
    customer_id: str = "alice",
    name: str = "Alice Liddell",
    email: str = "alice@example.com",
    country: str = "GB",
    tier: str = "plus",
    occurred_at: str = "2020-06-25T14:00:00Z",
    **overrides: Any,
) -> dict[str, Any]:
    """A `customer.registered` v1 envelope as the CRM sends it to the customers stream."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "type": "customer.registered",
        "version": 1,
        "key": customer_id,
        "occurred_at": occurred_at,
        "data": {"customer_id": customer_id, "name": name, "email": email,
                 "country": country, "tier": tier},
    }
    event.update(overrides)
    return event


def customer_updated(
    event_id: str,
    *,
    customer_id: str = "alice",
    occurred_at: str = "2020-06-25T15:00:00Z",
    **changes: Any,
) -> dict[str, Any]:
    """A `customer.updated` v1 envelope carrying only the fields that changed."""
    return {
        "event_id": event_id,
        "type": "customer.updated",
        "version": 1,
        "key": customer_id,
        "occurred_at": occurred_at,
        "data": {"customer_id": customer_id, **changes},
    }


def http_event(
    method: str,
    path: str,
    *,
    route_key: str | None = None,
    path_parameters: Mapping[str, str] | None = None,
    query: Mapping[str, str | Sequence[str]] | None = None,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    is_base64: bool = False,
    stage: str = "$default",
    request_id: str = "JKJaXmPLvHcESHA=",
) -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0 (ESM spec 7.6), as Lambda receives it.

    `route_key` defaults to "METHOD path"; `query` values may be lists (repeated parameters,
    comma-joined in queryStringParameters as API Gateway does); `body` is a str, bytes, or any
    other value sent as JSON; with `is_base64` the body bytes are base64-encoded. Optional keys
    are omitted when empty, as API Gateway omits them.
    """
    from urllib.parse import urlencode

    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    lowered.setdefault("host", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com")
    lowered.setdefault("x-forwarded-for", "198.51.100.7")
    raw_query = ""
    params: dict[str, str] = {}
    if query:
        pairs = [(k, v) for k, vs in query.items()
                 for v in ([vs] if isinstance(vs, str) else list(vs))]
        raw_query = urlencode(pairs)
        for k, v in pairs:
            params[k] = f"{params[k]},{v}" if k in params else v
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    key = route_key if route_key is not None else f"{method} {path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": lowered,
    }
    if params:
        event["queryStringParameters"] = params
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    event["requestContext"] = {
        "accountId": ACCOUNT,
        "apiId": "a1b2c3d4e5",
        "domainName": lowered["host"],
        "domainPrefix": lowered["host"].split(".", 1)[0],
        "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                 "sourceIp": "198.51.100.7", "userAgent": lowered.get("user-agent", "curl/8.5.0")},
        "requestId": request_id,
        "routeKey": key,
        "stage": stage,
        "time": "25/Nov/2026:14:06:00 +0000",
        "timeEpoch": 1_795_615_560_000,
    }
    if body is not None:
        data = body.encode() if isinstance(body, str) else (
            body if isinstance(body, bytes) else json.dumps(body).encode())
        event["body"] = base64.b64encode(data).decode() if is_base64 else data.decode()
    event["isBase64Encoded"] = is_base64 and body is not None
    return event


def scheduled_event(
    schedule: str = "cascata-test-windows-close",
    *,
    time: str = "2026-11-25T14:06:00Z",
    group: str = "default",
) -> dict[str, Any]:
    """The event EventBridge Scheduler sends a Lambda target when no input is templated: an
    EventBridge "Scheduled Event" naming the schedule."""
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{schedule}/{time}")),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": ACCOUNT,
        "time": time,
        "region": REGION,
        "resources": [f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/{schedule}"],
        "detail": {},
    }
