"""The archive: every raw event in S3, laid out for replay and for batch queries.

History must outlive stream retention (24 hours by default), so each raw stream is copied to
the archive bucket: on AWS by Amazon Data Firehose (this module's `firehose_transform` is its
record transformation), locally by the local runtime's archiver, which calls `archive_entry`
on the same records. Both write the same layout:

    events/stream=<stream>/date=YYYY-MM-DD/hour=HH/<object>.jsonl.gz
    errors/stream=<stream>/date=YYYY-MM-DD/hour=HH/<object>.jsonl.gz

Objects are gzip-compressed JSON Lines. A record whose bytes are a JSON object with a valid
`occurred_at` goes under `events/`, partitioned by its event date and hour (Hive-style keys, so
DuckDB and Athena prune partitions by `date` and `hour`). Any other record (not UTF-8, not
JSON, no or a malformed `occurred_at`) goes under `errors/`, partitioned by arrival time, with
the reason: nothing is dropped, and a replay republishes it so validate quarantines it again.

Each line keeps what a replay needs to reproduce the stream: the source shard and sequence
number (order per shard, hence per key), the partition key, the arrival time and the
producer's exact bytes (`data` as text, or `data_base64` when they are not UTF-8).

KPL aggregates. Firehose de-aggregates a KPL aggregated record before its transformation, and
the local archiver reads records through `cascata_runtime.records.decode_event`, which does
the same: the archive holds user records, several at one sequence number. Each such line also
carries `subsequence_number`, the user record's index in its aggregate, so a record's identity
and replay order is (shard, sequence number, subsequence number). A line of a record that was
not aggregated has none, and is byte for byte what it was before lines could carry one;
readers take a missing subsequence number as 0 (`line_subsequence`): a sequence number holds
either one plain record or one aggregate, never both.

Only the live origin streams are archived. A version replaying from the archive has replay
streams instead, whose records are this history again behind a header carrying the original
arrival time (`cascata_runtime.records.wrap_replayed`); they are not archived (a version
declares no archives), so the archive never holds a republished copy as new history. Should
such bytes ever reach a live origin stream, they are archived as what they are there: a
producer's bytes that are not an event, under `errors/`.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cascata_runtime.envelope import Rejection, decode_json, parse_time

EVENTS = "events"
ERRORS = "errors"
_DECIMAL = re.compile(r"[0-9]{1,18}")
KINDS = (EVENTS, ERRORS)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record of a raw stream, as read from a shard."""

    stream: str
    shard_id: str
    sequence_number: str
    partition_key: str
    arrival_ms: int
    data: bytes
    subsequence_number: int | None = None
    """The user record's index in its KPL aggregate; None for a record not aggregated."""


