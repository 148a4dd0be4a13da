"""What a function may ask a Kafka cluster about its topics: their partitions and where each
partition ends. The windows processor waits for every partition of its source and asks whether
an idle one has nothing left to deliver, as it asks Kinesis about shards.

`AdminTopics` answers over an injected admin client (`confluent_kafka.admin.AdminClient`, built
by `cascata_runtime.sinks.kafka_admin` from the function's environment): Metadata and
ListOffsets requests, which IAM allows with `kafka-cluster:DescribeTopic`.
"""

from __future__ import annotations

from typing import Any, Protocol

REQUEST_TIMEOUT_S = 10.0


class KafkaTopics(Protocol):
    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has; KeyError if the cluster has no such topic."""
        ...

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset the partition's next message will get (its high watermark)."""
        ...


class AdminTopics:
    """`KafkaTopics` over a Kafka admin client."""

    def __init__(self, admin: Any, *, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._admin = admin
        self._timeout_s = timeout_s

    def partitions(self, topic: str) -> int:
        metadata = self._admin.list_topics(topic=topic, timeout=self._timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            why = found.error if found is not None and found.error is not None else "unknown"
            raise KeyError(f"no Kafka topic {topic!r} ({why})")
        return len(found.partitions)

    def end_offset(self, topic: str, partition: int) -> int:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin._listoffsets import OffsetSpec

        wanted = TopicPartition(topic, partition)
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = self._admin.list_offsets({wanted: latest},
                                           request_timeout=self._timeout_s)
        for future in futures.values():
            return int(future.result(timeout=self._timeout_s).offset)
        raise KeyError(f"no offsets for {topic}-{partition}")
