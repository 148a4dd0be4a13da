"""An in-memory, partitioned Kafka log standing in for Amazon MSK in the local runtime.

moto implements MSK's control plane only (no brokers, no topics), so Kafka data lives here:
topics with a fixed number of partitions, each an append-only list of messages with contiguous
offsets from 0, plus consumer-group offsets. Producers get Kafka's default partitioner (murmur2
of the key, unkeyed messages round-robin), so a key always lands on the same partition, as on a
real cluster. Every method is thread-safe; reads copy at most `limit` messages and never scan a
partition.

Retention, compaction, transactions and rebalancing are not modelled: the local runtime needs
ordering per partition, offsets and timestamps, and nothing else.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cascata.aws_env import arn
from cascata.local.clock import Clock, SystemClock

__all__ = ["KafkaCluster", "KafkaLog", "KafkaMessage", "check_message", "check_topic",
           "cluster_arn", "murmur2", "partition_for_key"]

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_MASK32 = 0xFFFFFFFF

HeadersArg = Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), as a signed int32."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK32
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & _MASK32
        k ^= k >> 24
        k = (k * m) & _MASK32
        h = (h * m) & _MASK32
        h ^= k
    tail = length & ~3
    remaining = length % 4
    if remaining == 3:
        h ^= data[tail + 2] << 16
    if remaining >= 2:
        h ^= data[tail + 1] << 8
    if remaining >= 1:
        h ^= data[tail]
        h = (h * m) & _MASK32
    h ^= h >> 13
    h = (h * m) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a keyed message."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """One message as stored: bytes in, bytes out; `value` None is a tombstone."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    timestamp_type: str = "CREATE_TIME"
    headers: tuple[tuple[str, bytes], ...] = ()


def cluster_arn(cluster_name: str, *, region: str, account: str) -> str:
    """The ARN of a local cluster: a stable id shaped like MSK's "<uuid>-<n>" suffix, derived
    from the name, so ARNs in events and on-failure records are the same from run to run."""
    digest = hashlib.sha256(f"{account}:{region}:{cluster_name}".encode()).hexdigest()
    cluster_id = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}-1"
    return arn("kafka", f"cluster/{cluster_name}/{cluster_id}", region=region, account=account)


def check_topic(name: str, partitions: int) -> None:
    """ValueError unless `name` is a Kafka topic name and `partitions` at least 1."""
    if not _TOPIC.match(name):
        raise ValueError(f"topic name {name!r} must be 1-249 characters of A-Za-z0-9._-")
    if partitions < 1:
        raise ValueError(f"topic {name!r}: partitions must be at least 1, got {partitions}")


def check_message(key: bytes | None, value: bytes | None,
                  headers: HeadersArg) -> tuple[tuple[str, bytes], ...]:
    """The headers as pairs; TypeError unless key and value are bytes (or None) and every
    header is a str name with a bytes value."""
    if key is not None and not isinstance(key, bytes):
        raise TypeError(f"key must be bytes or None, got {type(key).__name__}")
    if value is not None and not isinstance(value, bytes):
        raise TypeError(f"value must be bytes or None, got {type(value).__name__}")
    items = tuple((headers.items() if isinstance(headers, Mapping) else headers) or ())
    for name, raw in items:
        if not isinstance(name, str) or not isinstance(raw, bytes):
            raise TypeError(f"header {name!r}: names are str and values are bytes")
    return items


class KafkaCluster(Protocol):
    """What the event source mapping needs of a Kafka cluster: `KafkaLog` (in memory) and
    `cascata.local.kafka_broker.KafkaBroker` (a Kafka protocol broker on loopback)."""

    cluster_arn: str
    bootstrap_servers: str

    def create_topic(self, name: str, partitions: int = 1) -> None: ...

    def partition_count(self, topic: str) -> int: ...

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                headers: HeadersArg = None, *, partition: int | None = None,
                timestamp_ms: int | None = None) -> tuple[int, int]: ...

    def read(self, topic: str, partition: int, offset: int, limit: int
             ) -> list[KafkaMessage]: ...

    def start_offset(self, topic: str, partition: int) -> int: ...

    def end_offset(self, topic: str, partition: int) -> int: ...

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int: ...

    def commit(self, group: str, topic: str, partition: int, offset: int) -> None: ...

    def committed(self, group: str, topic: str, partition: int) -> int | None: ...


