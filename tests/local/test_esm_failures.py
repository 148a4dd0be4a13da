"""Failure handling of the Kinesis event source mapping: reference sections 2.4 to 2.6 and 6.

Each test reproduces a documented (or AWS-recorded) behaviour on moto's in-process Kinesis.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from cascata.local.clock import ManualClock
from cascata.local.esm import (
    DestinationWriter,
    EventSourceMappingEngine,
    Faults,
    KinesisBackendSource,
    MappingConfig,
    Outcome,
)
from tests.local.helpers import RBIF, REGION, failing, ok, payload, put, raising_on, seen

DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:dlq"


def engine_with(clock: ManualClock, **kwargs: Any) -> EventSourceMappingEngine:
    return EventSourceMappingEngine(clock=clock, seed=1, **kwargs)


# --- ReportBatchItemFailures (2.5) --------------------------------------------------------


def test_aws_recorded_example_sixth_record_fails_every_time(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given batch size 3, six records and a handler that always reports record 6,
    when the mapping drains with MaximumRetryAttempts 3 and ReportBatchItemFailures,
    then the function sees [1,2,3], [4,5,6], then [6] three more times, and exactly one
    on-failure record describes record 6 alone (AWS-recorded behaviour)."""
    make_stream()
    sequences = put(kinesis, "orders", [{"n": n} for n in range(1, 7)])
    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=failing(6),
        function_name="orders-consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(
            batch_size=3,
            maximum_retry_attempts=3,
            function_response_types=RBIF,
            on_failure_destination=DLQ_ARN,
        ),
    )

    engine.drain()

    assert seen(mapping.invocations) == [
        [{"n": 1}, {"n": 2}, {"n": 3}],
        [{"n": 4}, {"n": 5}, {"n": 6}],
        [{"n": 6}],
        [{"n": 6}],
        [{"n": 6}],
    ]
    (record,) = mapping.on_failure_records
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 4
    assert record["requestContext"]["functionArn"].endswith(":function:orders-consumer")
    assert record["requestContext"]["requestId"] == mapping.invocations[-1].request_id
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": None,
    }
    assert record["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    info = record["KinesisBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == str(sequences[5])
    assert info["shardId"] == "shardId-000000000000"
    assert info["streamArn"] == "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
    assert "payload" not in record  # only S3 destinations carry the records
    assert mapping.checkpoints == {"shardId-000000000000": sequences[5]}
    stats = mapping.stats
    assert (stats.invocations, stats.retries, stats.discarded, stats.on_failure_records) == (
        5,
        3,
        1,
        1,
    )


@pytest.mark.parametrize(
    "response",
    [None, {}, "", [], {"batchItemFailures": None}, {"batchItemFailures": []}, {"other": 1}],
    ids=["None", "empty-object", "empty-string", "empty-list", "null-list", "empty-failures",
         "no-key"],
)
def test_responses_that_mean_complete_success(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock, response: Any
) -> None:
    """Given ReportBatchItemFailures, when the handler returns one of the six AWS-validated
    success shapes (or an object without batchItemFailures), then the batch succeeds once."""
    make_stream()
    sequences = put(kinesis, "orders", [{"n": n} for n in range(1, 4)])
    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=lambda event, context: response,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=10, maximum_retry_attempts=2, function_response_types=RBIF),
    )

    engine.drain()

    assert [inv.classification for inv in mapping.invocations] == [Outcome.SUCCESS]
    assert mapping.checkpoints == {"shardId-000000000000": sequences[-1]}


