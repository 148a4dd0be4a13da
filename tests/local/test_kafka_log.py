"""The in-memory Kafka log: Kafka's partitioner, offsets, timestamps, groups, thread safety."""

from __future__ import annotations

import threading

import pytest

from cascata.local.clock import ManualClock
from cascata.local.kafka_log import KafkaLog, murmur2, partition_for_key


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # The vectors of Kafka's own UtilsTest.testMurmur2.
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(key: bytes, expected: bool) -> None:
    assert murmur2(key) == expected


def test_keyed_messages_land_where_kafka_would_put_them() -> None:
    """Given a topic of 6 partitions, when messages are produced with keys, then each key
    always goes to Kafka's default partition for it and offsets count up from 0."""
    log = KafkaLog()
    log.create_topic("payments", partitions=6)

    placed = [log.produce("payments", key, b"v") for key in (b"alice", b"bob", b"alice")]

    assert placed[0][0] == placed[2][0] == partition_for_key(b"alice", 6)
    assert placed[1][0] == partition_for_key(b"bob", 6)
    assert placed[2][1] == placed[0][1] + 1


def test_unkeyed_messages_round_robin_and_explicit_partitions_win() -> None:
    log = KafkaLog()
    log.create_topic("t", partitions=3)
    assert [log.produce("t", None, b"v")[0] for _ in range(4)] == [0, 1, 2, 0]
    assert log.produce("t", b"k", b"v", partition=2) == (2, 1)


def test_reads_offsets_and_timestamps() -> None:
    """Given messages produced over time, when read, then reads start at the given offset,
    return at most `limit`, and offset_for_time finds the first message at or after a time."""
    clock = ManualClock(1000.0)
    log = KafkaLog(clock=clock)
    log.create_topic("t")
    for n in range(5):
        log.produce("t", None, str(n).encode(), headers={"h": b"\x00\xff"})
        clock.advance(1)

    batch = log.read("t", 0, 1, 2)

    assert [(m.offset, m.value) for m in batch] == [(1, b"1"), (2, b"2")]
    assert batch[0].timestamp_ms == 1_001_000
    assert batch[0].headers == (("h", b"\x00\xff"),)
    assert log.end_offset("t", 0) == 5
    assert log.offset_for_time("t", 0, 1_002_500) == 3
    assert log.offset_for_time("t", 0, 9_999_999) == 5


def test_consumer_group_offsets() -> None:
    log = KafkaLog()
    log.create_topic("t")
    assert log.committed("g", "t", 0) is None
    log.commit("g", "t", 0, 7)
    assert log.committed("g", "t", 0) == 7


def test_topics_are_validated() -> None:
    log = KafkaLog()
    with pytest.raises(KeyError, match="create_topic"):
        log.produce("missing", None, b"v")
    with pytest.raises(ValueError, match="topic name"):
        log.create_topic("bad name")
    log.create_topic("t", partitions=2)
    log.create_topic("t", partitions=2)  # idempotent
    with pytest.raises(ValueError, match="already exists with 2 partitions"):
        log.create_topic("t", partitions=3)
    with pytest.raises(TypeError, match="value must be bytes"):
        log.produce("t", None, "text")  # type: ignore[arg-type]
    auto = KafkaLog(auto_create_topics=True, default_partitions=4)
    auto.produce("new", b"k", b"v")
    assert auto.partition_count("new") == 4


def test_concurrent_producers_lose_nothing() -> None:
    """Given eight threads producing 500 messages each to one partition, when they finish,
    then all 4,000 are there with contiguous offsets (moto's Kinesis loses some)."""
    log = KafkaLog()
    log.create_topic("t")

    def produce(worker: int) -> None:
        for n in range(500):
            log.produce("t", None, f"{worker}-{n}".encode())

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    messages = log.read("t", 0, 0, 10_000)
    assert [m.offset for m in messages] == list(range(4000))
    assert len({m.value for m in messages}) == 4000
