"""The baseline handler, built from injected clients (the bench counts and times them).

Follows the Powertools documentation for "processing Kinesis with partial failures" plus
"idempotency with batch processing":

- `BatchProcessor(event_type=EventType.KinesisDataStreams, model=KinesisDataStreamRecord)`:
  every record is parsed on its own by the parser's pydantic model;
- the payload is validated with the same rules cascata applies (its domain functions);
  an invalid record is written to the quarantine bucket with the reason, as cascata does;
- a valid payment goes through `@idempotent_function` keyed on `event_id`
  (DynamoDB persistence: a conditional PutItem to claim, an UpdateItem to complete);
- inside it, one UpdateItem per balance change: the payer's debit and the payee's credit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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

from cascata_runtime.envelope import Rejection, SourcePosition, decode_json, parse_envelope
from payments.domain.schemas import PaymentMade, parse_event

Handler = Callable[[Mapping[str, Any], Any], dict[str, Any]]
NAME = "baseline"
BATCH_SIZE = 100
"""Lambda's default batch size for Kinesis, as the documentation's examples leave it."""
MEMORY_MB = 512
BALANCE_KEY = "account_id"
IDEMPOTENCY_KEY = "id"


@dataclass(frozen=True, slots=True)
class Settings:
    balances_table: str
    idempotency_table: str
    quarantine_bucket: str

    ENVIRONMENT = {
        "balances_table": "BASELINE_BALANCES_TABLE",
        "idempotency_table": "BASELINE_IDEMPOTENCY_TABLE",
        "quarantine_bucket": "QUARANTINE_BUCKET",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        missing = sorted(env for env in cls.ENVIRONMENT.values() if not environ.get(env))
        if missing:
            raise RuntimeError(f"baseline: missing environment variable(s): {', '.join(missing)}")
        return cls(**{field: environ[env] for field, env in cls.ENVIRONMENT.items()})


def build(settings: Settings, *, dynamodb: Any, s3: Any) -> Handler:
    logger = Logger(service=NAME)
    processor = BatchProcessor(event_type=EventType.KinesisDataStreams,
                               model=KinesisDataStreamRecord)
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table,
                                           key_attr=IDEMPOTENCY_KEY, boto3_client=dynamodb)
    config = IdempotencyConfig(event_key_jmespath="event_id")

    def apply_balances(payment: dict[str, Any]) -> dict[str, Any]:
        amount = int(payment["amount_minor"])
        for account, signed in ((payment["payer"], -amount), (payment["payee"], amount)):
            dynamodb.update_item(
                TableName=settings.balances_table,
                Key={BALANCE_KEY: {"S": account}},
                UpdateExpression="ADD #balance :amount, #postings :one",
                ExpressionAttributeNames={"#balance": f"balance_{payment['currency']}",
                                          "#postings": "postings"},
                ExpressionAttributeValues={":amount": {"N": str(signed)}, ":one": {"N": "1"}},
            )
        return {"event_id": payment["event_id"], "applied": True}

    # The documented decorator, applied by hand: it is untyped, and the call site stays typed.
    apply_payment: Callable[..., dict[str, Any]] = idempotent_function(
        data_keyword_argument="payment", config=config, persistence_store=persistence
    )(apply_balances)

    def quarantine(record: KinesisDataStreamRecord, raw: bytes, rejection: Rejection) -> None:
        shard, sequence = record.eventID.split(":", 1)
        s3.put_object(
            Bucket=settings.quarantine_bucket,
            Key=f"quarantine/{NAME}/{shard}/{int(sequence):020d}.json",
            Body=json.dumps({"processor": NAME, "reason": rejection.as_dict(),
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
        if not isinstance(event, PaymentMade):
            quarantine(record, raw, Rejection("type", "unexpected_type",
                                              f"{envelope.type} is not a payment"))
            return
        apply_payment(payment={"event_id": envelope.event_id, **event.data()})

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        config.register_lambda_context(context)
        return dict(process_partial_response(event=dict(event), record_handler=record_handler,
                                             processor=processor, context=context))

    return handler
