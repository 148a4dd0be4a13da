"""The archive: one Firehose delivery stream per declared `Archive`, into a bucket that never
forgets, in the layout `cascata_runtime.archive` writes locally, alarmed when it falls behind."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Match

from cascata.cdk.naming import pascal
from cascata.pipeline import Archive
from cascata_runtime.archive import Partition, firehose_transform

from .conftest import Synthesized

PREFIX = (
    "!{partitionKeyFromLambda:kind}/stream=!{partitionKeyFromLambda:stream}/"
    "date=!{partitionKeyFromLambda:date}/hour=!{partitionKeyFromLambda:hour}/"
)
ERROR_PREFIX = (
    "failed/!{firehose:error-output-type}/!{timestamp:yyyy}-!{timestamp:MM}-!{timestamp:dd}/"
)


def _substitute(pattern: str, values: dict[str, str], template: str) -> str:
    return re.sub(pattern, lambda m: values[m[1]], template)


def _delivery(synth: Synthesized, archive: Archive) -> tuple[str, dict[str, Any]]:
    name = f"cascata-{synth.config.stage}-archive-{archive.stream}"
    logical_id = synth.logical_id(
        "AWS::KinesisFirehose::DeliveryStream", "DeliveryStreamName", name
    )
    return logical_id, synth.resources[logical_id]["Properties"]


def _id_of(synth: Synthesized, resource_type: str, prop: str, name: str) -> str:
    return synth.logical_id(resource_type, prop, name)


def _arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_each_archive_is_a_firehose_from_its_stream_to_the_archive_bucket(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    key = _arn(next(iter(synth.of_type("AWS::KMS::Key"))))
    assert len(synth.of_type("AWS::KinesisFirehose::DeliveryStream")) == len(
        synth.pipeline.archives
    )
    for archive in synth.pipeline.archives:
        # Given a declared archive
        _, props = _delivery(synth, archive)
        stream = _id_of(synth, "AWS::Kinesis::Stream", "Name", synth.physical(archive.stream))
        bucket = _id_of(synth, "AWS::S3::Bucket", "BucketName", synth.physical(archive.bucket))
        transform = _id_of(
            synth,
            "AWS::Lambda::Function",
            "FunctionName",
            f"cascata-{synth.config.stage}-archive-{archive.stream}",
        )
        # Then Firehose reads its stream...
        assert props["DeliveryStreamType"] == "KinesisStreamAsSource"
        assert props["KinesisStreamSourceConfiguration"]["KinesisStreamARN"] == _arn(stream)
        s3 = props["ExtendedS3DestinationConfiguration"]
        # ... and writes the archive bucket in the documented layout, gzip, SSE-KMS
        assert s3["BucketARN"] == _arn(bucket)
        assert s3["Prefix"] == PREFIX
        assert s3["ErrorOutputPrefix"] == ERROR_PREFIX
        assert s3["CompressionFormat"] == "GZIP"
        assert s3["FileExtension"] == ".jsonl.gz"
        assert s3["EncryptionConfiguration"] == {"KMSEncryptionConfig": {"AWSKMSKeyARN": key}}
        assert s3["BufferingHints"] == {
            "IntervalInSeconds": archive.buffer_interval_s,
            "SizeInMBs": archive.buffer_size_mib,
        }
        # ... partitioned by the keys its Lambda transformation returns, no metadata extraction
        assert s3["DynamicPartitioningConfiguration"]["Enabled"] is True
        processing = s3["ProcessingConfiguration"]
        assert processing["Enabled"] is True
        (processor,) = processing["Processors"]
        assert processor["Type"] == "Lambda"
        parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
        assert parameters["LambdaArn"] == _arn(transform)
        assert s3["S3BackupMode"] == "Disabled"
        # ... and logs its delivery errors
        logging = s3["CloudWatchLoggingOptions"]
        assert logging["Enabled"] is True
        log_group = _id_of(
            synth,
            "AWS::Logs::LogGroup",
            "LogGroupName",
            f"/aws/kinesisfirehose/cascata-{synth.config.stage}-archive-{archive.stream}",
        )
        assert logging["LogGroupName"] == {"Ref": log_group}
        assert synth.resources[log_group]["Properties"]["KmsKeyId"] == key


def test_the_prefix_names_exactly_the_partition_keys_the_transformation_returns(
    dev: Synthesized,
) -> None:
    # Given a real Firehose transformation event for one good and one bad record
    good = json.dumps(
        {"event_id": "e-1", "type": "payment.made", "occurred_at": "2026-11-25T07:30:00Z"}
    ).encode()
    event = {
        "sourceKinesisStreamArn": "arn:aws:kinesis:eu-west-1:111122223333:stream/x",
        "records": [
            {
                "recordId": str(i),
                "approximateArrivalTimestamp": 1795564800000,
                "data": base64.b64encode(data).decode(),
                "kinesisRecordMetadata": {
                    "shardId": "shardId-000000000000",
                    "sequenceNumber": str(i),
                    "partitionKey": "alice",
                    "approximateArrivalTimestamp": 1795564800000,
                },
            }
            for i, data in enumerate((good, b"not json"))
        ],
    }
    out = firehose_transform(event)["records"]
    template = dev.resources[_delivery(dev, dev.pipeline.archives[0])[0]]["Properties"][
        "ExtendedS3DestinationConfiguration"
    ]["Prefix"]
    for record in out:
        # Then every record is kept (never ProcessingFailed)...
        assert record["result"] == "Ok"
        keys = record["metadata"]["partitionKeys"]
        # ... with exactly the keys the prefix uses...
        assert set(keys) == set(re.findall(r"!\{partitionKeyFromLambda:(\w+)\}", template))
        # ... and Firehose's prefix is the layout's own prefix for that partition
        rendered = _substitute(r"!\{partitionKeyFromLambda:(\w+)\}", keys, template)
        assert rendered == Partition(**keys).prefix
    assert [r["metadata"]["partitionKeys"]["kind"] for r in out] == ["events", "errors"]


def test_the_transformation_is_the_declared_handler_in_the_shared_asset(
    dev: Synthesized,
) -> None:
    code = {
        json.dumps(f["Properties"]["Code"]) for f in dev.of_type("AWS::Lambda::Function").values()
    }
    assert len(code) == 1, "the transformation ships in the one lambdas/ asset"
    for archive in dev.pipeline.archives:
        logical_id = _id_of(
            dev, "AWS::Lambda::Function", "FunctionName", f"cascata-dev-archive-{archive.stream}"
        )
        props = dev.resources[logical_id]["Properties"]
        assert props["Handler"] == archive.handler
        assert props["Runtime"] == "python3.12"
        assert props["TracingConfig"] == {"Mode": "Active"}
        variables = props["Environment"]["Variables"]
        # The declared stream name, which the layout's `stream=` uses, not the physical one
        assert variables["ARCHIVE_STREAM"] == archive.stream
        assert variables["PIPELINE_STAGE"] == "dev"


def _statements(synth: Synthesized, role_id: str) -> list[tuple[tuple[str, ...], str, Any]]:
    found = []
    for statement in synth.role_statements(role_id):
        actions = statement["Action"]
        actions = (actions,) if isinstance(actions, str) else tuple(actions)
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            found.append(
                (actions, json.dumps(resource, sort_keys=True), statement.get("Condition"))
            )
    return found


def test_the_delivery_role_may_read_the_stream_write_the_prefixes_invoke_and_log(
    dev: Synthesized,
) -> None:
    key = _arn(next(iter(dev.of_type("AWS::KMS::Key"))))
    region = dev.config.region
    for archive in dev.pipeline.archives:
        _, props = _delivery(dev, archive)
        role_id = props["KinesisStreamSourceConfiguration"]["RoleARN"]["Fn::GetAtt"][0]
        assert props["ExtendedS3DestinationConfiguration"]["RoleARN"] == _arn(role_id)
        # Given the role Firehose assumes (only from this account)
        trust = dev.resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust[0]["Principal"] == {"Service": "firehose.amazonaws.com"}
        assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": dev.config.account}}
        stream = _id_of(dev, "AWS::Kinesis::Stream", "Name", dev.physical(archive.stream))
        bucket = _id_of(dev, "AWS::S3::Bucket", "BucketName", dev.physical(archive.bucket))
        transform = _id_of(
            dev, "AWS::Lambda::Function", "FunctionName", f"cascata-dev-archive-{archive.stream}"
        )

        def objects(prefix: str, bucket: str = bucket) -> str:
            return json.dumps({"Fn::Join": ["", [_arn(bucket), f"/{prefix}/*"]]}, sort_keys=True)

        log_stream = json.dumps(
            {
                "Fn::Join": [
                    "",
                    [
                        f"arn:aws:logs:{region}:{dev.config.account}:log-group:",
                        {"Ref": f"LogGroupDeliveryArchive{pascal(archive.stream)}"},
                        ":log-stream:DestinationDelivery",
                    ],
                ]
            },
            sort_keys=True,
        )
        via = {
            service: {"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}}
            for service in ("kinesis", "s3")
        }
        # Then its policy is exactly this, statement by statement
        assert sorted(_statements(dev, role_id), key=str) == sorted(
            [
                (
                    (
                        "kinesis:DescribeStream",
                        "kinesis:GetRecords",
                        "kinesis:GetShardIterator",
                        "kinesis:ListShards",
                    ),
                    json.dumps(_arn(stream), sort_keys=True),
                    None,
                ),
                (("kms:Decrypt",), json.dumps(key, sort_keys=True), via["kinesis"]),
                *(
                    (("s3:AbortMultipartUpload", "s3:PutObject"), objects(p), None)
                    for p in ("events", "errors", "failed")
                ),
                (
                    ("s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"),
                    json.dumps(_arn(bucket), sort_keys=True),
                    None,
                ),
                (
                    ("kms:Decrypt", "kms:GenerateDataKey"),
                    json.dumps(key, sort_keys=True),
                    via["s3"],
                ),
                (
                    ("lambda:GetFunctionConfiguration", "lambda:InvokeFunction"),
                    json.dumps(_arn(transform), sort_keys=True),
                    None,
                ),
                (("logs:PutLogEvents",), log_stream, None),
            ],
            key=str,
        )


def test_the_archive_bucket_never_expires_anything(dev: Synthesized, prod: Synthesized) -> None:
    for synth in (dev, prod):
        (bucket_name,) = {synth.physical(a.bucket) for a in synth.pipeline.archives}
        bucket = synth.logical_id("AWS::S3::Bucket", "BucketName", bucket_name)
        props = synth.resources[bucket]["Properties"]
        # Given the archive bucket, Then no rule expires objects or their old versions...
        (rule,) = props["LifecycleConfiguration"]["Rules"]
        assert not {k for k in rule if "Expiration" in k}, rule
        # ... they move to Glacier Instant Retrieval (Athena and replays still read them)
        assert rule["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 90}]
        assert rule["NoncurrentVersionTransitions"] == [
            {"StorageClass": "GLACIER_IR", "TransitionInDays": 30}
        ]
        assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
        # ... and it is guarded like every other bucket
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert (
            props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
                "ServerSideEncryptionByDefault"
            ]["SSEAlgorithm"]
            == "aws:kms"
        )
        assert all(props["PublicAccessBlockConfiguration"].values())
        assert props["LoggingConfiguration"]["LogFilePrefix"] == "archive/"
        synth.template.has_resource_properties(
            "AWS::S3::BucketPolicy",
            {
                "Bucket": {"Ref": bucket},
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {"Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                            )
                        ]
                    )
                },
            },
        )
    # Every other bucket still expires its records
    others = [
        b
        for k, b in dev.of_type("AWS::S3::Bucket").items()
        if b["Properties"].get("BucketName") != dev.physical("archive")
    ]
    for bucket in others:
        (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        assert "ExpirationInDays" in rule


def test_archives_page_when_late_or_failing(dev: Synthesized) -> None:
    topic = next(
        k for k, t in dev.of_type("AWS::SNS::Topic").items() if "TopicName" not in t["Properties"]
    )
    for archive in dev.pipeline.archives:
        name = f"cascata-dev-archive-{archive.stream}"
        alarms = {
            a["Properties"]["MetricName"]: a["Properties"]
            for a in dev.of_type("AWS::CloudWatch::Alarm").values()
            if {"Name": "DeliveryStreamName", "Value": name}
            in a["Properties"].get("Dimensions", [])
        }
        # Then freshness, delivery, transformation and partition overflow each page...
        assert set(alarms) == {
            "DeliveryToS3.DataFreshness",
            "DeliveryToS3.Success",
            "ExecuteProcessing.Success",
            "PartitionCountExceeded",
        }
        freshness = alarms["DeliveryToS3.DataFreshness"]
        assert (freshness["Statistic"], freshness["ComparisonOperator"]) == (
            "Maximum",
            "GreaterThanThreshold",
        )
        assert freshness["Threshold"] == archive.buffer_interval_s + 900
        for ratio in ("DeliveryToS3.Success", "ExecuteProcessing.Success"):
            # ... a success ratio below 1 means some records failed
            assert alarms[ratio]["ComparisonOperator"] == "LessThanThreshold"
            assert (alarms[ratio]["Threshold"], alarms[ratio]["Statistic"]) == (1, "Minimum")
        for alarm in alarms.values():
            assert alarm["Namespace"] == "AWS/Firehose"
            assert alarm["AlarmActions"] == [{"Ref": topic}]
            assert alarm["OKActions"] == [{"Ref": topic}]


def test_dashboard_shows_the_archive(dev: Synthesized) -> None:
    (dashboard,) = dev.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "## Archive" in body
    for metric in (
        "DeliveryToS3.DataFreshness",
        "DeliveryToS3.Records",
        "ExecuteProcessing.Success",
    ):
        assert metric in body, metric


def test_msk_variant_has_no_firehose_and_no_audit(msk: Synthesized) -> None:
    # Firehose reads Kinesis streams; with broker=msk the archive is not rendered (documented)
    assert not msk.of_type("AWS::KinesisFirehose::DeliveryStream")
    assert not msk.of_type("AWS::Glue::Table")
    assert not msk.of_type("AWS::Athena::WorkGroup")
