"""Mapping settings: AWS defaults (reference 1.1), range checks (1), the pipeline declaration."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from cascata.local.clock import ManualClock
from cascata.local.esm import EventSourceMappingEngine, KinesisBackendSource, MappingConfig
from cascata.local.esm_config import destination_kind
from cascata.pipeline import EventSource
from payments.pipeline import PIPELINE
from tests.local.helpers import ok


def test_describe_fills_the_aws_defaults(make_stream: Callable[..., str]) -> None:
    """Given a mapping created with no settings but the starting position, when described,
    then it shows the defaults AWS fills in GetEventSourceMapping."""
    make_stream()
    engine = EventSourceMappingEngine(clock=ManualClock(1795466400.0))
    mapping = engine.create_mapping(
        function=ok,
        function_name="orders-consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(starting_position="LATEST"),
    )

    described = mapping.describe()

    assert described == {
        "UUID": mapping.uuid,
        "EventSourceMappingArn": (
            f"arn:aws:lambda:us-east-1:123456789012:event-source-mapping:{mapping.uuid}"
        ),
        "EventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/orders",
        "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:orders-consumer",
        "StartingPosition": "LATEST",
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": 1,
        "BisectBatchOnFunctionError": False,
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": -1,
        "TumblingWindowInSeconds": 0,
        "FunctionResponseTypes": [],
        "DestinationConfig": {"OnFailure": {}},
        "LastModified": 1795466400.0,
        "LastProcessingResult": "No records processed",
        "State": "Enabled",
        "StateTransitionReason": "User action",
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, "batch_size 0 is outside 1..10000"),
        ({"batch_size": 10_001}, "batch_size 10001"),
        ({"maximum_batching_window_in_seconds": 301}, "outside 0..300"),
        ({"parallelization_factor": 11}, "parallelization_factor 11"),
        ({"maximum_retry_attempts": -2}, "maximum_retry_attempts -2"),
        ({"maximum_retry_attempts": 10_001}, "maximum_retry_attempts 10001"),
        ({"maximum_record_age_in_seconds": 59}, "maximum_record_age_in_seconds 59"),
        ({"maximum_record_age_in_seconds": 604_801}, "604801"),
        ({"tumbling_window_in_seconds": 901}, "tumbling_window_in_seconds 901"),
        ({"starting_position": "AT_TIMESTAMP"}, "needs starting_position_timestamp"),
        ({"starting_position": "NOW"}, "is not TRIM_HORIZON"),
        ({"function_response_types": ("Everything",)}, "may only hold"),
        ({"filters": ("{nope",)}, "is not JSON"),
        ({"filters": ('{"data": ["x"]}',)}, "data part must be a JSON object"),
        ({"filters": ('{"a": "not a list"}',)}, "values in a pattern are lists or objects"),
        ({"filters": tuple('{"a": [1]}' for _ in range(6))}, "at most 5"),
        ({"on_failure_destination": "arn:aws:dynamodb:us-east-1:1:table/t"}, "not an S3"),
        ({"batch_size": True}, "batch_size must be an integer"),
    ],
)
def test_out_of_range_settings_are_refused_with_a_clear_message(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="invalid event source mapping configuration") as info:
        MappingConfig(**changes)
    assert message in str(info.value)


def test_valid_edges_are_accepted() -> None:
    config = MappingConfig(
        batch_size=10_000,
        maximum_batching_window_in_seconds=300,
        parallelization_factor=10,
        maximum_retry_attempts=10_000,
        maximum_record_age_in_seconds=60,
        tumbling_window_in_seconds=900,
        on_failure_destination="arn:aws:sns:us-east-1:123456789012:failures",
    )
    assert config.maximum_record_age_in_seconds == 60
    assert MappingConfig(maximum_record_age_in_seconds=604_800, maximum_retry_attempts=0)


def test_from_event_source_renders_every_declared_setting() -> None:
    """Given a declaration using every setting, when converted, then each lands on the
    Lambda field the CDK stacks render it to."""
    pattern = json.dumps({"data": {"type": ["payment.made"]}})
    source = EventSource(
        stream="payments-raw",
        starting_position="LATEST",
        batch_size=250,
        batching_window_s=2,
        parallelization_factor=4,
        bisect_on_error=True,
        max_retries=7,
        max_record_age_s=1800,
        report_batch_item_failures=True,
        tumbling_window_s=120,
        filters=(pattern,),
    )

    config = MappingConfig.from_event_source(source, on_failure_arn="arn:aws:s3:::failures")

    assert config == MappingConfig(
        batch_size=250,
        maximum_batching_window_in_seconds=2.0,
        starting_position="LATEST",
        parallelization_factor=4,
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=7,
        maximum_record_age_in_seconds=1800,
        tumbling_window_in_seconds=120,
        function_response_types=("ReportBatchItemFailures",),
        filters=(pattern,),
        on_failure_destination="arn:aws:s3:::failures",
    )


def test_every_declared_processor_converts() -> None:
    """Given the payments pipeline, when each processor's source is converted, then it is a
    valid mapping with the production defaults the declaration promises."""
    for processor in PIPELINE.processors:
        for source in processor.sources:
            config = MappingConfig.from_event_source(
                source, on_failure_arn="arn:aws:s3:::cascata-failures"
            )
            assert config.report_batch_item_failures
            assert config.bisect_batch_on_function_error
            assert config.maximum_retry_attempts != -1
            assert config.maximum_record_age_in_seconds != -1
            assert config.batch_size == source.batch_size


def test_a_zero_window_in_the_declaration_means_the_source_default() -> None:
    config = MappingConfig.from_event_source(EventSource(stream="s", batching_window_s=0))
    assert config.maximum_batching_window_in_seconds is None
    assert config.batching_window_for("kinesis") == 0.0
    assert config.batching_window_for("kafka") == 0.5


def test_update_keeps_checkpoints_and_refuses_create_only_fields(
    kinesis: Any, make_stream: Callable[..., str]
) -> None:
    make_stream()
    kinesis.put_record(StreamName="orders", Data=b"{}", PartitionKey="k")
    engine = EventSourceMappingEngine(clock=ManualClock())
    mapping = engine.create_mapping(
        function=ok, function_name="consumer", source=KinesisBackendSource("orders")
    )
    engine.drain()

    mapping.update(batch_size=5)
    engine.drain()

    assert mapping.config.batch_size == 5
    assert len(mapping.invocations) == 1
    with pytest.raises(ValueError, match="starting_position cannot be updated"):
        mapping.update(starting_position="LATEST")


def test_a_second_mapping_for_the_same_pair_conflicts(make_stream: Callable[..., str]) -> None:
    make_stream()
    engine = EventSourceMappingEngine(clock=ManualClock())
    first = engine.create_mapping(
        function=ok, function_name="consumer", source=KinesisBackendSource("orders")
    )
    with pytest.raises(ValueError, match=f"ResourceConflictException.*{first.uuid}"):
        engine.create_mapping(
            function=ok, function_name="consumer", source=KinesisBackendSource("orders")
        )


def test_mapping_uuids_are_reproducible_from_the_seed(make_stream: Callable[..., str]) -> None:
    make_stream()
    uuids = [
        EventSourceMappingEngine(clock=ManualClock(), seed=seed)
        .create_mapping(function=ok, function_name="c", source=KinesisBackendSource("orders"))
        .uuid
        for seed in (1, 1, 2)
    ]
    assert uuids[0] == uuids[1] != uuids[2]


@pytest.mark.parametrize(
    ("arn", "kind"),
    [
        ("arn:aws:s3:::bucket", "s3"),
        ("arn:aws:sqs:us-east-1:123456789012:queue", "sqs"),
        ("arn:aws:sns:us-east-1:123456789012:topic", "sns"),
    ],
)
def test_destination_kinds(arn: str, kind: str) -> None:
    assert destination_kind(arn) == kind
