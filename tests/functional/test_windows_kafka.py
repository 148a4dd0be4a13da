"""The windows processor on Kafka: it waits for every partition of its source topic and asks
the cluster whether an idle partition has anything left, as it asks Kinesis about shards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cascata.local.kafka_broker import KafkaBroker
from cascata_runtime.kafka_topics import AdminTopics
from payments.adapters import KafkaPartitionLister, KafkaPartitionTip, KinesisShardTip
from payments.domain.windows import ShardState, WindowConfig
from payments.windowing import _sources

TOPIC = "cascata-test-payments-validated"


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    with KafkaBroker(cluster_name="windows") as running:
        running.create_topic(TOPIC, partitions=3)
        yield running


@pytest.fixture(scope="module")
def topics(broker: KafkaBroker) -> AdminTopics:
    from confluent_kafka.admin import AdminClient

    return AdminTopics(AdminClient({"bootstrap.servers": broker.bootstrap_servers,
                                    "log_level": 0}))


def test_the_lister_gives_every_partition_and_caches_the_count(topics: AdminTopics) -> None:
    now = [0.0]
    lister = KafkaPartitionLister(topics, ttl_s=60, clock=lambda: now[0])
    listed = lister.list_shards(TOPIC)
    assert [(s.shard_id, s.open) for s in listed] == [("0", True), ("1", True), ("2", True)]
    lister.list_shards(TOPIC)
    assert lister.calls == 1
    now[0] = 61.0
    lister.list_shards(TOPIC)
    assert lister.calls == 2
    # (An absent topic cannot be asked about here: the loopback broker creates topics on
    # metadata requests, as a broker with auto.create.topics.enable does; MSK does not.)


def test_a_partition_is_at_its_tip_only_when_nothing_follows_the_fence(
        broker: KafkaBroker, topics: AdminTopics) -> None:
    tip = KafkaPartitionTip(topics)
    assert tip.at_tip(TOPIC, "2", -1) is True  # empty partition
    _, first = broker.produce(TOPIC, b"k", b"1", partition=2)
    _, second = broker.produce(TOPIC, b"k", b"2", partition=2)
    assert tip.at_tip(TOPIC, "2", -1) is False
    assert tip.at_tip(TOPIC, "2", first) is False
    assert tip.at_tip(TOPIC, "2", second) is True
    # A Kinesis shard is not this adapter's to judge, and a Kafka partition not Kinesis's.
    assert tip.at_tip(TOPIC, "shardId-000000000000", 0) is None
    assert KinesisShardTip(object()).at_tip(TOPIC, "2", 0) is None


def test_partition_peers_survive_the_shard_item_round_trip() -> None:
    config = WindowConfig()
    kafka = ShardState(TOPIC, "1", peers=("0", "1", "2"))
    assert ShardState.from_item(kafka.to_item(config)).peers == ("0", "1", "2")
    kinesis = ShardState("s", "shardId-000000000001",
                         peers=("shardId-000000000000", "shardId-000000000001"))
    assert ShardState.from_item(kinesis.to_item(config)).peers == kinesis.peers


def test_the_source_topics_are_read_off_an_msk_event() -> None:
    event = {"eventSource": "aws:kafka", "records": {
        f"{TOPIC}-0": [{"topic": TOPIC, "partition": 0, "offset": 4}],
        "other-1": [{"topic": "other", "partition": 1, "offset": 9}]}}
    assert _sources(event) == {TOPIC: TOPIC, "other": "other"}
    kinesis = {"Records": [{"eventSource": "aws:kinesis",
                            "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s"}]}
    assert _sources(kinesis) == {"s": "arn:aws:kinesis:us-east-1:1:stream/s"}
