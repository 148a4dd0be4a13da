"""Decoding of Lambda stream events (Kinesis and Kafka/MSK) into one record type.

Handlers never look at the raw event shape: `decode_event` accepts a Kinesis event
(`Records[].kinesis`) or an MSK / self-managed Kafka event (`records` grouped by
"<topic>-<partition>") and yields `InputRecord`s carrying the bytes, the partition key, the
source position and the identifier Lambda expects back in a partial batch response.

KPL aggregates. A Kinesis record that is a KPL aggregate (`cascata_runtime.kpl`) becomes one
`InputRecord` per user record, in order: its own partition key and data, the aggregate's
position with the user record's index as `subsequence`, and as item identifier the aggregate's
sequence number (a partial batch response names Kinesis records, so a failed user record
retries its whole aggregate; the others are then turned away downstream as copies). An
aggregate that cannot be taken apart is one record refused as `kpl_malformed`, bytes intact.

Replayed records. A replay from the archive republishes history into a version's replay
streams, and Kinesis stamps each record with the republish time. So the republisher writes
each record behind a short header (`wrap_replayed`) naming its original arrival time, the
producer's exact bytes after it, and `unwrap_replayed` turns it back into the record live saw.
Only the runtime decides where a wrapper is believed: `cascata_runtime.shell.read_batch`
unwraps the records of streams whose origin policy says `replayed` (a version's replay
streams, set by the declaration); anywhere else a wrapper is just bytes a producer wrote, which
validation refuses as not JSON, so no producer can choose its arrival time.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cascata_runtime import kpl
from cascata_runtime.envelope import Rejection, SourcePosition

ItemIdentifier = str | dict[str, Any]
KPL_MALFORMED = "kpl_malformed"


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
    """Why the record cannot be read as delivered (bad base64, a malformed KPL aggregate, a
    Kafka tombstone); `data` then holds what arrived, so the quarantine keeps it."""
    error_code: str = "undecodable"
    """The rejection code of `decode_error`."""


def decode_event(event: Mapping[str, Any]) -> list[InputRecord]:
    if not isinstance(event, Mapping):
        raise UnsupportedEventError("the event is not a JSON object")
    if "Records" in event:
        records = event["Records"]
        if not isinstance(records, list):
            raise UnsupportedEventError("Records is not a list")
        return [out for r in records for out in _kinesis(r)]
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


def _kinesis(record: Mapping[str, Any]) -> list[InputRecord]:
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
    whole = InputRecord(
        item_identifier=sequence,
        position=SourcePosition(stream=stream, shard=shard, sequence=sequence),
        partition_key=key,
        data=data,
        arrival_epoch_s=arrival,
        decode_error=error,
    )
    if error is not None or not kpl.is_aggregated(data):
        return [whole]
    users = kpl.deaggregate(data)
    if isinstance(users, kpl.Malformed):
        return [replace(whole, decode_error=_malformed(users), error_code=KPL_MALFORMED)]
    return [
        replace(whole, position=replace(whole.position, subsequence=index),
                partition_key=user.partition_key, data=user.data)
        for index, user in enumerate(users)
    ]


def _malformed(problem: kpl.Malformed) -> str:
    return f"a KPL aggregated record that cannot be taken apart: {problem.reason}"


def _kafka(record: Mapping[str, Any]) -> InputRecord:
    try:
        topic = str(record["topic"])
        partition = int(record["partition"])
        offset = int(record["offset"])
        timestamp_ms = int(record.get("timestamp", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise UnsupportedEventError(f"a Kafka record lacks or mistypes {exc}") from exc
    key_raw = record.get("key")
    key_bytes, key_error = _b64(key_raw) if key_raw else (b"", None)
    if key_error:
        key_bytes = b""
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
    """The bytes base64 `raw` encodes; when it is no valid base64, what arrived (the text's
    UTF-8 bytes) with why, so a quarantine entry shows it."""
    if not isinstance(raw, str):
        return b"", "record data is not a base64 string"
    try:
        return base64.b64decode(raw, validate=True), None
    except (binascii.Error, ValueError) as exc:
        return raw.encode("utf-8", errors="surrogatepass"), \
            f"record data is not valid base64: {exc}"


def batch_response(failed: Sequence[InputRecord]) -> dict[str, list[dict[str, ItemIdentifier]]]:
    """The partial batch response. Lambda retries streams from the lowest failed position.
    Each identifier is named once, though several user records of one aggregate failed."""
    named: dict[str, ItemIdentifier] = {}
    for record in failed:
        ident = record.item_identifier
        named.setdefault(ident if isinstance(ident, str) else json.dumps(ident, sort_keys=True),
                         ident)
    return {"batchItemFailures": [{"itemIdentifier": i} for i in named.values()]}


# --- replayed records: the producer's bytes with their original arrival time ------------------

REPLAYED_MAGIC = b"CASCATA-REPLAY/1 "
"""How a replayed record starts: the format (and its version), then the original arrival time
in epoch milliseconds as decimal digits, a newline, and the producer's bytes, untouched. A
header rather than a JSON wrapper: no escaping or base64, so a record grows by at most 35
bytes (Kinesis takes 1 MiB per record), and the bytes are not JSON, so wherever a wrapper is
not believed, validation refuses it as `not_json`."""
_ARRIVAL = re.compile(rb"0|[1-9][0-9]{0,15}")
_HEADER_MAX = len(REPLAYED_MAGIC) + 17
ARRIVAL_SLACK_S = 1.0
"""A carried arrival may be at most this much after the replayed record's own arrival (both
are Kinesis' clock; history cannot arrive after it was republished)."""


