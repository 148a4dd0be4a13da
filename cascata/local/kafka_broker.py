"""A Kafka protocol broker on loopback: librdkafka's mock cluster, reached by real Kafka clients.

`KafkaBroker` starts the mock cluster that ships inside the `confluent-kafka` wheel (librdkafka's
`rd_kafka_mock_cluster_new`, called through ctypes so that topics can be created with their
declared partition counts: the mock answers no CreateTopics request). It serves the Kafka
protocol on a 127.0.0.1 port: kcat, kafka-python or confluent-kafka can produce to and consume
from `bootstrap_servers`. Its methods have the shape of `KafkaLog`'s, so `KafkaSource` and the
event source mapping engine read either; here every one of them is a real client request
(Produce with an idempotent producer and acks=all, Fetch, ListOffsets, OffsetCommit,
OffsetFetch).

`KafkaClient` is the same methods over any brokers' address, for another process (a replay
against a running `cascata up --broker msk`).

The mock keeps messages in memory for as long as the broker runs; it has no retention, no
compaction and no timestamp index (`offset_for_time` finds the offset by reading timestamps).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from typing import Any

from cascata.local.clock import Clock, SystemClock
from cascata.local.esm_model import WriteSignal
from cascata.local.kafka_log import (
    HeadersArg,
    KafkaMessage,
    check_message,
    check_topic,
    cluster_arn,
)

__all__ = ["BrokerUnavailableError", "KafkaBroker", "KafkaClient"]

_TIMEOUT_S = 10.0
_TIMESTAMP_TYPES = {1: "CREATE_TIME", 2: "LOG_APPEND_TIME"}


class BrokerUnavailableError(RuntimeError):
    """No Kafka client library (confluent-kafka) or no mock cluster in it."""


class _Librdkafka:
    """The few C functions of the bundled librdkafka that start and shape a mock cluster."""

    def __init__(self) -> None:
        try:
            import confluent_kafka
        except ImportError as exc:
            raise BrokerUnavailableError("confluent-kafka is not installed") from exc
        package = os.path.dirname(confluent_kafka.__file__)
        candidates = sorted(glob.glob(os.path.join(package + ".libs", "librdkafka*"))
                            + glob.glob(os.path.join(package, ".dylibs", "librdkafka*")))
        if not candidates:
            raise BrokerUnavailableError(f"no librdkafka next to {package}")
        lib = ctypes.CDLL(candidates[0])
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.c_size_t]
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
        lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
        lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                                   ctypes.c_int, ctypes.c_int]
        lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
        self.lib = lib


class KafkaClient:
    """`KafkaLog`'s methods over the Kafka brokers at `bootstrap_servers` (plaintext): another
    process's `KafkaBroker`, or any broker. Topics are found through metadata for all topics
    (a request for one topic would create it on a broker that creates topics on demand)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        cluster_name: str = "cascata-local",
        region: str = "us-east-1",
        account: str = "123456789012",
        clock: Clock | None = None,
        signal: WriteSignal | None = None,
    ) -> None:
        """`signal`: notified after every message this object produces (the local runtime's
        idle lanes wake on it)."""
        from confluent_kafka import Producer

        self._clock: Clock = clock or SystemClock()
        self._signal = signal
        self.bootstrap_servers = bootstrap_servers
        self.cluster_name = cluster_name
        self.cluster_arn = cluster_arn(cluster_name, region=region, account=account)
        self._lock = threading.RLock()
        self._partitions: dict[str, int] = {}
        self._producer = Producer({
            "bootstrap.servers": self.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            # Java clients' partitioner, so a key lands where any other client puts it.
            "partitioner": "murmur2_random",
            "linger.ms": 0,
            "log_level": 0,
        })
        # Consumers per calling thread (the event source mapping's lanes each read on their
        # own): a consumer is not to be shared, and one shared behind a lock made every lane
        # wait for every other's round trips.
        self._local = threading.local()
        self._consumers: list[Any] = []
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._producer.flush(_TIMEOUT_S)
            consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            consumer.close()

    def __enter__(self) -> KafkaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- topics -----------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Make sure topic `name` exists with `partitions` partitions. A client cannot choose
        partitions on a broker without CreateTopics (the loopback broker): an absent topic is
        created by asking for it, with the broker's default count, and that count is kept."""
        check_topic(name, partitions)
        if self._known(name, refresh=True) is None:
            with self._lock:
                self._producer.list_topics(topic=name, timeout=_TIMEOUT_S)
        if self._known(name, refresh=True) is None:
            raise ValueError(f"the brokers at {self.bootstrap_servers} did not create topic "
                             f"{name!r}")

    def _known(self, topic: str, *, refresh: bool = False) -> int | None:
        with self._lock:
            found = self._partitions.get(topic)
            if found is not None or not refresh:
                return found
            from confluent_kafka import KafkaException

            try:
                metadata = self._producer.list_topics(timeout=_TIMEOUT_S)
            except KafkaException as exc:
                raise BrokerUnavailableError(f"cannot reach the Kafka brokers at "
                                             f"{self.bootstrap_servers}: {exc}") from None
            for name, info in metadata.topics.items():
                if info.error is None and info.partitions:
                    self._partitions[str(name)] = len(info.partitions)
            return self._partitions.get(topic)

    def topics(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._partitions))

    def partition_count(self, topic: str) -> int:
        found = self._partitions.get(topic) or self._known(topic, refresh=True)
        if found is None:
            known = ", ".join(self.topics()) or "none"
            raise KeyError(f"no Kafka topic {topic!r} (topics: {known}); create_topic() it first")
        return found

    def _mine(self, group: str | None = None) -> Any:
        """This thread's consumer (for `group`; None: the reader, which never commits)."""
        consumers: dict[str | None, Any] | None = getattr(self._local, "consumers", None)
        if consumers is None:
            consumers = self._local.consumers = {}
        consumer = consumers.get(group)
        if consumer is None:
            consumer = consumers[group] = self._consumer(group)
            with self._lock:
                if self._closed:
                    consumer.close()
                    raise RuntimeError("the Kafka client is closed")
                self._consumers.append(consumer)
        return consumer

    def _consumer(self, group: str | None = None) -> Any:
        from confluent_kafka import Consumer

        return Consumer({
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": group or "cascata-local-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "log_level": 0,
        })

    def _check(self, topic: str, partition: int) -> None:
        count = self.partition_count(topic)
        if not 0 <= partition < count:
            raise KeyError(f"topic {topic!r} has no partition {partition} (0..{count - 1})")

    # --- producing --------------------------------------------------------------------------

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
        """Produce one message (idempotent producer, acks=all) and wait for its acknowledgement;
        returns its `(partition, offset)`. Unkeyed messages without a partition go to the
        partitioner's choice."""
        header_items = list(check_message(key, value, headers))
        count = self.partition_count(topic)
        if partition is not None and not 0 <= partition < count:
            raise KeyError(f"topic {topic!r} has no partition {partition} (0..{count - 1})")
        ts = int(self._clock.now() * 1000) if timestamp_ms is None else int(timestamp_ms)
        outcome: list[Any] = []
        kwargs: dict[str, Any] = {"key": key, "value": value, "timestamp": ts,
                                  "headers": header_items or None,
                                  "on_delivery": lambda err, msg: outcome.append((err, msg))}
        if partition is not None:
            kwargs["partition"] = partition
        with self._lock:
            self._producer.produce(topic, **kwargs)
            self._producer.flush(_TIMEOUT_S)
        if self._signal is not None:
            self._signal.notify()
        if not outcome:
            raise TimeoutError(f"no acknowledgement from the broker for {topic!r} within "
                               f"{_TIMEOUT_S} s")
        err, msg = outcome[0]
        if err is not None:
            raise RuntimeError(f"the broker refused the message: {err}")
        return int(msg.partition()), int(msg.offset())

    # --- reading ----------------------------------------------------------------------------

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[KafkaMessage]:
        """Up to `limit` messages from `offset` (inclusive), fetched from the broker."""
        from confluent_kafka import TopicPartition

        if limit <= 0:
            self._check(topic, partition)
            return []
        low, high = self._watermarks(topic, partition)
        start = max(offset, low)
        if start >= high:
            return []
        wanted = min(limit, high - start)
        out: list[KafkaMessage] = []
        reader = self._mine()
        reader.assign([TopicPartition(topic, partition, start)])
        try:
            while len(out) < wanted:
                batch = reader.consume(num_messages=wanted - len(out), timeout=_TIMEOUT_S)
                if not batch:
                    raise TimeoutError(f"the broker sent nothing for {topic}-{partition} "
                                       f"at offset {start + len(out)} within {_TIMEOUT_S} s")
                for message in batch:
                    if message.error() is not None:
                        continue  # end of partition: ask again until `wanted` arrive
                    out.append(_message(message))
        finally:
            reader.unassign()
        return out[:wanted]

    def start_offset(self, topic: str, partition: int) -> int:
        return self._watermarks(topic, partition)[0]

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next message will get (the high watermark)."""
        return self._watermarks(topic, partition)[1]

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        self._check(topic, partition)
        low, high = self._mine().get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=_TIMEOUT_S, cached=False)
        return int(low), int(high)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The first offset whose timestamp (or an earlier one's) is at least `timestamp_ms`,
        else the end offset: Kafka's time index, found by reading the partition."""
        offset = self.start_offset(topic, partition)
        end = self.end_offset(topic, partition)
        while offset < end:
            batch = self.read(topic, partition, offset, 500)
            for message in batch:
                if message.timestamp_ms >= timestamp_ms:
                    return message.offset
            offset = batch[-1].offset + 1 if batch else end
        return end

    # --- consumer groups --------------------------------------------------------------------

    def commit(self, group: str, topic: str, partition: int, offset: int) -> None:
        """Commit `offset` (the next offset to read) for `group`, with OffsetCommit."""
        from confluent_kafka import TopicPartition

        self._check(topic, partition)
        self._mine(group).commit(offsets=[TopicPartition(topic, partition, offset)],
                                 asynchronous=False)

    def committed(self, group: str, topic: str, partition: int) -> int | None:
        from confluent_kafka import TopicPartition

        self._check(topic, partition)
        found = self._mine(group).committed([TopicPartition(topic, partition)],
                                            timeout=_TIMEOUT_S)
        offset = int(found[0].offset) if found else -1
        return offset if offset >= 0 else None


