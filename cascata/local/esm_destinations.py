"""On-failure destinations of event source mappings: S3, SQS and SNS (reference section 6).

When a mapping gives up on records (retries exhausted, records too old, payload too large) it
sends one on-failure record describing the batch. SQS and SNS get the envelope only; S3 gets
the envelope plus `payload`, the event that failed, under the key
`aws/lambda/<ESM-UUID>/<shardId>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>`.

Clients are injected (explicitly or through a factory), never created at import, so tests pass
moto-backed clients and the local runtime passes clients pointed at its emulator.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cascata.local.esm_config import DestinationKind, destination_kind

__all__ = ["DestinationWriter", "OnFailureDelivery", "s3_failure_key"]


def s3_failure_key(esm_uuid: str, shard_id: str, when: float, object_uuid: str) -> str:
    """The S3 object key Lambda uses for an on-failure record."""
    moment = dt.datetime.fromtimestamp(when, tz=dt.UTC)
    return (
        f"aws/lambda/{esm_uuid}/{shard_id}/{moment:%Y/%m/%d}/"
        f"{moment:%Y-%m-%dT%H.%M.%S}-{object_uuid}"
    )


@dataclass(frozen=True, slots=True)
class OnFailureDelivery:
    """One on-failure record and where it went.

    `location` is `s3://bucket/key`, or the SQS/SNS message id, or None when the engine has no
    `DestinationWriter` (the record is then only kept in memory, for tests).
    """

    destination: str
    kind: DestinationKind
    condition: str
    body: dict[str, Any]
    location: str | None


class DestinationWriter:
    """Sends on-failure records with injected boto3 clients (or clients from `client_factory`).

    `client_factory(service_name)` is called at most once per service, when first needed.
    """

    def __init__(
        self,
        *,
        s3: Any = None,
        sqs: Any = None,
        sns: Any = None,
        client_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self._clients: dict[str, Any] = {
            k: v for k, v in (("s3", s3), ("sqs", sqs), ("sns", sns)) if v is not None
        }
        self._factory = client_factory
        self._queue_urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def supports(self, kind: DestinationKind) -> bool:
        return kind in self._clients or self._factory is not None

    def _client(self, kind: DestinationKind) -> Any:
        with self._lock:
            client = self._clients.get(kind)
            if client is None:
                if self._factory is None:
                    raise ValueError(
                        f"no {kind} client was given to the DestinationWriter "
                        f"(pass {kind}=... or client_factory=...)"
                    )
                client = self._clients[kind] = self._factory(kind)
            return client

    def deliver(self, destination: str, body: Mapping[str, Any], *, s3_key: str) -> str:
        """Send one record; returns its location. Errors propagate so the caller can retry."""
        kind = destination_kind(destination)
        text = json.dumps(body, separators=(",", ":"))
        if kind == "s3":
            bucket = destination.split(":", 5)[5]
            self._client("s3").put_object(
                Bucket=bucket, Key=s3_key, Body=text.encode("utf-8"), ContentType="application/json"
            )
            return f"s3://{bucket}/{s3_key}"
        if kind == "sqs":
            response = self._client("sqs").send_message(
                QueueUrl=self._queue_url(destination), MessageBody=text
            )
            return str(response.get("MessageId", ""))
        response = self._client("sns").publish(TopicArn=destination, Message=text)
        return str(response.get("MessageId", ""))

    def _queue_url(self, arn: str) -> str:
        cached = self._queue_urls.get(arn)
        if cached is not None:
            return cached
        _, _, _, _, account, name = arn.split(":", 5)
        url = str(
            self._client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                "QueueUrl"
            ]
        )
        self._queue_urls[arn] = url
        return url