@dataclass(slots=True)
class _Partition:
    messages: list[KafkaMessage] = field(default_factory=list)
    # Running maximum of timestamps, so offset_for_time is a bisect even when producers send
    # out-of-order CreateTime timestamps (Kafka's time index keeps the same monotone view).
    max_ts: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Topic:
    partitions: list[_Partition]
    next_unkeyed: int = 0


class KafkaLog:
    """Topics, partitions and offsets in memory, with a small producer API."""

    def __init__(
        self,
        *,
        cluster_name: str = "cascata-local",
        region: str = "us-east-1",
        account: str = "123456789012",
        clock: Clock | None = None,
        auto_create_topics: bool = False,
        default_partitions: int = 1,
    ) -> None:
        if default_partitions < 1:
            raise ValueError(f"default_partitions must be at least 1, got {default_partitions}")
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._topics: dict[str, _Topic] = {}
        self._offsets: dict[tuple[str, str, int], int] = {}
        self._auto_create = auto_create_topics
        self._default_partitions = default_partitions
        self.cluster_name = cluster_name
        self.cluster_arn = cluster_arn(cluster_name, region=region, account=account)
        self.bootstrap_servers = ",".join(
            f"b-{n}.{cluster_name}.local.kafka.{region}.amazonaws.com:9098" for n in (1, 2)
        )

    # --- topics ---------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create a topic; creating an existing topic with the same partition count is a no-op."""
        check_topic(name, partitions)
        with self._lock:
            existing = self._topics.get(name)
            if existing is not None:
                if len(existing.partitions) != partitions:
                    raise ValueError(
                        f"topic {name!r} already exists with {len(existing.partitions)} "
                        f"partitions, not {partitions}"
                    )
                return
            self._topics[name] = _Topic(partitions=[_Partition() for _ in range(partitions)])

    def topics(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._topics))

    def partition_count(self, topic: str) -> int:
        with self._lock:
            return len(self._topic(topic).partitions)

    def _topic(self, topic: str) -> _Topic:
        found = self._topics.get(topic)
        if found is None:
            known = ", ".join(sorted(self._topics)) or "none"
            raise KeyError(f"no Kafka topic {topic!r} (topics: {known}); create_topic() it first")
        return found

    def _partition(self, topic: str, partition: int) -> _Partition:
        parts = self._topic(topic).partitions
        if not 0 <= partition < len(parts):
            raise KeyError(f"topic {topic!r} has no partition {partition} (0..{len(parts) - 1})")
        return parts[partition]

    # --- producing ------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeadersArg = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> tuple[int, int]:
        """Append one message and return its `(partition, offset)`."""
        header_items = check_message(key, value, headers)
        ts = int(self._clock.now() * 1000) if timestamp_ms is None else int(timestamp_ms)
        with self._lock:
            if topic not in self._topics and self._auto_create:
                self.create_topic(topic, self._default_partitions)
            entry = self._topic(topic)
            count = len(entry.partitions)
            if partition is None:
                if key is None:
                    partition = entry.next_unkeyed % count
                    entry.next_unkeyed += 1
                else:
                    partition = partition_for_key(key, count)
            part = self._partition(topic, partition)
            offset = len(part.messages)
            part.messages.append(
                KafkaMessage(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=key,
                    value=value,
                    timestamp_ms=ts,
                    headers=header_items,
                )
            )
            part.max_ts.append(max(ts, part.max_ts[-1]) if part.max_ts else ts)
            return partition, offset

    # --- reading --------------------------------------------------------------------------

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[KafkaMessage]:
        """Up to `limit` messages starting at `offset` (inclusive)."""
        with self._lock:
            messages = self._partition(topic, partition).messages
            start = max(offset, 0)
            return messages[start : start + max(limit, 0)]

    def start_offset(self, topic: str, partition: int) -> int:
        """The earliest offset still in the log (always 0: there is no retention)."""
        with self._lock:
            self._partition(topic, partition)
            return 0

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next message will get (Kafka's log end offset)."""
        with self._lock:
            return len(self._partition(topic, partition).messages)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The first offset whose timestamp is at least `timestamp_ms`, else the end offset."""
        with self._lock:
            return bisect.bisect_left(self._partition(topic, partition).max_ts, timestamp_ms)

    # --- consumer groups ------------------------------------------------------------------

    def commit(self, group: str, topic: str, partition: int, offset: int) -> None:
        """Record that `group` will resume at `offset` (the next offset to read)."""
        with self._lock:
            self._partition(topic, partition)
            self._offsets[(group, topic, partition)] = offset

    def committed(self, group: str, topic: str, partition: int) -> int | None:
        with self._lock:
            return self._offsets.get((group, topic, partition))