class KafkaBroker(KafkaClient):
    """A mock Kafka cluster of `brokers` brokers on 127.0.0.1, with `KafkaLog`'s methods."""

    def __init__(
        self,
        *,
        cluster_name: str = "cascata-local",
        region: str = "us-east-1",
        account: str = "123456789012",
        clock: Clock | None = None,
        brokers: int = 1,
        signal: WriteSignal | None = None,
    ) -> None:
        self._c = _Librdkafka().lib
        errstr = ctypes.create_string_buffer(512)
        conf = self._c.rd_kafka_conf_new()
        self._c.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, len(errstr))
        self._handle = self._c.rd_kafka_new(0, conf, errstr, len(errstr))
        if not self._handle:
            raise BrokerUnavailableError(f"cannot start librdkafka: {errstr.value.decode()}")
        self._cluster = self._c.rd_kafka_mock_cluster_new(self._handle, brokers)
        if not self._cluster:
            self._c.rd_kafka_destroy(self._handle)
            raise BrokerUnavailableError("librdkafka could not start a mock cluster")
        super().__init__(self._c.rd_kafka_mock_cluster_bootstraps(self._cluster).decode(),
                         cluster_name=cluster_name, region=region, account=account,
                         clock=clock, signal=signal)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            super().close()
            self._c.rd_kafka_mock_cluster_destroy(self._cluster)
            self._c.rd_kafka_destroy(self._handle)

    def __enter__(self) -> KafkaBroker:
        return self

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create a topic with `partitions` partitions (replication: the broker count, at most
        3); creating an existing topic with the same count is a no-op."""
        check_topic(name, partitions)
        with self._lock:
            existing = self._partitions.get(name)
            if existing is not None:
                if existing != partitions:
                    raise ValueError(f"topic {name!r} already exists with {existing} "
                                     f"partitions, not {partitions}")
                return
            code = self._c.rd_kafka_mock_topic_create(self._cluster, name.encode(), partitions, 1)
            if code != 0:
                raise ValueError(f"the broker refused topic {name!r} (error {code})")
            self._partitions[name] = partitions

    def partition_count(self, topic: str) -> int:
        # The topics this broker holds are the ones created through it: a metadata request
        # for any other would create it. (A dict read needs no lock.)
        found = self._partitions.get(topic)
        if found is None:
            known = ", ".join(self.topics()) or "none"
            raise KeyError(f"no Kafka topic {topic!r} (topics: {known}); create_topic() it first")
        return found


def _message(message: Any) -> KafkaMessage:
    kind, timestamp = message.timestamp()
    return KafkaMessage(
        topic=str(message.topic()),
        partition=int(message.partition()),
        offset=int(message.offset()),
        key=message.key(),
        value=message.value(),
        timestamp_ms=int(timestamp),
        timestamp_type=_TIMESTAMP_TYPES.get(kind, "CREATE_TIME"),
        headers=tuple((name, bytes(value or b"")) for name, value in
                      (message.headers() or ())),
    )
