"""What a handler receives: Lambda event shapes, the Lambda context, on-failure batch info.

Each source kind has a format (`KinesisFormat`, `KafkaFormat`) that knows, for that kind only:
how one record looks inside the event (reference 7.1 / 7.5, complete enough for Powertools'
parser models), how a batch becomes an event (with the tumbling-window fields of 7.2), how the
record is presented to filters (section 8.2), how a partial-failure item identifier names a
record (section 10), and what the on-failure record says about the batch (section 6).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cascata.local.clock import Clock
from cascata.local.esm_sources import SourceRecord
from cascata.local.filters import parse_json_preserving_numbers

__all__ = [
    "EventFormat",
    "FilterView",
    "KafkaFormat",
    "KinesisFormat",
    "LambdaContext",
    "WindowInfo",
    "compact_json",
    "iso_millis",
    "iso_seconds",
]


def compact_json(value: Any) -> str:
    """JSON as measured against the 6 MB limit and sent to handlers (ASCII, no spaces)."""
    return json.dumps(value, separators=(",", ":"))


def iso_millis(epoch: float) -> str:
    """`2026-11-23T20:41:07.512Z`: the timestamp format of on-failure records."""
    millis = round(epoch * 1000)
    moment = dt.datetime.fromtimestamp(millis // 1000, tz=dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def iso_seconds(epoch: float) -> str:
    """`2026-11-23T20:40:00Z`: the format of tumbling window boundaries."""
    return f"{dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC):%Y-%m-%dT%H:%M:%SZ}"


@dataclass(frozen=True, slots=True)
class WindowInfo:
    """The tumbling-window fields of one invocation (reference 7.2)."""

    start: float
    end: float
    state: Any
    is_final: bool
    terminated_early: bool


@dataclass(frozen=True, slots=True)
class FilterView:
    """A record as filters see it: decoded payload plus metadata.

    `unavailable` keys could not be decoded and fail any pattern naming them (Kinesis data
    that is not JSON); `ignored` keys could not be decoded and are skipped (Kafka key/value that
    are not UTF-8: only the other filters apply).
    """

    document: dict[str, Any]
    unavailable: frozenset[str] = frozenset()
    ignored: frozenset[str] = frozenset()


class EventFormat(Protocol):
    def record(self, rec: SourceRecord, shard_id: str) -> dict[str, Any]: ...

    def filter_view(self, rec: SourceRecord, record: dict[str, Any]) -> FilterView: ...

    def event(
        self, shard_id: str, records: Sequence[dict[str, Any]], window: WindowInfo | None = None
    ) -> dict[str, Any]: ...

    def failure_payload(self, event: dict[str, Any]) -> Any:
        """What an S3 on-failure object carries as `payload`."""
        ...

    def identifier_position(self, entry: Any, shard_id: str) -> int | None:
        """The position a batchItemFailures entry names, or None if it is not valid."""
        ...

    def batch_info(
        self, shard_id: str, records: Sequence[SourceRecord], payload_size: int
    ) -> tuple[str, dict[str, Any]]: ...


def _position(value: Any) -> int | None:
    """Sequence numbers and offsets are compared as integers, from their decimal strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


class KinesisFormat:
    """Kinesis Data Streams events (reference 7.1, 7.2) and KinesisBatchInfo (6.1)."""

    def __init__(self, *, stream_arn: str, region: str, role_arn: str) -> None:
        self._stream_arn = stream_arn
        self._region = region
        self._role_arn = role_arn

    def record(self, rec: SourceRecord, shard_id: str) -> dict[str, Any]:
        sequence = str(rec.position)
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": rec.partition_key,
                "sequenceNumber": sequence,
                "data": rec.data or "",
                "approximateArrivalTimestamp": round(rec.arrival, 3),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{sequence}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": self._role_arn,
            "awsRegion": self._region,
            "eventSourceARN": self._stream_arn,
        }

    def filter_view(self, rec: SourceRecord, record: dict[str, Any]) -> FilterView:
        # Current docs allow only `data`; older patterns named record metadata at the top
        # level, so that is offered too (reference 8.2).
        document: dict[str, Any] = dict(record["kinesis"])
        try:
            document["data"] = parse_json_preserving_numbers(
                base64.b64decode(rec.data or "", validate=True).decode("utf-8")
            )
        except (ValueError, binascii.Error):
            del document["data"]
            return FilterView(document, unavailable=frozenset({"data"}))
        return FilterView(document)

    def event(
        self, shard_id: str, records: Sequence[dict[str, Any]], window: WindowInfo | None = None
    ) -> dict[str, Any]:
        event: dict[str, Any] = {"Records": list(records)}
        if window is not None:
            event.update(
                window={"start": iso_seconds(window.start), "end": iso_seconds(window.end)},
                state=window.state,
                shardId=shard_id,
                eventSourceARN=self._stream_arn,
                isFinalInvokeForWindow=window.is_final,
                isWindowTerminatedEarly=window.terminated_early,
            )
        return event

    def failure_payload(self, event: dict[str, Any]) -> Any:
        return event

    def identifier_position(self, entry: Any, shard_id: str) -> int | None:
        if not isinstance(entry, dict):
            return None
        identifier = entry.get("itemIdentifier")
        # Identifiers are sequence-number strings; "", null, missing or a number are invalid.
        if not isinstance(identifier, str):
            return None
        return _position(identifier)

    def batch_info(
        self, shard_id: str, records: Sequence[SourceRecord], payload_size: int
    ) -> tuple[str, dict[str, Any]]:
        return "KinesisBatchInfo", {
            "shardId": shard_id,
            "startSequenceNumber": str(records[0].position),
            "endSequenceNumber": str(records[-1].position),
            "approximateArrivalOfFirstRecord": iso_millis(records[0].arrival),
            "approximateArrivalOfLastRecord": iso_millis(records[-1].arrival),
            "batchSize": len(records),
            "streamArn": self._stream_arn,
        }


