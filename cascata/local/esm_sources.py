"""Where an event source mapping reads records from: Kinesis (moto in-process or any API) or Kafka.

Every source has the same small interface (`Source`): list the shards (Kafka: partitions), take
a starting cursor, and read up to `limit` records after a cursor. The engine owns checkpoints
and everything else; a source only reads (and, for Kafka, commits consumer-group offsets).

Positions are integers: Kinesis sequence numbers are decimal strings that must be compared as
integers (moto's are small per-shard integers, AWS's have 56 digits), Kafka offsets are integers.
A cursor is "after this position" (`int`), the trim horizon (`None`), a timestamp not yet
resolved (`AtTimestamp`), or a shard iterator held for an API source (`IteratorToken`).

- `KinesisBackendSource` reads moto's in-process Kinesis backend by direct index: moto's sequence
  numbers are contiguous per shard, so a read of `limit` records is `limit` dict look-ups, never a
  scan of the shard (moto's own `get_records` walks the whole shard on every call).
- `KinesisApiSource` reads through a boto3 Kinesis client, so the engine also runs against any
  AWS-compatible endpoint.
- `KafkaSource` reads a topic of a `KafkaCluster` (the in-memory `KafkaLog` or the loopback
  `KafkaBroker`); each partition is one "shard" named `<topic>-<partition>`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from cascata.aws_env import arn
from cascata.local.kafka_log import KafkaCluster, KafkaMessage

__all__ = [
    "AtTimestamp",
    "Cursor",
    "IteratorToken",
    "KafkaSource",
    "KinesisApiSource",
    "KinesisBackendSource",
    "ReadResult",
    "ShardInfo",
    "Source",
    "SourceNotFoundError",
    "SourceRecord",
]

SourceKind = Literal["kinesis", "kafka"]


class SourceNotFoundError(ValueError):
    """The stream or topic a mapping names does not exist (InvalidParameterValueException)."""


@dataclass(frozen=True, slots=True)
class AtTimestamp:
    """Start at the first record that arrived at or after `timestamp` (epoch seconds)."""

    timestamp: float


@dataclass(frozen=True, slots=True)
class IteratorToken:
    """A shard iterator an API source obtained and will continue from."""

    token: str


Cursor = int | AtTimestamp | IteratorToken | None


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """A shard (or Kafka partition), its parents after a reshard, and whether it is closed."""

    shard_id: str
    parent_ids: tuple[str, ...] = ()
    closed: bool = False


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record as read, independent of the mapping that will deliver it.

    `data` is base64 exactly as stored (Kinesis data, Kafka value; None for a Kafka tombstone),
    so the handler receives the producer's bytes even after filtering decoded them.
    """

    position: int
    partition_key: str
    arrival: float
    """Kinesis ApproximateArrivalTimestamp or Kafka timestamp, epoch seconds."""
    data: str | None
    key: str | None = None
    """Kafka only: the base64 message key, None for unkeyed messages."""
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_type: str = "CREATE_TIME"


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: Sequence[SourceRecord]
    cursor: Cursor
    """The cursor to continue from."""
    caught_up: bool
    """Nothing more to read right now."""
    shard_ended: bool = False
    """The shard is closed and every record of it has been read."""


@runtime_checkable
class Source(Protocol):
    """What the engine needs from a stream or topic."""

    @property
    def kind(self) -> SourceKind: ...

    @property
    def event_source_arn(self) -> str: ...

    @property
    def name(self) -> str:
        """The stream or topic name, for messages and conflict checks."""
        ...

    def list_shards(self, *, refresh: bool = False) -> list[ShardInfo]: ...

    def start_cursor(
        self, shard_id: str, starting_position: str, timestamp: float | None, *, group: str
    ) -> Cursor:
        """Where a brand-new mapping starts reading this shard."""
        ...

    def read(self, shard_id: str, cursor: Cursor, limit: int) -> ReadResult: ...

    def commit(self, shard_id: str, checkpoint: int, *, group: str) -> None:
        """Record a checkpoint outside the engine (Kafka consumer groups); may do nothing."""
        ...


# --- Kinesis, moto in-process -------------------------------------------------------------


