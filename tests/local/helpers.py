"""Small helpers shared by the engine tests: put records, read what a handler received."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any

from cascata.local.esm import Invocation, Outcome

REGION = "us-east-1"
ACCOUNT = "123456789012"
RBIF = ("ReportBatchItemFailures",)


def put(kinesis: Any, stream: str, payloads: Iterable[Any], *, key: str = "k") -> list[int]:
    """Put JSON payloads one by one (in order) and return their sequence numbers."""
    return [
        int(
            kinesis.put_record(
                StreamName=stream, Data=json.dumps(p).encode(), PartitionKey=key
            )["SequenceNumber"]
        )
        for p in payloads
    ]


def payload(record: dict[str, Any]) -> Any:
    """The JSON payload of a Kinesis event record."""
    return json.loads(base64.b64decode(record["kinesis"]["data"]))


def seen(invocations: Iterable[Invocation]) -> list[list[Any]]:
    """The payloads of every invocation that reached the function, in order."""
    return [
        [payload(r) for r in inv.records]
        for inv in invocations
        if inv.classification is not Outcome.INVOKE_ERROR
    ]


def failing(*bad: Any, field: str = "n") -> Callable[[dict[str, Any], Any], Any]:
    """A ReportBatchItemFailures handler that reports records whose payload[field] is in bad."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["kinesis"]["sequenceNumber"]}
                for r in event["Records"]
                if payload(r)[field] in bad
            ]
        }

    return handler


def raising_on(*bad: Any, field: str = "n") -> Callable[[dict[str, Any], Any], Any]:
    """A handler that raises when any record's payload[field] is in bad."""

    def handler(event: dict[str, Any], context: Any) -> None:
        for r in event["Records"]:
            if payload(r)[field] in bad:
                raise ValueError(f"poison record {payload(r)}")

    return handler


def ok(event: dict[str, Any], context: Any) -> None:
    return None
