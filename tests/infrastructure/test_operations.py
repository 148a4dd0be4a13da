"""Operations: every function of every kind is watched, every alarm reaches the encrypted topic."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from .conftest import Synthesized

_ON_FAILURE_RECORDS = "OnFailureDestinationDeliveredEventCount"
"""Per event source mapping: one alarm per declared source."""
_PER_FUNCTION = {"Errors", "Throttles"}
_PER_PROCESSOR = _PER_FUNCTION | {"Quarantined", "DestinationDeliveryFailures"}
_PER_ARCHIVE = {
    "DeliveryToS3.DataFreshness",
    "DeliveryToS3.Success",
    "ExecuteProcessing.Success",
    "PartitionCountExceeded",
}
"""Per Firehose delivery stream; its transformation function adds the `_PER_FUNCTION` ones."""
_PER_SCHEDULED = _PER_FUNCTION | {
    "ApproximateNumberOfMessagesVisible",
    "InvocationsFailedToBeSentToDeadLetterCount",
}


def _alarms_of(synth: Synthesized, function: str) -> list[dict[str, Any]]:
    """The alarms on a function, its mappings, its quarantine metric or its dead-letter queue."""
    function_id, _ = synth.function(function)
    mapping_ids = set(synth.mappings(function))
    dlq = f"{synth.physical(function)}-dlq"
    dlq_ids = {
        k
        for k, q in synth.of_type("AWS::SQS::Queue").items()
        if q["Properties"].get("QueueName") == dlq
    }
    groups = {
        g["Properties"]["Name"]
        for g in synth.of_type("AWS::Scheduler::ScheduleGroup").values()
        for s in synth.of_type("AWS::Scheduler::Schedule").values()
        if s["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
        and s["Properties"]["GroupName"] == g["Properties"]["Name"]
    }
    found = []
    for alarm in synth.of_type("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        dimensions = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
        if (
            dimensions.get("FunctionName") == {"Ref": function_id}
            or dimensions.get("EventSourceMappingUUID", {}).get("Ref") in mapping_ids
            or dimensions.get("service") == function
            or dimensions.get("QueueName", {}).get("Fn::GetAtt", [None])[0] in dlq_ids
            or dimensions.get("ScheduleGroup") in groups
        ):
            found.append(props)
    return found


def _by_metric(alarms: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_metric = {a["MetricName"]: a for a in alarms}
    assert len(by_metric) == len(alarms), "one alarm per metric expected"
    return by_metric


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_each_kinesis_processor_has_the_signals_and_one_on_failure_alarm_per_source(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    thresholds = synth.config.alarms
    for proc in synth.pipeline.processors:
        alarms = _alarms_of(synth, proc.name)
        # Given a processor, Then each of its mappings has its own on-failure alarm...
        on_failure = [a for a in alarms if a["MetricName"] == _ON_FAILURE_RECORDS]
        assert sorted(a["Dimensions"][0]["Value"]["Ref"] for a in on_failure) == sorted(
            synth.mappings(proc.name)
        ), proc.name
        assert all(a["Threshold"] == 0 for a in on_failure)
        # ... and the function-level signals exist once
        alarms_by_metric = _by_metric([a for a in alarms if a not in on_failure])
        assert set(alarms_by_metric) == _PER_PROCESSOR | {"IteratorAge"}, proc.name
        assert alarms_by_metric["IteratorAge"]["Threshold"] == thresholds.iterator_age_ms
        assert alarms_by_metric["IteratorAge"]["Statistic"] == "Maximum"
        assert alarms_by_metric["Errors"]["Threshold"] == thresholds.errors
        assert alarms_by_metric["Throttles"]["Threshold"] == thresholds.throttles
        assert alarms_by_metric["Quarantined"]["Namespace"] == "Cascata"
        assert alarms_by_metric["Quarantined"]["Threshold"] == thresholds.quarantined
        # Any record lost on the failure path pages someone
        assert alarms_by_metric["DestinationDeliveryFailures"]["Threshold"] == 0
        for alarm in alarms:
            assert alarm["Period"] == thresholds.period_minutes * 60
            assert alarm["TreatMissingData"] == "notBreaching"
            assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    # The two-source processor really has two on-failure alarms
    profiles = _alarms_of(synth, "profiles")
    assert [a["MetricName"] for a in profiles].count(_ON_FAILURE_RECORDS) == 2


def test_kafka_processors_alarm_on_offset_lag(msk: Synthesized) -> None:
    for proc in msk.pipeline.processors:
        alarms = {a["MetricName"]: a for a in _alarms_of(msk, proc.name)}
        assert "IteratorAge" not in alarms
        assert alarms["OffsetLag"]["Threshold"] == msk.config.alarms.offset_lag


def test_scheduled_functions_alarm_on_errors_throttles_and_failed_runs(dev: Synthesized) -> None:
    for scheduled in dev.pipeline.scheduled:
        # Given a scheduled function
        alarms = _by_metric(_alarms_of(dev, scheduled.name))
        # Then errors, throttles, the dead-letter queue and lost dead letters all page
        assert set(alarms) == _PER_SCHEDULED, scheduled.name
        dlq = alarms["ApproximateNumberOfMessagesVisible"]
        assert (dlq["Namespace"], dlq["Threshold"], dlq["Statistic"]) == ("AWS/SQS", 0, "Maximum")
        lost = alarms["InvocationsFailedToBeSentToDeadLetterCount"]
        assert (lost["Namespace"], lost["Threshold"]) == ("AWS/Scheduler", 0)
        assert alarms["Errors"]["Threshold"] == dev.config.alarms.errors


def test_api_functions_and_the_api_alarm(dev: Synthesized) -> None:
    for api in dev.pipeline.apis:
        assert set(_by_metric(_alarms_of(dev, api.name))) == _PER_FUNCTION, api.name
    (api_id,) = dev.of_type("AWS::ApiGatewayV2::Api")
    server_errors = [
        a["Properties"]
        for a in dev.of_type("AWS::CloudWatch::Alarm").values()
        if {"Name": "ApiId", "Value": {"Ref": api_id}} in a["Properties"].get("Dimensions", [])
    ]
    assert [(a["Namespace"], a["MetricName"]) for a in server_errors] == [("AWS/ApiGateway", "5xx")]
    assert {"Name": "Stage", "Value": "$default"} in server_errors[0]["Dimensions"]


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
    pipeline = every_stage.pipeline
    alarms = every_stage.of_type("AWS::CloudWatch::Alarm")
    archives = len(every_stage.of_type("AWS::KinesisFirehose::DeliveryStream"))
    # Every alarm belongs to a function, its mappings, the API or an archive: none is orphaned
    # or missing
    expected = (
        sum(len(_PER_PROCESSOR) + 1 + len(p.sources) for p in pipeline.processors)
        + len(_PER_SCHEDULED) * len(pipeline.scheduled)
        + len(_PER_FUNCTION) * len(pipeline.apis)
        + (1 if pipeline.apis else 0)
        + (len(_PER_ARCHIVE) + len(_PER_FUNCTION)) * archives
    )
    assert archives == (0 if every_stage.config.broker.value == "msk" else len(pipeline.archives))
    assert len(alarms) == expected
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


def test_dashboard_covers_streams_functions_the_api_and_views(dev: Synthesized) -> None:
    (dashboard,) = dev.of_type("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == dev.config.stack_name
    body = str(dashboard["Properties"]["DashboardBody"])
    for fn in (*dev.pipeline.processors, *dev.pipeline.scheduled):
        assert f"## {fn.name}" in body, fn.name
    assert "## HTTP API" in body
    for metric in (
        "IncomingRecords",
        "IteratorAge",
        "Quarantined",
        "ConsumedWriteCapacityUnits",
        "ApproximateNumberOfMessagesVisible",
        "IntegrationLatency",
        "5xx",
    ):
        assert metric in body, metric


def test_outputs_name_every_resource_function_and_the_api_url(dev: Synthesized) -> None:
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
    for topic in dev.pipeline.topics:
        logical_id = dev.logical_id("AWS::SNS::Topic", "TopicName", dev.physical(topic.name))
        assert {"Ref": logical_id} in values, topic.name
    for fn in dev.pipeline.functions:
        function_id, _ = dev.function(fn.name)
        assert {"Ref": function_id} in values, fn.name
    assert "AlarmTopicArn" in outputs
    # The API's URL is its $default stage at the root of the execute-api endpoint
    (api_id,) = dev.of_type("AWS::ApiGatewayV2::Api")
    url = outputs["HttpApiUrl"]["Value"]["Fn::Join"][1]
    assert url[0] == "https://" and url[1] == {"Ref": api_id}
    assert url[2] == f".execute-api.{dev.config.region}."
    assert url[-1] == "/"