def wrap_replayed(data: bytes, arrival_ms: int) -> bytes:
    """What the republisher writes to a replay stream for one archived record: the arrival
    time the origin stream gave it (epoch milliseconds; 0 when the archive does not know it,
    as a record without an arrival time is read everywhere) and the producer's exact bytes."""
    if not 0 <= arrival_ms < 10**16:
        raise ValueError(f"arrival_ms must be from 0 to 10**16 - 1, got {arrival_ms}")
    return REPLAYED_MAGIC + str(int(arrival_ms)).encode("ascii") + b"\n" + data


@dataclass(frozen=True, slots=True)
class Replayed:
    data: bytes
    """The producer's exact bytes."""
    arrival_ms: int
    """When the origin stream received them."""


def unwrap_replayed(raw: bytes) -> Replayed | Rejection:
    """The record inside a replay wrapper, or why `raw` is not one. Never raises."""
    if not raw.startswith(REPLAYED_MAGIC):
        return _not_replayed(f"it does not start with {REPLAYED_MAGIC.decode()!r}")
    end = raw.find(b"\n", len(REPLAYED_MAGIC), _HEADER_MAX)
    arrival = raw[len(REPLAYED_MAGIC):end] if end >= 0 else b""
    if not _ARRIVAL.fullmatch(arrival):
        return _not_replayed("its header has no arrival time (epoch milliseconds, then a "
                             "newline)")
    return Replayed(raw[end + 1:], int(arrival))


def _not_replayed(why: str) -> Rejection:
    return Rejection("$", "not_replayed", f"a record of a replay stream is not a replayed "
                                          f"record: {why}")


def replayed_input(record: InputRecord) -> InputRecord | Rejection:
    """A record read from a replay stream as live read it (the producer's bytes, the original
    arrival time), at its replay-stream position; or why it cannot be."""
    if record.decode_error:
        return record  # refused as undecodable, like any record
    inner = unwrap_replayed(record.data)
    if isinstance(inner, Rejection):
        return inner
    if kpl.is_aggregated(inner.data):
        # The archive keeps user records (Firehose de-aggregates what it reads), so what is
        # left is an aggregate live refused: refused again, for the same reason.
        users = kpl.deaggregate(inner.data)
        reason = (_malformed(users) if isinstance(users, kpl.Malformed) else
                  "a KPL aggregated record in a replay stream, whose records are user records")
        return Rejection("$", KPL_MALFORMED, reason)
    arrival_s = inner.arrival_ms / 1000.0
    if record.arrival_epoch_s > 0 and arrival_s > record.arrival_epoch_s + ARRIVAL_SLACK_S:
        return _not_replayed(f"its arrival time {inner.arrival_ms} ms is after the record's "
                             f"own arrival ({record.arrival_epoch_s * 1000:.0f} ms)")
    return replace(record, data=inner.data, arrival_epoch_s=arrival_s)
