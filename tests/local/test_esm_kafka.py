"""The Kafka (MSK) event source mapping: reference sections 5, 6.4, 7.5, 10.

Every test runs twice: on the in-memory log, and on a Kafka protocol broker on loopback
(librdkafka's mock cluster, `KafkaBroker`) that the mapping reads with real Kafka clients:
batches per partition, retries, on-failure records and committed offsets alike."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import KafkaMskEventModel

from cascata.local.clock import ManualClock
from cascata.local.esm import (
    EventSourceMappingEngine,
    KafkaSource,
    MappingConfig,
    Outcome,
)
from cascata.local.kafka_broker import KafkaBroker
from cascata.local.kafka_log import KafkaCluster, KafkaLog

DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"


@pytest.fixture(params=["in-memory", "broker"])
def log(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[KafkaCluster]:
    kafka: KafkaCluster
    if request.param == "broker":
        broker = KafkaBroker(clock=clock, cluster_name="ledger")
        request.addfinalizer(broker.close)
        kafka = broker
    else:
        kafka = KafkaLog(clock=clock, cluster_name="ledger")
    kafka.create_topic("payments", partitions=2)
    yield kafka


def values(event: dict[str, Any]) -> list[Any]:
    return [
        json.loads(base64.b64decode(r["value"]))
        for records in event["records"].values()
        for r in records
    ]


def test_events_have_the_msk_shape(log: KafkaCluster, clock: ManualClock) -> None:
    """Given a keyed message with a header, when delivered, then the event is an MSK event:
    records grouped under "<topic>-<partition>", base64 key and value, a millisecond
    timestamp and headers as byte arrays; Powertools' MSK model accepts it."""
    partition, offset = log.produce(
        "payments", b"alice", b'{"amount": 5}', {"trace-id": b"abc123"}
    )
    produced_ms = int(clock.now() * 1000)
    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=lambda event, context: KafkaMskEventModel.model_validate(event) and None,
        function_name="ledger",
        source=KafkaSource(log, "payments"),
    )

    engine.drain()

    (invocation,) = mapping.invocations
    assert invocation.classification is Outcome.SUCCESS
    event = invocation.event
    assert event["eventSource"] == "aws:kafka"
    assert event["eventSourceArn"] == log.cluster_arn
    assert event["eventSourceArn"].startswith(
        "arn:aws:kafka:us-east-1:123456789012:cluster/ledger/"
    )
    assert event["bootstrapServers"] == log.bootstrap_servers
    (record,) = event["records"][f"payments-{partition}"]
    assert record == {
        "topic": "payments",
        "partition": partition,
        "offset": offset,
        "timestamp": produced_ms,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(b"alice").decode(),
        "value": base64.b64encode(b'{"amount": 5}').decode(),
        "headers": [{"trace-id": list(b"abc123")}],
    }


def test_default_window_is_half_a_second_from_the_first_record(
    log: KafkaCluster, clock: ManualClock
) -> None:
    """Given a Kafka mapping with no batching window set, when one message is buffered, then
    it is not invoked 0.4 s later but is at 0.5 s."""
    log.produce("payments", b"alice", b"{}")
    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=lambda event, context: None,
        function_name="ledger",
        source=KafkaSource(log, "payments"),
    )

    engine.poll_once()
    clock.advance(0.4)
    engine.poll_once()
    assert mapping.invocations == []
    clock.advance(0.1)
    engine.poll_once()

    assert len(mapping.invocations) == 1
    assert mapping.describe()["MaximumBatchingWindowInSeconds"] == 0.5


def test_partial_failure_identifiers_name_partition_and_offset(
    log: KafkaCluster, clock: ManualClock
) -> None:
    """Given ReportBatchItemFailures, when the handler reports {"partition", "offset"} for
    the second of three messages, then the retry starts at that offset; an identifier for
    another partition fails the whole batch."""
    for n in range(3):
        log.produce("payments", None, json.dumps({"n": n}).encode(), partition=0)
    calls: list[list[Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(values(event))
        if len(calls) == 1:
            return {"batchItemFailures": [{"itemIdentifier": {"partition": "payments-0",
                                                              "offset": 1}}]}
        if len(calls) == 2:
            return {"batchItemFailures": [{"itemIdentifier": {"partition": "payments-1",
                                                              "offset": 1}}]}
        return {}

    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=handler,
        function_name="ledger",
        source=KafkaSource(log, "payments"),
        config=MappingConfig(function_response_types=("ReportBatchItemFailures",)),
    )

    engine.drain()

    assert calls == [[{"n": 0}, {"n": 1}, {"n": 2}], [{"n": 1}, {"n": 2}], [{"n": 1}, {"n": 2}]]
    assert [inv.classification for inv in mapping.invocations] == [
        Outcome.PARTIAL_FAILURE,
        Outcome.BATCH_FAILURE,
        Outcome.SUCCESS,
    ]


def test_infinite_retries_with_a_destination_are_capped_at_ten(
    log: KafkaCluster, clock: ManualClock
) -> None:
    """Given a Kafka mapping with MaximumRetryAttempts -1 and an on-failure destination, when
    the handler always fails, then it is invoked 11 times and the batch is reported with a
    KafkaBatchInfo."""
    log.produce("payments", b"k", b"{}", partition=1)

    def broken(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("broken")

    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=broken,
        function_name="ledger",
        source=KafkaSource(log, "payments"),
        config=MappingConfig(on_failure_destination=DLQ),
    )

    engine.drain()

    assert len(mapping.invocations) == 11
    (record,) = mapping.on_failure_records
    assert record["requestContext"]["functionArn"].endswith(":function:ledger:$LATEST")
    assert record["requestContext"]["approximateInvokeCount"] == 11
    info = record["KafkaBatchInfo"]
    assert info["batchSize"] == 1
    assert info["eventSourceArn"] == log.cluster_arn
    assert info["bootstrapServers"] == log.bootstrap_servers
    assert info["payloadSize"] > 0
    assert info["recordsInfo"]["payments-1"]["firstRecordOffset"] == "0"
    assert info["recordsInfo"]["payments-1"]["lastRecordOffset"] == "0"


def test_s3_payload_is_the_failed_event_as_a_json_string(
    log: KafkaCluster, clock: ManualClock
) -> None:
    """Given an S3 destination on a Kafka mapping (no writer: kept in memory), when a batch is
    discarded, then `payload` is the failed event serialized as a string."""
    log.produce("payments", b"k", b'{"n": 1}', partition=0)
    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=lambda event, context: 1 / 0,
        function_name="ledger",
        source=KafkaSource(log, "payments"),
        config=MappingConfig(maximum_retry_attempts=0,
                             on_failure_destination="arn:aws:s3:::failures"),
    )

    engine.drain()

    (delivery,) = mapping.on_failure_deliveries
    assert delivery.location is None
    payload = json.loads(delivery.body["payload"])
    assert values(payload) == [{"n": 1}]