class KinesisBackendSource:
    """A Kinesis stream read straight from moto's in-process backend (no HTTP, no scan).

    The backend is looked up on every call rather than held, so a moto reset between tests
    never leaves the source reading a stale stream. No lock is taken: moto's write path is
    guarded elsewhere, and reads here are single dictionary look-ups.
    """

    def __init__(
        self,
        stream_name: str,
        *,
        account: str = "123456789012",
        region: str = "us-east-1",
    ) -> None:
        self._stream_name = stream_name
        self._account = account
        self._region = region
        self._arn = arn("kinesis", f"stream/{stream_name}", region=region, account=account)

    @property
    def kind(self) -> SourceKind:
        return "kinesis"

    @property
    def event_source_arn(self) -> str:
        return self._arn

    @property
    def name(self) -> str:
        return self._stream_name

    def __repr__(self) -> str:
        return f"KinesisBackendSource({self._stream_name!r})"

    def _stream(self) -> Any:
        from moto.kinesis.models import kinesis_backends  # moto is a local-runtime dependency

        stream = kinesis_backends[self._account][self._region].streams.get(self._stream_name)
        if stream is None:
            raise SourceNotFoundError(f"Stream not found: {self._arn}")
        return stream

    def _records(self, shard_id: str) -> tuple[Any, bool]:
        shard = self._stream().shards.get(shard_id)
        if shard is None:
            raise SourceNotFoundError(f"Shard {shard_id} not found in stream {self._arn}")
        return shard.records, not shard.is_open

    def list_shards(self, *, refresh: bool = False) -> list[ShardInfo]:
        shards = self._stream().shards
        return [
            ShardInfo(
                shard_id=shard_id,
                parent_ids=tuple(p for p in (shard.parent, shard.adjacent_parent) if p),
                closed=not shard.is_open,
            )
            for shard_id, shard in sorted(shards.items())
        ]

    def start_cursor(
        self, shard_id: str, starting_position: str, timestamp: float | None, *, group: str
    ) -> Cursor:
        if starting_position == "LATEST":
            records, _ = self._records(shard_id)
            bounds = _bounds(records)
            return bounds[1] if bounds else None
        if starting_position == "AT_TIMESTAMP":
            return AtTimestamp(float(timestamp or 0.0))
        return None

    def read(self, shard_id: str, cursor: Cursor, limit: int) -> ReadResult:
        records, closed = self._records(shard_id)
        bounds = _bounds(records)
        if bounds is None:
            return ReadResult((), cursor, caught_up=True, shard_ended=closed)
        first, last = bounds
        if cursor is None:
            start = first
        elif isinstance(cursor, AtTimestamp):
            found = _first_at_or_after(records, first, last, cursor.timestamp)
            if found is None:
                return ReadResult((), cursor, caught_up=True, shard_ended=closed)
            start = found
        elif isinstance(cursor, int):
            # A checkpoint before the oldest record means the data was trimmed: restart at the
            # trim horizon, as Lambda does after TrimmedDataAccessException.
            start = max(cursor + 1, first)
        else:
            raise TypeError(f"{self!r} cannot continue from {cursor!r}")
        out: list[SourceRecord] = []
        position = start
        while len(out) < limit and position <= last:
            record = records.get(position)
            if record is None:
                # Sequence numbers are contiguous in moto unless a reshard moved records; only
                # then fall back to finding the next key the slow way.
                later = [k for k in list(records) if k > position]
                if not later:
                    break
                position = min(later)
                continue
            out.append(
                SourceRecord(
                    position=position,
                    partition_key=record.partition_key,
                    arrival=record.created_at,
                    data=record.data,
                )
            )
            position += 1
        caught_up = position > last
        next_cursor: Cursor = out[-1].position if out else cursor
        return ReadResult(out, next_cursor, caught_up=caught_up, shard_ended=closed and caught_up)

    def commit(self, shard_id: str, checkpoint: int, *, group: str) -> None:
        return None

    def backlog(self, shard_id: str, checkpoint: int | None) -> tuple[int, float | None]:
        """Records after `checkpoint` (all when None) and the arrival time of the first of
        them, without reading them: O(1) while the shard's numbers are contiguous."""
        records, _ = self._records(shard_id)
        bounds = _bounds(records)
        if bounds is None:
            return 0, None
        first, last = bounds
        start = first if checkpoint is None else max(checkpoint + 1, first)
        if start > last:
            return 0, None
        if last - first + 1 == len(records):
            behind = last - start + 1
        else:
            behind = sum(1 for key in list(records) if key >= start)
        record = records.get(start)
        if record is None:
            later = [key for key in list(records) if key >= start]
            record = records.get(min(later)) if later else None
        return behind, None if record is None else float(record.created_at)

    def tail(self, shard_id: str, count: int) -> list[SourceRecord]:
        """The last `count` records of a shard, oldest first."""
        records, _ = self._records(shard_id)
        bounds = _bounds(records)
        if bounds is None or count <= 0:
            return []
        first, last = bounds
        return list(self.read(shard_id, max(first, last - count + 1) - 1, count).records)


