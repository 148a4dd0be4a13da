"""The Kafka sink: records to topics with their keys, per-record delivery failures, MSK settings.

Delivery is checked against a real Kafka protocol broker on loopback (`KafkaBroker`); the
failures a healthy broker never produces (a refused delivery, no acknowledgement) against a
producer that reports them."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from cascata.local.kafka_broker import KafkaBroker
from cascata_runtime.kafka_sink import KafkaSink, msk_iam_token, producer_config
from cascata_runtime.ports import OutRecord


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    with KafkaBroker(cluster_name="sink") as running:
        running.create_topic("ledger-entries", partitions=3)
        yield running


def _producer(broker: KafkaBroker) -> Any:
    from confluent_kafka import Producer

    return Producer(producer_config(broker.bootstrap_servers, region="us-east-1", iam=False))


def test_records_reach_the_topic_with_their_keys_in_order(broker: KafkaBroker) -> None:
    sink = KafkaSink(_producer(broker))
    records = [OutRecord(partition_key=f"acct-{i % 2}", data=json.dumps({"n": i}).encode(),
                         tag=i) for i in range(10)]
    assert sink.emit("ledger-entries", records) == []
    written = [m for p in range(3) for m in broker.read("ledger-entries", p, 0, 100)]
    assert len(written) == 10
    by_key: dict[bytes, list[int]] = {}
    partitions: dict[bytes, set[int]] = {}
    for message in written:
        assert message.key is not None and message.value is not None
        by_key.setdefault(message.key, []).append(json.loads(message.value)["n"])
        partitions.setdefault(message.key, set()).add(message.partition)
    assert by_key == {b"acct-0": [0, 2, 4, 6, 8], b"acct-1": [1, 3, 5, 7, 9]}
    assert all(len(p) == 1 for p in partitions.values())  # one key, one partition


def test_a_record_too_large_or_without_a_key_fails_alone(broker: KafkaBroker) -> None:
    sink = KafkaSink(_producer(broker), max_message_bytes=1000)
    before = sum(broker.end_offset("ledger-entries", p) for p in range(3))
    failures = sink.emit("ledger-entries", [
        OutRecord("ok", b"{}", tag=1),
        OutRecord("big", b"x" * 2000, tag=2),
        OutRecord("", b"{}", tag=3),
        OutRecord("ok", b"{}", tag=4),
    ])
    assert {f.tag for f in failures} == {2, 3}
    assert "at most 1000" in next(f.reason for f in failures if f.tag == 2)
    assert "needs a key" in next(f.reason for f in failures if f.tag == 3)
    assert sum(broker.end_offset("ledger-entries", p) for p in range(3)) == before + 2


class _Reporting:
    """A producer whose deliveries are refused for some keys and never acknowledged for
    others, and whose queue is full once."""

    def __init__(self, refused: set[bytes], silent: set[bytes]) -> None:
        self.refused, self.silent = refused, silent
        self.pending: list[tuple[bytes, Any]] = []
        self.full_once = True

    def produce(self, topic: str, *, key: bytes, value: bytes, on_delivery: Any) -> None:
        if self.full_once:
            self.full_once = False
            raise BufferError("queue full")
        self.pending.append((key, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        left = 0
        for key, callback in self.pending:
            if key in self.silent:
                left += 1
            else:
                callback("Broker: Not enough in-sync replicas" if key in self.refused else None,
                         None)
        self.pending = []
        return left


def test_each_undelivered_record_is_a_failure_of_its_own() -> None:
    producer = _Reporting(refused={b"b"}, silent={b"c"})
    failures = KafkaSink(producer, timeout_s=1).emit("t", [
        OutRecord("a", b"1", tag=10), OutRecord("b", b"2", tag=11),
        OutRecord("c", b"3", tag=12), OutRecord("a", b"4", tag=13)])
    reasons = {f.tag: f.reason for f in failures}
    assert set(reasons) == {11, 12}
    assert "in-sync replicas" in reasons[11]
    assert "no acknowledgement" in reasons[12]


def test_msk_settings_are_tls_and_iam_with_signed_tokens() -> None:
    config = producer_config("b-1.x.kafka.us-east-1.amazonaws.com:9098", region="eu-west-1")
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanisms"] == "OAUTHBEARER"
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    token, expiry_s = config["oauth_cb"]("ignored")
    # The signer's token: a presigned kafka-cluster:Connect URL, base64url without padding.
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert "X-Amz-Signature" in query and "eu-west-1" in query["X-Amz-Credential"][0]
    assert expiry_s > 1_000_000_000  # seconds, as librdkafka wants them
    assert msk_iam_token("eu-west-1")[1] > 1_000_000_000_000  # the signer's milliseconds
    plain = producer_config("127.0.0.1:9092", region="us-east-1", iam=False)
    assert "security.protocol" not in plain and "oauth_cb" not in plain


class _Flaky:
    """A producer whose deliveries fail with given errors, one per send, for some keys."""

    def __init__(self, errors: dict[bytes, list[Any]]) -> None:
        self.errors = errors
        self.sends: dict[bytes, int] = {}
        self.pending: list[tuple[bytes, Any]] = []

    def produce(self, topic: str, *, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.sends[key] = self.sends.get(key, 0) + 1
        self.pending.append((key, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for key, callback in self.pending:
            queue = self.errors.get(key, [])
            callback(queue.pop(0) if queue else None, None)
        self.pending = []
        return 0


class _Error:
    def __init__(self, text: str, *, retriable: bool) -> None:
        self.text, self._retriable = text, retriable

    def retriable(self) -> bool:
        return self._retriable

    def __str__(self) -> str:
        return self.text


def test_a_transient_delivery_failure_is_sent_again_and_a_lasting_one_is_not() -> None:
    timeout = _Error("Broker: Request timed out", retriable=True)
    denied = _Error("Broker: Topic authorization failed", retriable=False)
    producer = _Flaky({b"a": [timeout, timeout], b"b": [denied], b"c": [timeout] * 9})
    failures = KafkaSink(producer, timeout_s=1, max_attempts=4).emit("t", [
        OutRecord("a", b"1", tag=1), OutRecord("b", b"2", tag=2), OutRecord("c", b"3", tag=3),
        OutRecord("d", b"4", tag=4)])
    reasons = {f.tag: f.reason for f in failures}
    assert set(reasons) == {2, 3}  # a made it on its third send, d on its first
    assert producer.sends == {b"a": 3, b"b": 1, b"c": 4, b"d": 1}
    assert "authorization" in reasons[2] and "send 1 of 4" in reasons[2]
    assert "timed out" in reasons[3] and "send 4 of 4" in reasons[3]


def test_a_refused_send_is_tried_again() -> None:
    class Refusing(_Flaky):
        refusals = 2

        def produce(self, topic: str, *, key: bytes, value: bytes, on_delivery: Any) -> None:
            if self.refusals:
                self.refusals -= 1
                raise RuntimeError("Local: Queue full")
            super().produce(topic, key=key, value=value, on_delivery=on_delivery)

    producer = Refusing({})
    assert KafkaSink(producer, timeout_s=1).emit("t", [OutRecord("k", b"v", tag=1)]) == []
    assert producer.sends == {b"k": 1}
