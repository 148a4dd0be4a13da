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
