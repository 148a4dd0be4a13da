"""Decoding of Lambda stream events (Kinesis and Kafka/MSK) into one record type.

Handlers never look at the raw event shape: `decode_event` accepts a Kinesis event
(`Records[].kinesis`) or an MSK / self-managed Kafka event (`records` grouped by
"<topic>-<partition>") and yields `InputRecord`s carrying the bytes, the partition key, the
source position and the identifier Lambda expects back in a partial batch response.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cascata_runtime.envelope import SourcePosition

ItemIdentifier = str | dict[str, Any]


class UnsupportedEventError(ValueError):
    """The event is not a Kinesis or Kafka batch; nothing in it can be processed."""


@dataclass(frozen=True, slots=True)
class InputRecord:
    item_identifier: ItemIdentifier
    """What goes into `batchItemFailures[].itemIdentifier` for this record."""
    position: SourcePosition
    partition_key: str
    data: bytes
    arrival_epoch_s: float
    decode_error: str | None = None
    """Set when the record's bytes could not be recovered (bad base64); data is then empty."""


def decode_event(event: Mapping[str, Any]) -> list[InputRecord]:
    if not isinstance(event, Mapping):
        raise UnsupportedEventError("the event is not a JSON object")
    if "Records" in event:
        records = event["Records"]
        if not isinstance(records, list):
            raise UnsupportedEventError("Records is not a list")
        return [_kinesis(r) for r in records]
    if event.get("eventSource") in ("aws:kafka", "SelfManagedKafka") and "records" in event:
        groups = event["records"]
        if not isinstance(groups, Mapping):
            raise UnsupportedEventError("records is not an object")
        out = [_kafka(r) for group in groups.values() for r in group]
        return out
    raise UnsupportedEventError(
        "the event is neither a Kinesis batch (Records[].kinesis) nor a Kafka batch "
        "(eventSource aws:kafka or SelfManagedKafka)"
    )


def _kinesis(record: Mapping[str, Any]) -> InputRecord:
    try:
        kin = record["kinesis"]
        sequence = str(kin["sequenceNumber"])
        arn = str(record.get("eventSourceARN", ""))
        shard = str(record.get("eventID", "")).split(":", 1)[0] or "shard"
        stream = arn.rsplit("/", 1)[-1] if "/" in arn else arn
        raw = kin.get("data", "")
        key = str(kin.get("partitionKey", ""))
        arrival = float(kin.get("approximateArrivalTimestamp", 0.0))
    except (KeyError, TypeError, AttributeError) as exc:
        raise UnsupportedEventError(f"a Kinesis record lacks {exc}") from exc
    data, error = _b64(raw)
    return InputRecord(
        item_identifier=sequence,
        position=SourcePosition(stream=stream, shard=shard, sequence=sequence),
        partition_key=key,
        data=data,
        arrival_epoch_s=arrival,
        decode_error=error,
    )


def _kafka(record: Mapping[str, Any]) -> InputRecord:
    try:
        topic = str(record["topic"])
        partition = int(record["partition"])
        offset = int(record["offset"])
        timestamp_ms = int(record.get("timestamp", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise UnsupportedEventError(f"a Kafka record lacks or mistypes {exc}") from exc
    key_raw = record.get("key")
    key_bytes, _ = _b64(key_raw) if key_raw else (b"", None)
    value = record.get("value")
    data, error = _b64(value) if value is not None else (b"", "tombstone: the value is null")
    return InputRecord(
        item_identifier={"partition": f"{topic}-{partition}", "offset": offset},
        position=SourcePosition(stream=topic, shard=str(partition), sequence=str(offset)),
        partition_key=key_bytes.decode("utf-8", errors="replace"),
        data=data,
        arrival_epoch_s=timestamp_ms / 1000.0,
        decode_error=error,
    )


def _b64(raw: object) -> tuple[bytes, str | None]:
    if not isinstance(raw, str):
        return b"", "record data is not a base64 string"
    try:
        return base64.b64decode(raw, validate=True), None
    except (binascii.Error, ValueError) as exc:
        return b"", f"record data is not valid base64: {exc}"


def batch_response(failed: Sequence[InputRecord]) -> dict[str, list[dict[str, ItemIdentifier]]]:
    """The partial batch response. Lambda retries streams from the lowest failed position."""
    return {"batchItemFailures": [{"itemIdentifier": r.item_identifier} for r in failed]}