def backlog_of(source: KinesisBackendSource | KafkaSource, checkpoints: Mapping[str, Any]
               ) -> tuple[int, int]:
    """Records after each shard's (or partition's) checkpoint in `checkpoints` (shard id ->
    position), and the age in milliseconds of the oldest of them."""
    behind = 0
    oldest: float | None = None
    for shard in source.list_shards():
        done = checkpoints.get(shard.shard_id)
        count, first = source.backlog(shard.shard_id, int(done) if done is not None else None)
        behind += count
        if first is not None:
            oldest = first if oldest is None else min(oldest, first)
    return behind, 0 if oldest is None else max(0, int((time.time() - oldest) * 1000))


def _bounds(records: Mapping[int, Any]) -> tuple[int, int] | None:
    """First and last sequence number of a moto shard, in O(1) in the usual case.

    moto numbers records 1, 2, 3... per shard, so the last key is first + len - 1; `len` and
    `get` are atomic under the GIL, which iterating a dict another thread appends to is not.
    Only a shard whose keys are not contiguous (moto's broken resharding) costs a scan.
    """
    count = len(records)
    if count == 0:
        return None
    first = 1 if 1 in records else min(list(records))
    last = first + count - 1
    if last not in records:
        last = max(list(records))
    return first, last


def _first_at_or_after(records: Mapping[int, Any], first: int, last: int, ts: float) -> int | None:
    """Binary search over contiguous sequence numbers for the first arrival >= ts."""
    low, high = first, last
    found: int | None = None
    while low <= high:
        middle = (low + high) // 2
        record = records.get(middle)
        if record is None:
            return next(
                (k for k in sorted(list(records)) if records[k].created_at >= ts), None
            )
        if record.created_at >= ts:
            found = middle
            high = middle - 1
        else:
            low = middle + 1
    return found


# --- Kinesis, any endpoint ----------------------------------------------------------------


@dataclass(slots=True)
class _ApiShardCache:
    shards: list[ShardInfo] = field(default_factory=list)
    fetched_at: float = float("-inf")


