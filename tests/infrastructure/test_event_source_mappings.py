"""Event source mappings: production defaults everywhere, and exactly what was declared.

A mapping that forgets bisect, retries forever or has no on-failure destination blocks a shard
for the whole retention period on one poison record and then drops it silently; these tests
make sure no mapping ever ships like that, in any stage or broker.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from cascata.pipeline import EventSource, ResourceKind

from .conftest import Synthesized


def test_every_mapping_reports_item_failures_bisects_and_is_bounded(
    every_stage: Synthesized,
) -> None:
    # Given the synthesized stage
    mappings = every_stage.of_type("AWS::Lambda::EventSourceMapping")
    retention_s = every_stage.config.stream_retention_seconds

    # Then there is one mapping per declared source of every processor
    assert len(mappings) == sum(len(p.sources) for p in every_stage.pipeline.processors)
    for logical_id, mapping in mappings.items():
        props = mapping["Properties"]
        # ... each reports partial batch failures and bisects failing batches
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], logical_id
        assert props["BisectBatchOnFunctionError"] is True, logical_id
        # ... retries are bounded (-1, Lambda's default, means until the record expires)
        assert 0 <= props["MaximumRetryAttempts"] <= 10_000, logical_id
        # ... records give up well before the stream would drop them
        assert 60 <= props["MaximumRecordAgeInSeconds"] <= retention_s // 2, logical_id
        # ... and the records given up on land somewhere that keeps them
        assert props["DestinationConfig"]["OnFailure"]["Destination"], logical_id


def _destination(synth: Synthesized, source: EventSource) -> dict[str, Any]:
    """The intrinsic that names the declared on-failure resource in the template."""
    declared = synth.pipeline.resource(source.on_failure)
    name = synth.physical(source.on_failure)
    if declared.kind is ResourceKind.BUCKET:
        return {"Fn::GetAtt": [synth.logical_id("AWS::S3::Bucket", "BucketName", name), "Arn"]}
    if declared.kind is ResourceKind.QUEUE:
        return {"Fn::GetAtt": [synth.logical_id("AWS::SQS::Queue", "QueueName", name), "Arn"]}
    return {"Ref": synth.logical_id("AWS::SNS::Topic", "TopicName", name)}


def _expected_kinesis_mapping(
    synth: Synthesized, processor: str, source: EventSource
) -> dict[str, Any]:
    """The AWS::Lambda::EventSourceMapping properties one declared source implies."""
    function_id, _ = synth.function(processor)
    stream_id = synth.logical_id("AWS::Kinesis::Stream", "Name", synth.physical(source.stream))
    return {
        "FunctionName": {"Ref": function_id},
        "EventSourceArn": {"Fn::GetAtt": [stream_id, "Arn"]},
        "StartingPosition": source.starting_position,
        "BatchSize": source.batch_size,
        "MaximumBatchingWindowInSeconds": source.batching_window_s,
        "ParallelizationFactor": source.parallelization_factor,
        "BisectBatchOnFunctionError": source.bisect_on_error,
        "MaximumRetryAttempts": source.max_retries,
        "MaximumRecordAgeInSeconds": source.max_record_age_s,
        "FunctionResponseTypes": (
            ["ReportBatchItemFailures"] if source.report_batch_item_failures else Match.absent()
        ),
        "TumblingWindowInSeconds": source.tumbling_window_s or Match.absent(),
        "DestinationConfig": {"OnFailure": {"Destination": _destination(synth, source)}},
        "FilterCriteria": (
            {
                "Filters": [
                    # FilterCriteria holds each pattern as compact JSON.
                    {"Pattern": json.dumps(json.loads(f), separators=(",", ":"))}
                    for f in source.filters
                ]
            }
            if source.filters
            else Match.absent()
        ),
    }


def _assert_mappings_match_declaration(synth: Synthesized) -> None:
    for proc in synth.pipeline.processors:
        # Given a processor, Then it has exactly one mapping per declared source...
        mappings = synth.mappings(proc.name)
        assert sorted(synth.reads(m) for m in mappings.values()) == sorted(
            s.stream for s in proc.sources
        ), proc.name
        for source in proc.sources:
            # ... and the mapping of each source (function and stream name it) has every
            # setting of that source
            synth.template.has_resource_properties(
                "AWS::Lambda::EventSourceMapping",
                _expected_kinesis_mapping(synth, proc.name, source),
            )


def test_mappings_equal_the_declared_ones(dev: Synthesized, prod: Synthesized) -> None:
    # Given the reference pipeline, Then every setting of every mapping is the declared one
    _assert_mappings_match_declaration(dev)
    _assert_mappings_match_declaration(prod)


def test_declared_filters_windows_positions_and_queue_destinations_render(
    features: Synthesized,
) -> None:
    # Given a declaration using filters, a tumbling window, LATEST and an SQS destination
    _assert_mappings_match_declaration(features)
    # Then the filter is present, the window is on, and the queue is the destination
    validate = features.mapping("validate")
    assert json.loads(validate["FilterCriteria"]["Filters"][0]["Pattern"]) == {
        "data": {"type": ["payment.made"], "version": [1]}
    }
    assert validate["StartingPosition"] == "LATEST"
    balances = features.mapping("balances")
    assert balances["TumblingWindowInSeconds"] == 60
    queue_id = features.logical_id(
        "AWS::SQS::Queue", "QueueName", features.physical("failed-balances")
    )
    assert balances["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [queue_id, "Arn"]
    }
    # ... and the two sources of profiles keep their own filters and destinations
    customers = features.mapping("profiles", "customers")
    payments = features.mapping("profiles", "payments-validated")
    assert "FilterCriteria" not in customers
    assert json.loads(payments["FilterCriteria"]["Filters"][0]["Pattern"]) == {
        "data": {"type": ["payment.made"], "version": [1]}
    }
    failures_id = features.logical_id(
        "AWS::S3::Bucket", "BucketName", features.physical("failures")
    )
    failed_profiles_id = features.logical_id(
        "AWS::SQS::Queue", "QueueName", features.physical("failed-profiles")
    )
    assert customers["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [failures_id, "Arn"]
    }
    assert payments["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [failed_profiles_id, "Arn"]
    }


def test_kafka_mappings_render_the_declared_settings_on_provisioned_pollers(
    msk: Synthesized,
) -> None:
    cluster_id = next(iter(msk.of_type("AWS::MSK::ServerlessCluster")))
    groups: list[str] = []
    for proc in msk.pipeline.processors:
        assert len(msk.mappings(proc.name)) == len(proc.sources), proc.name
        for position, source in enumerate(proc.sources):
            # Given a declared source of a processor on the MSK variant
            props = msk.mapping(proc.name, source.stream)
            # Then it reads the topic named after the declared stream...
            assert props["EventSourceArn"] == {"Fn::GetAtt": [cluster_id, "Arn"]}
            assert props["Topics"] == [msk.physical(source.stream)]
            # ... in a consumer group of its own: the function's name for the first source
            # (the offsets it has always committed), function-stream for the others
            group = props["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
            function_name = msk.physical(proc.name)
            assert group == (function_name if position == 0 else f"{function_name}-{source.stream}")
            groups.append(group)
            # ... with the declared batching and error handling
            assert props["StartingPosition"] == source.starting_position
            assert props["BatchSize"] == source.batch_size
            assert props["MaximumBatchingWindowInSeconds"] == source.batching_window_s
            assert props["MaximumRetryAttempts"] == source.max_retries
            assert props["MaximumRecordAgeInSeconds"] == source.max_record_age_s
            assert props["BisectBatchOnFunctionError"] is source.bisect_on_error
            # ... which Kafka mappings only honour with provisioned pollers
            assert props["ProvisionedPollerConfig"] == {
                "MinimumPollers": msk.config.kafka.min_pollers,
                "MaximumPollers": msk.config.kafka.max_pollers,
            }
            destination = props["DestinationConfig"]["OnFailure"]["Destination"]
            assert destination == _destination(msk, source)
            # ... and no Kinesis-only setting leaks in
            assert "ParallelizationFactor" not in props
            assert "TumblingWindowInSeconds" not in props
    assert len(groups) == len(set(groups)), "Lambda needs one consumer group per Kafka mapping"


def test_mapping_metrics_feed_the_on_failure_alarm(every_stage: Synthesized) -> None:
    for mapping in every_stage.of_type("AWS::Lambda::EventSourceMapping").values():
        assert "EventCount" in mapping["Properties"]["MetricsConfig"]["Metrics"]
