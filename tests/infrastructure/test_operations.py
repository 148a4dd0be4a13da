"""Operations: every processor is watched, every alarm reaches the encrypted topic."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from .conftest import Synthesized


def _alarms_of(synth: Synthesized, processor: str) -> dict[str, dict[str, Any]]:
    """The processor's alarms keyed by metric name."""
    function_id, _ = synth.function(processor)
    mapping_id = next(
        k
        for k, m in synth.of_type("AWS::Lambda::EventSourceMapping").items()
        if m["Properties"]["FunctionName"] == {"Ref": function_id}
    )
    found: dict[str, dict[str, Any]] = {}
    for alarm in synth.of_type("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        dimensions = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
        if (
            dimensions.get("FunctionName") == {"Ref": function_id}
            or dimensions.get("EventSourceMappingUUID") == {"Ref": mapping_id}
            or dimensions.get("service") == processor
        ):
            found[props["MetricName"]] = props
    return found


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_each_kinesis_processor_has_the_five_signals_and_quarantine(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    thresholds = synth.config.alarms
    for proc in synth.pipeline.processors:
        alarms = _alarms_of(synth, proc.name)
        assert set(alarms) == {
            "IteratorAge",
            "Errors",
            "Throttles",
            "OnFailureDestinationDeliveredEventCount",
            "DestinationDeliveryFailures",
            "Quarantined",
        }, proc.name
        assert alarms["IteratorAge"]["Threshold"] == thresholds.iterator_age_ms
        assert alarms["IteratorAge"]["Statistic"] == "Maximum"
        assert alarms["Errors"]["Threshold"] == thresholds.errors
        assert alarms["Throttles"]["Threshold"] == thresholds.throttles
        assert alarms["Quarantined"]["Namespace"] == "Cascata"
        assert alarms["Quarantined"]["Threshold"] == thresholds.quarantined
        # Any record parked or lost on the failure path pages someone
        assert alarms["OnFailureDestinationDeliveredEventCount"]["Threshold"] == 0
        assert alarms["DestinationDeliveryFailures"]["Threshold"] == 0
        for alarm in alarms.values():
            assert alarm["Period"] == thresholds.period_minutes * 60
            assert alarm["TreatMissingData"] == "notBreaching"
            assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_kafka_processors_alarm_on_offset_lag(msk: Synthesized) -> None:
    for proc in msk.pipeline.processors:
        alarms = _alarms_of(msk, proc.name)
        assert "IteratorAge" not in alarms
        assert alarms["OffsetLag"]["Threshold"] == msk.config.alarms.offset_lag


def test_every_alarm_notifies_the_encrypted_alarm_topic(every_stage: Synthesized) -> None:
    topics = {
        k: t
        for k, t in every_stage.of_type("AWS::SNS::Topic").items()
        if "TopicName" not in t["Properties"]
    }
    (topic_id,) = topics
    assert "KmsMasterKeyId" in topics[topic_id]["Properties"]
    # ... whose policy lets CloudWatch publish (the TLS-only policy replaces SNS's default)
    every_stage.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "Topics": [{"Ref": topic_id}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": "sns:Publish",
                            }
                        )
                    ]
                )
            },
        },
    )
    alarms = every_stage.of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) == 6 * len(every_stage.pipeline.processors)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["AlarmDescription"]


def test_alarm_email_subscribes_when_configured(tmp_path: Any) -> None:
    from .conftest import synthesize

    synth = synthesize(tmp_path, nag=False, stage="dev", alarm_email="oncall@example.com")
    synth.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"}
    )


def test_dashboard_covers_streams_processors_and_views(dev: Synthesized) -> None:
    (dashboard,) = dev.of_type("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == dev.config.stack_name
    body = str(dashboard["Properties"]["DashboardBody"])
    for proc in dev.pipeline.processors:
        assert f"## {proc.name}" in body
    for metric in ("IncomingRecords", "IteratorAge", "Quarantined", "ConsumedWriteCapacityUnits"):
        assert metric in body, metric


def test_outputs_name_streams_tables_buckets_and_the_alarm_topic(dev: Synthesized) -> None:
    outputs = dev.json["Outputs"]
    values = [o["Value"] for o in outputs.values()]
    for stream in dev.pipeline.streams:
        logical_id = dev.logical_id("AWS::Kinesis::Stream", "Name", dev.physical(stream.name))
        assert {"Ref": logical_id} in values, stream.name
    for table in dev.pipeline.tables:
        logical_id = dev.logical_id("AWS::DynamoDB::Table", "TableName", dev.physical(table.name))
        assert {"Ref": logical_id} in values, table.name
    for bucket in dev.pipeline.buckets:
        logical_id = dev.logical_id("AWS::S3::Bucket", "BucketName", dev.physical(bucket.name))
        assert {"Ref": logical_id} in values, bucket.name
    assert "AlarmTopicArn" in outputs