class KinesisApiSource:
    """A Kinesis stream read through a boto3 client (ListShards, GetShardIterator, GetRecords).

    Shard iterators returned by GetRecords are kept per (shard, last position) so a steady
    reader never asks for a new iterator; after a checkpoint moves back (a retry after
    disable/enable), it takes an AFTER_SEQUENCE_NUMBER iterator.

    An enhanced fan-out consumer ARN (`.../stream/<name>/consumer/<consumer>:<epoch>`) is
    accepted and read with standard iterators: events name the stream either way.
    """

    def __init__(
        self,
        client: Any,
        stream_name: str | None = None,
        *,
        stream_arn: str | None = None,
        shard_refresh_s: float = 5.0,
    ) -> None:
        if not stream_name and not stream_arn:
            raise ValueError("KinesisApiSource needs stream_name or stream_arn")
        if stream_arn and "/consumer/" in stream_arn:
            stream_arn = stream_arn.split("/consumer/", 1)[0]
        self._client = client
        self._stream_arn = stream_arn
        self._stream_name = stream_name or str(stream_arn).rsplit("/", 1)[-1]
        self._refresh_s = shard_refresh_s
        self._shards = _ApiShardCache()
        self._iterators: dict[tuple[str, int], str] = {}

    @property
    def kind(self) -> SourceKind:
        return "kinesis"

    @property
    def name(self) -> str:
        return self._stream_name

    @property
    def event_source_arn(self) -> str:
        if self._stream_arn is None:
            try:
                summary = self._client.describe_stream_summary(StreamName=self._stream_name)
            except Exception as exc:
                if _error_code(exc) == "ResourceNotFoundException":
                    raise SourceNotFoundError(f"Stream not found: {self._stream_name}") from exc
                raise
            self._stream_arn = str(summary["StreamDescriptionSummary"]["StreamARN"])
        return self._stream_arn

    def __repr__(self) -> str:
        return f"KinesisApiSource({self._stream_name!r})"

    def _stream_args(self) -> dict[str, str]:
        return {"StreamARN": self.event_source_arn}

    def list_shards(self, *, refresh: bool = False) -> list[ShardInfo]:
        # ListShards is a control-plane call with a low rate limit on AWS; cache it briefly.
        now = time.monotonic()
        if not refresh and now - self._shards.fetched_at < self._refresh_s:
            return self._shards.shards
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = self._stream_args()
        while True:
            try:
                page = self._client.list_shards(**kwargs)
            except Exception as exc:
                if _error_code(exc) == "ResourceNotFoundException":
                    raise SourceNotFoundError(f"Stream not found: {self.event_source_arn}") from exc
                raise
            for shard in page.get("Shards", []):
                parents = tuple(
                    p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
                )
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                shards.append(ShardInfo(str(shard["ShardId"]), parents, closed))
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        self._shards = _ApiShardCache(sorted(shards, key=lambda s: s.shard_id), now)
        return self._shards.shards

    def _iterator(self, shard_id: str, kind: str, **extra: Any) -> str:
        response = self._client.get_shard_iterator(
            **self._stream_args(), ShardId=shard_id, ShardIteratorType=kind, **extra
        )
        return str(response["ShardIterator"])

    def start_cursor(
        self, shard_id: str, starting_position: str, timestamp: float | None, *, group: str
    ) -> Cursor:
        if starting_position == "LATEST":
            return IteratorToken(self._iterator(shard_id, "LATEST"))
        if starting_position == "AT_TIMESTAMP":
            return IteratorToken(
                self._iterator(shard_id, "AT_TIMESTAMP", Timestamp=float(timestamp or 0.0))
            )
        return None

    def read(self, shard_id: str, cursor: Cursor, limit: int) -> ReadResult:
        if isinstance(cursor, IteratorToken):
            iterator = cursor.token
        elif isinstance(cursor, int):
            iterator = self._iterators.pop((shard_id, cursor), "") or self._iterator(
                shard_id, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=str(cursor)
            )
        elif cursor is None:
            iterator = self._iterator(shard_id, "TRIM_HORIZON")
        else:
            # AtTimestamp is resolved by start_cursor for this source; accept it anyway.
            iterator = self._iterator(shard_id, "AT_TIMESTAMP", Timestamp=cursor.timestamp)
        try:
            response = self._client.get_records(
                ShardIterator=iterator, Limit=max(1, min(limit, 10_000)), **self._stream_args()
            )
        except Exception as exc:
            if _error_code(exc) != "ExpiredIteratorException" or not isinstance(cursor, int):
                raise
            iterator = self._iterator(
                shard_id, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=str(cursor)
            )
            response = self._client.get_records(
                ShardIterator=iterator, Limit=max(1, min(limit, 10_000)), **self._stream_args()
            )
        out = [
            SourceRecord(
                position=int(r["SequenceNumber"]),
                partition_key=str(r["PartitionKey"]),
                arrival=_epoch(r["ApproximateArrivalTimestamp"]),
                data=base64.b64encode(r["Data"]).decode("ascii"),
            )
            for r in response.get("Records", [])
        ]
        next_iterator = response.get("NextShardIterator")
        behind = int(response.get("MillisBehindLatest", 0) or 0)
        caught_up = not out or (len(out) < limit and behind == 0)
        ended = next_iterator is None and caught_up
        next_cursor: Cursor
        if out:
            next_cursor = out[-1].position
            if next_iterator:
                self._iterators[(shard_id, next_cursor)] = str(next_iterator)
        elif isinstance(cursor, int):
            next_cursor = cursor
            if next_iterator:
                self._iterators[(shard_id, cursor)] = str(next_iterator)
        else:
            next_cursor = IteratorToken(str(next_iterator)) if next_iterator else cursor
        return ReadResult(out, next_cursor, caught_up=caught_up, shard_ended=ended)

    def commit(self, shard_id: str, checkpoint: int, *, group: str) -> None:
        return None


def _epoch(value: Any) -> float:
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


# --- Kafka --------------------------------------------------------------------------------