def test_offsets_are_committed_for_the_consumer_group_and_resumed(
    log: KafkaCluster, clock: ManualClock
) -> None:
    """Given a mapping with a consumer group id, when it processes two messages, then the
    group's committed offset is the next one; a new mapping with that group resumes there
    regardless of its starting position."""
    for n in range(2):
        log.produce("payments", None, json.dumps({"n": n}).encode(), partition=0)
    engine = EventSourceMappingEngine(clock=clock)
    first = engine.create_mapping(
        function=lambda event, context: None,
        function_name="ledger",
        source=KafkaSource(log, "payments", consumer_group_id="ledger-group"),
    )
    engine.drain()
    assert log.committed("ledger-group", "payments", 0) == 2
    assert first.checkpoints == {"payments-0": 1}
    engine.delete_mapping(first)
    log.produce("payments", None, b'{"n": 2}', partition=0)

    second = engine.create_mapping(
        function=lambda event, context: None,
        function_name="ledger",
        source=KafkaSource(log, "payments", consumer_group_id="ledger-group"),
        config=MappingConfig(starting_position="TRIM_HORIZON"),
    )
    engine.drain()

    assert [values(inv.event) for inv in second.invocations] == [[{"n": 2}]]
    assert second.describe()["AmazonManagedKafkaEventSourceConfig"] == {
        "ConsumerGroupId": "ledger-group"
    }


def test_filters_decode_values_and_skip_values_that_are_not_utf8(
    log: KafkaCluster, clock: ManualClock
) -> None:
    """Given a filter on value.currency, when EUR, USD and non-UTF-8 messages arrive, then
    EUR passes, USD is filtered, and the non-UTF-8 one passes because only metadata filters
    can apply to it."""
    for value in (b'{"currency": "EUR"}', b'{"currency": "USD"}', b"\xff\xfe"):
        log.produce("payments", b"k", value, partition=0)
    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=lambda event, context: None,
        function_name="ledger",
        source=KafkaSource(log, "payments"),
        config=MappingConfig(filters=('{"value": {"currency": ["EUR"]}, "topic": ["payments"]}',)),
    )

    engine.drain()

    delivered = [base64.b64decode(r["value"]) for inv in mapping.invocations
                 for r in inv.records]
    assert delivered == [b'{"currency": "EUR"}', b"\xff\xfe"]
    assert mapping.stats.filtered == 1
    assert log.committed(mapping.uuid, "payments", 0) == 3


def test_latest_and_at_timestamp_positions(log: KafkaCluster, clock: ManualClock) -> None:
    """Given messages before a moment, when LATEST and AT_TIMESTAMP mappings start at it,
    then both see only the later messages."""
    log.produce("payments", None, b'{"n": 1}', partition=0)
    clock.advance(10)
    moment = clock.now()
    engine = EventSourceMappingEngine(clock=clock)
    latest = engine.create_mapping(
        function=lambda event, context: None,
        function_name="latest",
        source=KafkaSource(log, "payments"),
        config=MappingConfig(starting_position="LATEST"),
    )
    at_time = engine.create_mapping(
        function=lambda event, context: None,
        function_name="at-time",
        source=KafkaSource(log, "payments"),
        config=MappingConfig(starting_position="AT_TIMESTAMP", starting_position_timestamp=moment),
    )
    log.produce("payments", None, b'{"n": 2}', partition=0)

    engine.drain()

    assert [values(inv.event) for inv in latest.invocations] == [[{"n": 2}]]
    assert [values(inv.event) for inv in at_time.invocations] == [[{"n": 2}]]


def test_kafka_rejects_stream_only_settings(log: KafkaCluster, clock: ManualClock) -> None:
    engine = EventSourceMappingEngine(clock=clock)
    for config in (MappingConfig(parallelization_factor=2),
                   MappingConfig(tumbling_window_in_seconds=60)):
        with pytest.raises(ValueError, match="Kinesis and DynamoDB only"):
            engine.create_mapping(
                function=lambda event, context: None,
                function_name="ledger",
                source=KafkaSource(log, "payments"),
                config=config,
            )


def test_a_missing_topic_is_refused(log: KafkaCluster, clock: ManualClock) -> None:
    engine = EventSourceMappingEngine(clock=clock)
    with pytest.raises(ValueError, match="Topic not found: nope"):
        engine.create_mapping(
            function=lambda event, context: None,
            function_name="ledger",
            source=KafkaSource(log, "nope"),
        )
