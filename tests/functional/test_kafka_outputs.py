"""Functions produce to Kafka when the pipeline runs on it: the sink comes from the injected
clients (`cascata_runtime.sinks`), so a handler is the same code on Kinesis and on Kafka.

validate reads an MSK batch and writes its outputs to the validated topic of a Kafka protocol
broker on loopback; a record the broker does not take fails alone, as a partial batch failure
naming its partition and offset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cascata.local.kafka_broker import KafkaBroker
from cascata_runtime import adapters
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.errors import ConfigurationError
from cascata_runtime.kafka_sink import KafkaSink
from cascata_runtime.sinks import KAFKA_PRODUCER, kafka_producer, stream_sink
from payments.handlers import validate
from payments.pipeline import PIPELINE
from tests.functional.conftest import Aws
from tests.support.events import LambdaContext, msk_event, payment

CTX = LambdaContext("cascata-test-validate")


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    with KafkaBroker(cluster_name="outputs") as running:
        yield running


def _validate_on(aws: Aws, producer: Any) -> Any:
    env = PIPELINE.environment("validate", stage="test")
    aws.s3.create_bucket(Bucket=env["QUARANTINE_BUCKET"])
    clients = {"kinesis": aws.kinesis, "s3": aws.s3, "dynamodb": aws.dynamodb,
               KAFKA_PRODUCER: producer}
    return validate.make_handler(validate.dependencies(validate.SETTINGS.from_env(env),
                                                       client=clients.__getitem__))


def test_validate_writes_its_outputs_to_the_validated_topic(aws: Aws,
                                                            broker: KafkaBroker) -> None:
    env = PIPELINE.environment("validate", stage="test")
    topic = env["VALIDATED_STREAM"]
    broker.create_topic(topic, partitions=2)
    producer = kafka_producer({"CASCATA_BROKER": "msk",
                               "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                               "KAFKA_AUTH": "none"})
    handle = _validate_on(aws, producer)
    event = msk_event([payment("k1", payer="alice"), payment("k2", payer="bob", payee="carol"),
                       json.dumps({"event_id": "bad"})], start=40)
    assert handle(event, CTX) == {"batchItemFailures": []}
    written = [m for p in range(2) for m in broker.read(topic, p, 0, 10)]
    assert sorted(json.loads(m.value or b"")["event_id"] for m in written) == ["k1", "k2"]
    assert {m.key for m in written} == {b"alice", b"bob"}  # the partition key is the Kafka key
    # Nothing went to Kinesis.
    shards = aws.kinesis.list_shards(StreamName="cascata-test-payments-validated")["Shards"]
    iterator = aws.kinesis.get_shard_iterator(
        StreamName="cascata-test-payments-validated", ShardId=shards[0]["ShardId"],
        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert aws.kinesis.get_records(ShardIterator=iterator)["Records"] == []


class _RefusesKey:
    """A producer that delivers everything but the records keyed `refused`."""

    def __init__(self, refused: bytes) -> None:
        self.refused = refused
        self.pending: list[tuple[bytes, Any]] = []

    def produce(self, topic: str, *, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.pending.append((key, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for key, callback in self.pending:
            callback("Broker: Message size too large" if key == self.refused else None, None)
        self.pending = []
        return 0


def test_an_output_kafka_refuses_fails_its_input_record_alone(aws: Aws) -> None:
    handle = _validate_on(aws, _RefusesKey(b"bob"))
    event = msk_event([payment("k1", payer="alice"),
                       payment("k2", payer="bob", payee="carol")], start=7)
    assert handle(event, CTX) == {"batchItemFailures": [
        {"itemIdentifier": {"partition": "cascata-test-payments-raw-0", "offset": 8}}]}


def test_the_sink_follows_the_clients() -> None:
    class Kinesis:
        def put_records(self, **_: Any) -> dict[str, Any]:
            return {"Records": [], "FailedRecordCount": 0}

    kinesis = Kinesis()
    # A factory of boto3 clients only (a mapping, or one answering any name with a client).
    assert isinstance(stream_sink({"kinesis": kinesis}.__getitem__), KinesisSink)
    assert isinstance(stream_sink(lambda _service: kinesis), KinesisSink)
    # A factory that has a producer.
    assert isinstance(stream_sink({KAFKA_PRODUCER: _RefusesKey(b"")}.__getitem__), KafkaSink)


@pytest.mark.parametrize(("environ", "words"), [
    ({"CASCATA_BROKER": "kafka"}, "kinesis or msk"),
    ({"CASCATA_BROKER": "msk"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ({"CASCATA_BROKER": "msk", "KAFKA_BOOTSTRAP_SERVERS": "b:9098", "KAFKA_AUTH": "sasl"},
     "iam or none"),
    ({"CASCATA_BROKER": "msk", "KAFKA_BOOTSTRAP_SERVERS": "b:9098"}, "AWS_REGION"),
])
def test_a_misconfigured_kafka_environment_is_refused(environ: dict[str, str],
                                                      words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        kafka_producer(environ)


def test_on_lambda_the_environment_chooses_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    adapters.client.cache_clear()
    monkeypatch.delenv("CASCATA_BROKER", raising=False)
    assert adapters.client(KAFKA_PRODUCER) is None
    adapters.client.cache_clear()
    monkeypatch.setenv("CASCATA_BROKER", "msk")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b-1.example.kafka.us-east-1.amazonaws.com:9098")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    try:
        producer = adapters.client(KAFKA_PRODUCER)
        assert callable(producer.produce) and callable(producer.flush)
    finally:
        adapters.client.cache_clear()