class KafkaSource:
    """One topic of a Kafka cluster (`KafkaCluster`), as an MSK event source; each partition
    is a shard.

    A consumer group with committed offsets resumes from them (the starting position only
    applies to a group with none), as Lambda's Kafka pollers do.
    """

    def __init__(self, log: KafkaCluster, topic: str, *,
                 consumer_group_id: str | None = None) -> None:
        self._log = log
        self._topic = topic
        self.consumer_group_id = consumer_group_id

    @property
    def kind(self) -> SourceKind:
        return "kafka"

    @property
    def event_source_arn(self) -> str:
        return self._log.cluster_arn

    @property
    def bootstrap_servers(self) -> str:
        return self._log.bootstrap_servers

    @property
    def name(self) -> str:
        return self._topic

    @property
    def topic(self) -> str:
        return self._topic

    def __repr__(self) -> str:
        return f"KafkaSource({self._topic!r})"

    def _partition(self, shard_id: str) -> int:
        prefix = f"{self._topic}-"
        if not shard_id.startswith(prefix) or not shard_id[len(prefix) :].isdigit():
            raise SourceNotFoundError(f"{shard_id!r} is not a partition of topic {self._topic!r}")
        return int(shard_id[len(prefix) :])

    def list_shards(self, *, refresh: bool = False) -> list[ShardInfo]:
        try:
            count = self._log.partition_count(self._topic)
        except KeyError as exc:
            raise SourceNotFoundError(
                f"Topic not found: {self._topic} in {self._log.cluster_arn}"
            ) from exc
        return [ShardInfo(f"{self._topic}-{p}") for p in range(count)]

    def start_cursor(
        self, shard_id: str, starting_position: str, timestamp: float | None, *, group: str
    ) -> Cursor:
        partition = self._partition(shard_id)
        committed = self._log.committed(self.consumer_group_id or group, self._topic, partition)
        if committed is not None:
            next_offset = committed
        elif starting_position == "LATEST":
            next_offset = self._log.end_offset(self._topic, partition)
        elif starting_position == "AT_TIMESTAMP":
            ts_ms = round(float(timestamp or 0.0) * 1000)
            next_offset = self._log.offset_for_time(self._topic, partition, ts_ms)
        else:
            next_offset = self._log.start_offset(self._topic, partition)
        return next_offset - 1 if next_offset > 0 else None

    def read(self, shard_id: str, cursor: Cursor, limit: int) -> ReadResult:
        partition = self._partition(shard_id)
        if cursor is None:
            offset = self._log.start_offset(self._topic, partition)
        elif isinstance(cursor, int):
            offset = cursor + 1
        elif isinstance(cursor, AtTimestamp):
            offset = self._log.offset_for_time(
                self._topic, partition, round(cursor.timestamp * 1000)
            )
        else:
            raise TypeError(f"{self!r} cannot continue from {cursor!r}")
        messages = self._log.read(self._topic, partition, offset, limit)
        out = [_kafka_record(m) for m in messages]
        next_cursor: Cursor = out[-1].position if out else cursor
        return ReadResult(out, next_cursor, caught_up=len(out) < limit)

    def backlog(self, shard_id: str, checkpoint: int | None) -> tuple[int, float | None]:
        """Messages after `checkpoint` (all when None) and the timestamp of the first of them:
        the partition's end offset less the next one to read (offsets are contiguous)."""
        partition = self._partition(shard_id)
        start = self._log.start_offset(self._topic, partition)
        end = self._log.end_offset(self._topic, partition)
        first = start if checkpoint is None else max(checkpoint + 1, start)
        if first >= end:
            return 0, None
        head = self._log.read(self._topic, partition, first, 1)
        return end - first, head[0].timestamp_ms / 1000.0 if head else None

    def tail(self, shard_id: str, count: int) -> list[SourceRecord]:
        """The last `count` messages of a partition, oldest first."""
        partition = self._partition(shard_id)
        end = self._log.end_offset(self._topic, partition)
        first = max(self._log.start_offset(self._topic, partition), end - max(count, 0))
        if count <= 0 or first >= end:
            return []
        return [_kafka_record(m) for m in self._log.read(self._topic, partition, first, count)]

    def commit(self, shard_id: str, checkpoint: int, *, group: str) -> None:
        # Kafka's committed offset is the next one to read.
        self._log.commit(
            self.consumer_group_id or group, self._topic, self._partition(shard_id), checkpoint + 1
        )


def _kafka_record(message: KafkaMessage) -> SourceRecord:
    return SourceRecord(
        position=message.offset,
        partition_key=base64.b64encode(message.key).decode("ascii") if message.key else "",
        arrival=message.timestamp_ms / 1000.0,
        data=None if message.value is None else base64.b64encode(message.value).decode("ascii"),
        key=None if message.key is None else base64.b64encode(message.key).decode("ascii"),
        headers=message.headers,
        timestamp_type=message.timestamp_type,
    )