@dataclass(frozen=True, slots=True)
class Partition:
    kind: str
    stream: str
    date: str
    hour: str

    @property
    def prefix(self) -> str:
        return f"{self.kind}/stream={self.stream}/date={self.date}/hour={self.hour}/"

    def keys(self) -> dict[str, str]:
        """Firehose dynamic-partitioning keys (the prefix template names these)."""
        return {"kind": self.kind, "stream": self.stream, "date": self.date, "hour": self.hour}


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    partition: Partition
    line: Mapping[str, Any]

    def encoded(self) -> bytes:
        return json.dumps(self.line, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def archive_entry(record: RawRecord) -> ArchiveEntry:
    """Where one raw record goes and the line that keeps it. Never raises on bad data."""
    line: dict[str, Any] = {
        "stream": record.stream,
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "partition_key": record.partition_key,
        "arrival_ms": record.arrival_ms,
    }
    if record.subsequence_number is not None:
        line["subsequence_number"] = record.subsequence_number
    try:
        line["data"] = record.data.decode("utf-8")
    except UnicodeDecodeError:
        line["data_base64"] = base64.b64encode(record.data).decode("ascii")
    problem = _event_problem(record.data)
    if isinstance(problem, datetime):
        occurred = problem
        event = json.loads(record.data)
        line["occurred_at"] = event["occurred_at"]
        for name in ("event_id", "type"):
            if isinstance(event.get(name), str):
                line[name] = event[name]
        return ArchiveEntry(_partition(EVENTS, record.stream, occurred), line)
    line["error"] = problem.as_dict()
    arrived = datetime.fromtimestamp(record.arrival_ms / 1000, UTC)
    return ArchiveEntry(_partition(ERRORS, record.stream, arrived), line)


def _event_problem(raw: bytes) -> datetime | Rejection:
    obj = decode_json(raw)
    if isinstance(obj, Rejection):
        return obj
    return parse_time(obj.get("occurred_at"), "occurred_at")


def _partition(kind: str, stream: str, when: datetime) -> Partition:
    return Partition(kind, stream, when.strftime("%Y-%m-%d"), when.strftime("%H"))


def line_bytes(line: Mapping[str, Any]) -> bytes:
    """The producer's exact bytes back from an archive line."""
    if "data_base64" in line:
        return base64.b64decode(line["data_base64"])
    return str(line["data"]).encode("utf-8")


def encode_object(entries: Iterable[ArchiveEntry]) -> bytes:
    return gzip.compress(b"".join(e.encoded() for e in entries), mtime=0)


def decode_object(body: bytes) -> Iterator[dict[str, Any]]:
    """Lines of one archive object (gzip JSON Lines; Firehose may concatenate gzip members)."""
    for raw in gzip.decompress(body).splitlines():
        if raw.strip():
            yield json.loads(raw)


def group_by_partition(entries: Iterable[ArchiveEntry]) -> dict[Partition, list[ArchiveEntry]]:
    out: dict[Partition, list[ArchiveEntry]] = {}
    for entry in entries:
        out.setdefault(entry.partition, []).append(entry)
    return out


def object_key(partition: Partition, shard_id: str, first: str, last: str) -> str:
    """A deterministic object name: writing the same records again overwrites, never adds."""
    return f"{partition.prefix}{shard_id}-{first}-{last}.jsonl.gz"


def line_subsequence(line: Mapping[str, Any]) -> int:
    """The line's subsequence number, 0 when it has none (a record not aggregated, or a line
    written before lines carried one)."""
    value = line.get("subsequence_number")
    return 0 if value is None else int(value)


def sort_key(line: Mapping[str, Any]) -> tuple[str, str, int, str, int]:
    """Replay order: per stream and shard, by sequence number (numeric: up to 56 digits), then
    by subsequence number (the user records of one KPL aggregate)."""
    sequence = str(line["sequence_number"])
    return (str(line["stream"]), str(line["shard_id"]), len(sequence), sequence,
            line_subsequence(line))


# --- Amazon Data Firehose record transformation ------------------------------------------------


def declared_stream(physical: str, *, app: str, stage: str) -> str:
    """The declared name of a stream from its physical name (`<app>-<stage>-<name>`): the
    archive is laid out by declared names, the same on AWS and locally."""
    prefix = f"{app}-{stage}-"
    return physical[len(prefix):] if physical.startswith(prefix) else physical


def firehose_transform(event: Mapping[str, Any], *, app: str = "cascata", stage: str = "",
                       stream: str | None = None) -> dict[str, Any]:
    """Firehose's Lambda transformation for a Kinesis-sourced delivery stream.

    Each record becomes one archive line, with the partition keys Firehose's dynamic
    partitioning puts in the object prefix. Records are never `ProcessingFailed`: a record that
    is not an event is archived under `errors/` with the reason, so nothing is lost. Firehose
    has de-aggregated KPL aggregates already: a user record's metadata carries its
    `subsequenceNumber`, which its line keeps.
    """
    if stream is None:
        physical = str(event.get("sourceKinesisStreamArn", "")).rsplit("/", 1)[-1] or "unknown"
        stream = declared_stream(physical, app=app, stage=stage)
    out: list[dict[str, Any]] = []
    for record in _records(event):
        meta = record.get("kinesisRecordMetadata") or {}
        arrival = meta.get("approximateArrivalTimestamp",
                           record.get("approximateArrivalTimestamp", 0))
        try:
            data = base64.b64decode(record.get("data", ""), validate=True)
        except ValueError:
            data = str(record.get("data", "")).encode()
        entry = archive_entry(RawRecord(
            stream=stream,
            shard_id=str(meta.get("shardId", "unknown")),
            sequence_number=str(meta.get("sequenceNumber", "0")),
            partition_key=str(meta.get("partitionKey", "")),
            arrival_ms=int(arrival),
            data=data,
            subsequence_number=_subsequence(meta.get("subsequenceNumber")),
        ))
        out.append({
            "recordId": record["recordId"],
            "result": "Ok",
            "data": base64.b64encode(entry.encoded()).decode("ascii"),
            "metadata": {"partitionKeys": entry.partition.keys()},
        })
    return {"records": out}


def _subsequence(value: object) -> int | None:
    """A user record's subsequence number as Firehose's metadata gives it: a number, or in
    older events its decimal text, empty when the record was not aggregated."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    return None


def _records(event: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    records = event.get("records")
    if not isinstance(records, list):
        raise ValueError("not a Firehose transformation event: records is missing")
    return records


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point of the Firehose transformation. `ARCHIVE_STREAM` names the declared
    stream (otherwise it is derived from the source ARN and `PIPELINE_STAGE`)."""
    return firehose_transform(event, stage=os.environ.get("PIPELINE_STAGE", ""),
                              stream=os.environ.get("ARCHIVE_STREAM") or None)