@pytest.mark.parametrize(
    "entry",
    [{"itemIdentifier": ""}, {"itemIdentifier": None}, {"foo": 1}, {"itemIdentifier": "123"},
     {"itemIdentifier": 2}, "not-an-object"],
    ids=["empty", "null", "missing", "unknown", "number", "not-object"],
)
def test_invalid_item_identifiers_fail_the_whole_batch(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock, entry: Any
) -> None:
    """Given ReportBatchItemFailures, when a response names no record of the batch, then the
    whole batch is retried and, retries exhausted, reported with functionError null."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(1, 4)])
    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=lambda event, context: {"batchItemFailures": [entry]},
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(
            batch_size=10,
            maximum_retry_attempts=1,
            function_response_types=RBIF,
            on_failure_destination=DLQ_ARN,
        ),
    )

    engine.drain()

    assert seen(mapping.invocations) == [[{"n": 1}, {"n": 2}, {"n": 3}]] * 2
    assert {inv.classification for inv in mapping.invocations} == {Outcome.BATCH_FAILURE}
    (record,) = mapping.on_failure_records
    assert record["responseContext"]["functionError"] is None
    assert record["KinesisBatchInfo"]["batchSize"] == 3
    assert record["requestContext"]["approximateInvokeCount"] == 2


def test_lowest_sequence_wins_compared_as_integers(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given twelve records (sequence numbers 1..12), when the handler reports "10" and "9",
    then the retry starts at 9 (integer order, not string order, where "10" < "9") and the
    successful records after it are redelivered too."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(1, 13)])
    calls: list[list[int]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ns = [payload(r)["n"] for r in event["Records"]]
        calls.append(ns)
        if len(calls) == 1:
            return {"batchItemFailures": [{"itemIdentifier": "10"}, {"itemIdentifier": "9"}]}
        return {}

    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=handler,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=100, function_response_types=RBIF),
    )

    engine.drain()

    assert calls == [list(range(1, 13)), [9, 10, 11, 12]]
    assert mapping.invocations[0].failed_position == 9
    assert mapping.stats.succeeded == 12


def test_batch_item_failures_are_ignored_without_the_response_type(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a mapping without ReportBatchItemFailures, when the handler returns failures,
    then the return value is ignored and the batch counts as a success."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])
    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=failing(1),
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(maximum_retry_attempts=0),
    )

    engine.drain()

    assert [inv.classification for inv in mapping.invocations] == [Outcome.SUCCESS]
    assert mapping.stats.discarded == 0


def test_partial_failure_with_bisect_splits_at_the_reported_record(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given bisect and ReportBatchItemFailures both on, when the handler reports record 3
    of 1..4, then the batch is split at 3 (no halving) and only [3, 4] is retried."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(1, 5)])
    reported: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not reported:
            reported.append(3)
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][2]["kinesis"][
                "sequenceNumber"]}]}
        return {}

    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=handler,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(
            bisect_batch_on_function_error=True, function_response_types=RBIF
        ),
    )

    engine.drain()

    assert seen(mapping.invocations) == [[{"n": n} for n in range(1, 5)], [{"n": 3}, {"n": 4}]]
    assert mapping.stats.bisects == 0


# --- bisect, retries, age (2.6) -----------------------------------------------------------


def test_bisect_halves_left_first_without_spending_retries(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given bisect on and MaximumRetryAttempts 1, when record 3 of 1..4 always raises, then
    the batch halves ([1,2] then [3,4]), [3,4] halves again, [3] alone uses its own two
    attempts and is reported, and [4] still succeeds."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(1, 5)])
    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=raising_on(3),
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=1,
            on_failure_destination=DLQ_ARN,
        ),
    )

    engine.drain()

    assert [[p["n"] for p in batch] for batch in seen(mapping.invocations)] == [
        [1, 2, 3, 4],
        [1, 2],
        [3, 4],
        [3],
        [3],
        [4],
    ]
    (record,) = mapping.on_failure_records
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["KinesisBatchInfo"]["batchSize"] == 1
    assert mapping.stats.bisects == 2
    assert mapping.invocations[0].error == "ValueError: poison record {'n': 3}"
    assert mapping.invocations[0].traceback and "poison record" in mapping.invocations[0].traceback


def test_bisect_left_half_is_the_larger_one(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given five records and a handler that fails on any batch of more than three, when
    bisect is on, then the halves are [1,2,3] and [4,5] (left = ceil(n/2))."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(1, 6)])

    def handler(event: dict[str, Any], context: Any) -> None:
        if len(event["Records"]) > 3:
            raise RuntimeError("too many")

    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=handler,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(bisect_batch_on_function_error=True, maximum_retry_attempts=0),
    )

    engine.drain()

    assert [len(batch) for batch in seen(mapping.invocations)] == [5, 3, 2]
    assert mapping.stats.succeeded == 5


def test_retries_exhausted_then_the_shard_moves_on(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given MaximumRetryAttempts 2 without bisect, when the first batch always raises,
    then it is invoked three times, discarded whole, and the next batch is processed."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(1, 5)])
    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=raising_on(1),
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=2, maximum_retry_attempts=2),
    )

    engine.drain()

    assert [[p["n"] for p in b] for b in seen(mapping.invocations)] == [[1, 2]] * 3 + [[3, 4]]
    assert [inv.attempt for inv in mapping.invocations] == [1, 2, 3, 1]
    assert mapping.stats.discarded == 2
    assert mapping.stats.function_errors == 3
    assert mapping.on_failure_records == []  # no destination: skipped, not recorded
    assert mapping.checkpoints == {"shardId-000000000000": 4}


def test_records_older_than_the_maximum_age_are_never_invoked(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given MaximumRecordAgeInSeconds 60, when the records are two minutes old before the
    first attempt, then the function is not invoked and the on-failure record says
    RecordAgeExceeded with no responseContext."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])
    clock.advance(120)
    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(maximum_record_age_in_seconds=60, on_failure_destination=DLQ_ARN),
    )

    engine.drain()

    assert mapping.invocations == []
    (record,) = mapping.on_failure_records
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert "responseContext" not in record
    assert record["KinesisBatchInfo"]["batchSize"] == 2
    assert mapping.stats.expired == 2


def test_age_is_checked_before_every_retry(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given infinite retries and MaximumRecordAgeInSeconds 60, when every attempt fails and
    takes 25 seconds, then the records expire after the third attempt and are reported as
    RecordAgeExceeded."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])

    def slow_failure(event: dict[str, Any], context: Any) -> None:
        clock.advance(25)
        raise TimeoutError("downstream is down")

    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=slow_failure,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(maximum_record_age_in_seconds=60, on_failure_destination=DLQ_ARN),
    )

    engine.drain()

    assert len(mapping.invocations) == 3
    (record,) = mapping.on_failure_records
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert "responseContext" not in record


def test_throttles_are_retried_past_maximum_retry_attempts_until_records_expire(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given every invoke throttled and MaximumRetryAttempts 0, when the mapping drains,
    then the function never runs, retries continue regardless of the retry limit, and the
    records are reported once they exceed MaximumRecordAgeInSeconds."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    ran: list[int] = []
    engine = engine_with(clock, faults=Faults(throttle_rate=1.0))
    mapping = engine.create_mapping(
        function=lambda event, context: ran.append(1),
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(
            maximum_retry_attempts=0,
            maximum_record_age_in_seconds=60,
            on_failure_destination=DLQ_ARN,
        ),
    )

    engine.drain()

    assert ran == []
    assert mapping.stats.invocations == 0
    assert mapping.stats.throttles >= 60  # one-second back-off on the manual clock
    assert {inv.classification for inv in mapping.invocations} == {Outcome.INVOKE_ERROR}
    (record,) = mapping.on_failure_records
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"


def test_non_serializable_response_is_a_function_error(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a handler returning something JSON cannot encode, when it is invoked, then the
    invocation is a function error (Lambda cannot marshal it) and is retried."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=lambda event, context: {"when": object()},
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(maximum_retry_attempts=1),
    )

    engine.drain()

    assert [inv.classification for inv in mapping.invocations] == [Outcome.FUNCTION_ERROR] * 2
    assert mapping.invocations[0].error is not None
    assert mapping.invocations[0].error.startswith("Runtime.MarshalError")


def test_a_handler_running_past_its_timeout_fails(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a 3 s timeout, when the handler takes 5 s of clock time, then the invocation is
    a function error even though the handler returned."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])

    def slow(event: dict[str, Any], context: Any) -> None:
        clock.advance(5)

    engine = engine_with(clock)
    mapping = engine.create_mapping(
        function=slow,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(maximum_retry_attempts=0),
        timeout_s=3,
    )

    engine.drain()

    (invocation,) = mapping.invocations
    assert invocation.classification is Outcome.FUNCTION_ERROR
    assert invocation.error is not None and "timed out" in invocation.error


# --- fault injection ----------------------------------------------------------------------


def test_crash_after_the_handler_ran_redelivers_a_batch_whose_effects_landed(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given crash_rate 1, when a batch is invoked, then the handler's side effects happen
    but the invocation is a function error, so the batch is delivered again."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    effects: list[int] = []
    engine = engine_with(clock, faults=Faults(crash_rate=1.0))
    mapping = engine.create_mapping(
        function=lambda event, context: effects.append(1),
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(maximum_retry_attempts=1),
    )

    engine.drain()

    assert effects == [1, 1]
    assert all(inv.classification is Outcome.FUNCTION_ERROR for inv in mapping.invocations)
    assert "InjectedCrash" in (mapping.invocations[0].error or "")


def test_crash_before_the_handler_leaves_no_effects(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given crash_before_rate 1, when a batch is invoked, then the handler never runs."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    effects: list[int] = []
    engine = engine_with(clock, faults=Faults(crash_before_rate=1.0))
    mapping = engine.create_mapping(
        function=lambda event, context: effects.append(1),
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(maximum_retry_attempts=2),
    )

    engine.drain()

    assert effects == []
    assert mapping.stats.function_errors == 3


def run_with_faults(seed: int) -> list[tuple[Outcome, tuple[int, ...]]]:
    kinesis = boto3.client("kinesis", region_name=REGION)
    name = f"chaos-{seed}-{len(kinesis.list_streams()['StreamNames'])}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    for n in range(40):
        kinesis.put_record(StreamName=name, Data=json.dumps({"n": n}).encode(), PartitionKey=str(n))
    engine = EventSourceMappingEngine(
        clock=ManualClock(), seed=seed,
        faults=Faults(crash_rate=0.3, crash_before_rate=0.1, throttle_rate=0.2),
    )
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource(name),
        config=MappingConfig(batch_size=4, maximum_retry_attempts=-1),
    )
    engine.drain()
    assert mapping.stats.succeeded == 40
    return [(inv.classification, inv.positions) for inv in mapping.invocations]


def test_faults_are_deterministic_for_a_seed(moto_aws: None) -> None:
    """Given the same seed and rates, when two engines run the same stream, then they make
    the same fault decisions; a different seed makes different ones."""
    first, again, other = run_with_faults(5), run_with_faults(5), run_with_faults(6)

    assert first == again
    assert first != other
    assert {outcome for outcome, _ in first} >= {
        Outcome.SUCCESS,
        Outcome.FUNCTION_ERROR,
        Outcome.INVOKE_ERROR,
    }


def test_faults_reject_probabilities_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="crash_rate"):
        Faults(crash_rate=1.5)


# --- on-failure destinations (6) ----------------------------------------------------------


def test_s3_destination_gets_the_failed_records_under_the_documented_key(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given an S3 on-failure destination, when a record is discarded, then one object is
    written under aws/lambda/<UUID>/<shard>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid> whose body
    is the envelope plus `payload`, the event records that failed."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="failures")
    engine = engine_with(clock, destinations=DestinationWriter(s3=s3))
    mapping = engine.create_mapping(
        function=failing(2),
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(
            maximum_retry_attempts=0,
            function_response_types=RBIF,
            on_failure_destination="arn:aws:s3:::failures",
        ),
    )

    engine.drain()

    (obj,) = s3.list_objects_v2(Bucket="failures")["Contents"]
    pattern = (
        rf"aws/lambda/{mapping.uuid}/shardId-000000000000/\d{{4}}/\d\d/\d\d/"
        r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d-[0-9a-f-]{36}"
    )
    assert re.fullmatch(pattern, obj["Key"])
    body = json.loads(s3.get_object(Bucket="failures", Key=obj["Key"])["Body"].read())
    assert [payload(r) for r in body["payload"]["Records"]] == [{"n": 2}]
    assert body["payload"]["Records"][0]["eventSource"] == "aws:kinesis"
    assert body["KinesisBatchInfo"]["batchSize"] == 1
    assert mapping.on_failure_deliveries[0].location == f"s3://failures/{obj['Key']}"


def test_sqs_and_sns_destinations_get_the_envelope_without_payload(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given SQS and SNS destinations on two mappings, when a record is discarded on each,
    then the queue gets the envelope as the message body and the topic publishes it as the
    SNS Message, neither with the records."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    sqs = boto3.client("sqs", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    topic = sns.create_topic(Name="failures")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    engine = engine_with(clock, destinations=DestinationWriter(sqs=sqs, sns=sns))
    for name, destination in (("via-sqs", DLQ_ARN), ("via-sns", topic)):
        engine.create_mapping(
            function=raising_on(1),
            function_name=name,
            source=KinesisBackendSource("orders"),
            config=MappingConfig(maximum_retry_attempts=0, on_failure_destination=destination),
        )

    engine.drain()

    (message,) = sqs.receive_message(QueueUrl=dlq)["Messages"]
    from_sqs = json.loads(message["Body"])
    (notification,) = sqs.receive_message(QueueUrl=inbox)["Messages"]
    from_sns = json.loads(json.loads(notification["Body"])["Message"])
    for body in (from_sqs, from_sns):
        assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert body["responseContext"]["functionError"] == "Unhandled"
        assert "payload" not in body
        assert body["KinesisBatchInfo"]["batchSize"] == 1
    assert from_sqs["requestContext"]["functionArn"].endswith(":function:via-sqs")
    assert from_sns["requestContext"]["functionArn"].endswith(":function:via-sns")


class FlakySqs:
    """An SQS client whose first `failures` sends fail."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[str] = []

    def get_queue_url(self, **kwargs: Any) -> dict[str, str]:
        return {"QueueUrl": "https://sqs.local/dlq"}

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("queue unavailable")
        self.sent.append(kwargs["MessageBody"])
        return {"MessageId": "m-1"}


def test_a_failing_destination_holds_the_shard_until_it_accepts(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a destination that fails twice, when a record is discarded, then the delivery is
    retried (the checkpoint waits) until the record is delivered; nothing is lost."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])
    sqs = FlakySqs(failures=2)
    engine = engine_with(clock, destinations=DestinationWriter(sqs=sqs))
    mapping = engine.create_mapping(
        function=raising_on(1),
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(
            batch_size=1, maximum_retry_attempts=0, on_failure_destination=DLQ_ARN
        ),
    )

    engine.drain()

    assert len(sqs.sent) == 1
    assert mapping.stats.destination_errors == 2
    assert mapping.checkpoints == {"shardId-000000000000": 2}


def test_destination_without_a_client_is_rejected_at_creation(
    make_stream: Callable[..., str], clock: ManualClock
) -> None:
    make_stream()
    engine = engine_with(clock, destinations=DestinationWriter(sqs=FlakySqs(0)))
    with pytest.raises(ValueError, match="no s3 client"):
        engine.create_mapping(
            function=ok,
            function_name="consumer",
            source=KinesisBackendSource("orders"),
            config=MappingConfig(on_failure_destination="arn:aws:s3:::failures"),
        )

