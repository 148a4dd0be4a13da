"""What every baseline function shares: the Powertools batch + idempotency skeleton.

Each function follows the Powertools documentation for "processing Kinesis with partial
failures" plus "idempotency with batch processing":

- `BatchProcessor(event_type=EventType.KinesisDataStreams, model=KinesisDataStreamRecord)` with
  `process_partial_response`: every record parsed on its own by the parser's pydantic model,
  failures reported per record;
- the payload checked by cascata's own parsing functions (`decode_json`, `parse_envelope`,
  `parse_event`), so both sides accept and refuse exactly the same events; an invalid record is
  written to the quarantine bucket with its reason, as cascata does;
- the work of one valid event inside `@idempotent_function` keyed on its `event_id`, with
  `DynamoDBPersistenceLayer` on one shared idempotency table (a conditional PutItem to claim,
  an UpdateItem to complete; a duplicate is a failed conditional put, charged all the same);
- inside it, one UpdateItem per view item the event changes, and one PutRecord per record
  emitted.

The functions follow the local runtime's module convention (`SETTINGS`, `dependencies`,
`make_handler`), so the bench builds, meters and times them exactly as it does cascata's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamRecord

from cascata_runtime.envelope import (
    Envelope,
    Rejection,
    SourcePosition,
    decode_json,
    parse_envelope,
)
from payments.domain.schemas import Event, parse_event

Handler = Callable[[Mapping[str, Any], Any], Any]
ClientFactory = Callable[[str], Any]
OnEvent = Callable[[Envelope, Event], None]

IDEMPOTENCY_ENV = "IDEMPOTENCY_TABLE"
QUARANTINE_ENV = "QUARANTINE_BUCKET"


@dataclass(frozen=True, slots=True)
class Settings:
    """The environment the declaration gives a function; a missing variable fails by name."""

    environment: Mapping[str, str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return cls(dict(os.environ if environ is None else environ))

    def get(self, name: str) -> str:
        value = self.environment.get(name)
        if not value:
            raise RuntimeError(f"baseline: missing environment variable {name}")
        return value


def default_client(service: str) -> Any:
    import boto3

    return boto3.client(service)


@dataclass(frozen=True, slots=True)
class Dependencies:
    settings: Settings
    client: ClientFactory
    now: Callable[[], float] = field(default=time.time)


def dependencies(
    settings: Settings, client: ClientFactory = default_client,
    now: Callable[[], float] = time.time,
) -> Dependencies:
    cache: dict[str, Any] = {}

    def cached(service: str) -> Any:
        if service not in cache:
            cache[service] = client(service)
        return cache[service]

    return Dependencies(settings=settings, client=cached, now=now)


def emit(kinesis: Any, stream: str, envelope: Envelope) -> None:
    """One PutRecord per emitted event, as the record handler produces it."""
    kinesis.put_record(StreamName=stream, PartitionKey=envelope.key, Data=envelope.to_bytes())


def stream_function(
    name: str, deps: Dependencies, kinds: tuple[type, ...], on_event: OnEvent
) -> Handler:
    """A Kinesis consumer: per-record parsing, quarantine, and `on_event` run idempotently."""
    logger = Logger(service=f"baseline-{name}")
    dynamodb = deps.client("dynamodb")
    s3 = deps.client("s3")
    quarantine_bucket = deps.settings.get(QUARANTINE_ENV)
    processor = BatchProcessor(event_type=EventType.KinesisDataStreams,
                               model=KinesisDataStreamRecord)
    persistence = DynamoDBPersistenceLayer(table_name=deps.settings.get(IDEMPOTENCY_ENV),
                                           boto3_client=dynamodb)
    config = IdempotencyConfig(event_key_jmespath="event_id")

    def apply(event: dict[str, Any], parsed: tuple[Envelope, Event]) -> dict[str, Any]:
        on_event(*parsed)
        return {"event_id": event["event_id"]}

    # Powertools keys idempotency records by module and qualified name: one per function.
    apply.__qualname__ = apply.__name__ = f"apply_{name.replace('-', '_')}"
    # The documented decorator, applied by hand: it is untyped, and the call site stays typed.
    apply_once: Callable[..., dict[str, Any]] = idempotent_function(
        data_keyword_argument="event", config=config, persistence_store=persistence
    )(apply)

    def quarantine(record: KinesisDataStreamRecord, raw: bytes, rejection: Rejection) -> None:
        shard, sequence = record.eventID.split(":", 1)
        s3.put_object(
            Bucket=quarantine_bucket,
            Key=f"quarantine/baseline-{name}/{shard}/{int(sequence):020d}.json",
            Body=json.dumps({"processor": name, "reason": rejection.as_dict(),
                             "source": {"shard": shard, "sequence": sequence},
                             "data_text": raw.decode("utf-8", errors="replace")}).encode(),
            ContentType="application/json",
        )

    def record_handler(record: KinesisDataStreamRecord) -> None:
        raw = record.kinesis.data
        assert isinstance(raw, bytes)
        position = SourcePosition(
            stream=record.eventSourceARN.rsplit("/", 1)[-1],
            shard=record.eventID.split(":", 1)[0],
            sequence=record.kinesis.sequenceNumber,
        )
        obj = decode_json(raw)
        if isinstance(obj, Rejection):
            quarantine(record, raw, obj)
            return
        envelope = parse_envelope(obj, causation=position)
        if isinstance(envelope, Rejection):
            quarantine(record, raw, envelope)
            return
        event = parse_event(envelope)
        if isinstance(event, Rejection):
            quarantine(record, raw, event)
            return
        if not isinstance(event, kinds):
            quarantine(record, raw, Rejection("type", "unexpected_type",
                                              f"{envelope.type} does not belong here"))
            return
        apply_once(event={"event_id": envelope.event_id}, parsed=(envelope, event))

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        config.register_lambda_context(context)
        return dict(process_partial_response(event=dict(event), record_handler=record_handler,
                                             processor=processor, context=context))

    return handler
