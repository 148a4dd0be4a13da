"""The loopback broker serves Kafka clients other than the one it ships in: kafka-python (pure
Python, its own protocol code) produces and consumes there, and sees what the others wrote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cascata.local.kafka_broker import KafkaBroker
from cascata.local.kafka_log import partition_for_key

TOPIC = "clients"


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    with KafkaBroker(cluster_name="clients") as running:
        running.create_topic(TOPIC, partitions=3)
        yield running


def test_kafka_python_produces_and_consumes_on_the_loopback_broker(broker: KafkaBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]

    # kafka-python's producer: keyed messages land where Kafka's partitioner puts them
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    keys = [f"account-{i}".encode() for i in range(6)]
    for key in keys:
        producer.send(TOPIC, key=key, value=b"from kafka-python:" + key)
    producer.flush(timeout=30)
    producer.close()
    written = {m.key: m.partition for p in range(3) for m in broker.read(TOPIC, p, 0, 100)}
    assert written == {key: partition_for_key(key, 3) for key in keys}
    # ... and its consumer group reads those and what the broker's own client wrote
    broker.produce(TOPIC, b"account-0", b"from confluent-kafka")
    consumer = KafkaConsumer(TOPIC, bootstrap_servers=broker.bootstrap_servers,
                             group_id="kafka-python", auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=60_000)
    values: list[bytes] = []
    for message in consumer:  # stops after 60 s without a message, or when all 7 are in
        values.append(message.value)
        if len(values) == 7:
            break
    values.sort()
    consumer.commit()
    consumer.close()
    assert values == sorted([b"from kafka-python:" + key for key in keys]
                            + [b"from confluent-kafka"])
    committed = sum(broker.committed("kafka-python", TOPIC, p) or 0 for p in range(3))
    assert committed == 7