def _decode_kafka_bytes(encoded: str | None) -> tuple[Any, bool]:
    """Kafka key/value for filtering: UTF-8 text parsed as JSON if it is JSON. (value, ok)."""
    if encoded is None:
        return None, True
    try:
        text = base64.b64decode(encoded).decode("utf-8")
    except (ValueError, binascii.Error):
        return None, False
    try:
        return parse_json_preserving_numbers(text), True
    except ValueError:
        return text, True


class KafkaFormat:
    """Amazon MSK events (reference 7.5) and KafkaBatchInfo (6.4)."""

    def __init__(self, *, topic: str, cluster_arn: str, bootstrap_servers: str) -> None:
        self._topic = topic
        self._cluster_arn = cluster_arn
        self._bootstrap = bootstrap_servers

    def _partition(self, shard_id: str) -> int:
        return int(shard_id.rsplit("-", 1)[1])

    def record(self, rec: SourceRecord, shard_id: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "topic": self._topic,
            "partition": self._partition(shard_id),
            "offset": rec.position,
            "timestamp": round(rec.arrival * 1000),
            "timestampType": rec.timestamp_type,
            "value": rec.data,
            "headers": [{name: list(value)} for name, value in rec.headers],
        }
        if rec.key is not None:
            record["key"] = rec.key
        return record

    def filter_view(self, rec: SourceRecord, record: dict[str, Any]) -> FilterView:
        document = dict(record)
        ignored: set[str] = set()
        for name, encoded in (("key", rec.key), ("value", rec.data)):
            decoded, ok = _decode_kafka_bytes(encoded)
            if ok:
                document[name] = decoded
            else:
                document.pop(name, None)
                ignored.add(name)
        return FilterView(document, ignored=frozenset(ignored))

    def event(
        self, shard_id: str, records: Sequence[dict[str, Any]], window: WindowInfo | None = None
    ) -> dict[str, Any]:
        return {
            "eventSource": "aws:kafka",
            "eventSourceArn": self._cluster_arn,
            "bootstrapServers": self._bootstrap,
            "records": {shard_id: list(records)} if records else {},
        }

    def failure_payload(self, event: dict[str, Any]) -> Any:
        # The MSK documentation shows the S3 payload as an escaped JSON string.
        return compact_json(event)

    def identifier_position(self, entry: Any, shard_id: str) -> int | None:
        if not isinstance(entry, dict):
            return None
        identifier = entry.get("itemIdentifier")
        if not isinstance(identifier, dict) or identifier.get("partition") != shard_id:
            return None
        return _position(identifier.get("offset"))

    def batch_info(
        self, shard_id: str, records: Sequence[SourceRecord], payload_size: int
    ) -> tuple[str, dict[str, Any]]:
        return "KafkaBatchInfo", {
            "batchSize": len(records),
            "eventSourceArn": self._cluster_arn,
            "bootstrapServers": self._bootstrap,
            "payloadSize": payload_size,
            "recordsInfo": {
                shard_id: {
                    "firstRecordOffset": str(records[0].position),
                    "lastRecordOffset": str(records[-1].position),
                    "firstRecordTimestamp": iso_millis(records[0].arrival),
                    "lastRecordTimestamp": iso_millis(records[-1].arrival),
                }
            },
        }


class LambdaContext:
    """The context object handed to an in-process handler (reference 7.7).

    It has the attributes Powertools reads. Remaining time counts down on the engine's clock
    from the function's timeout.
    """

    __slots__ = (
        "_clock",
        "_deadline",
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
    )

    def __init__(
        self,
        *,
        function_name: str,
        function_arn: str,
        memory_limit_in_mb: int,
        aws_request_id: str,
        log_stream_name: str,
        clock: Clock,
        timeout_s: float,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = log_stream_name
        self.identity: Any = None
        self.client_context: Any = None
        self._clock = clock
        self._deadline = clock.now() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock.now()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext({self.function_name!r}, request_id={self.aws_request_id!r})"
