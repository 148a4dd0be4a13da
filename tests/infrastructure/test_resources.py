"""Declared resources exist with their keys, encryption, recovery and the stage's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from payments.pipeline import PIPELINE

from .conftest import Synthesized, synthesize

STATEFUL_TYPES = (
    "AWS::Kinesis::Stream",
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::KMS::Key",
    "AWS::Logs::LogGroup",
)


def _key_ref(synth: Synthesized) -> dict[str, Any]:
    (key_id,) = synth.of_type("AWS::KMS::Key")
    return {"Fn::GetAtt": [key_id, "Arn"]}


def test_key_is_customer_managed_rotating_and_serves_alarms_and_logs(dev: Synthesized) -> None:
    dev.template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "PendingWindowInDays": 30,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like({"Principal": {"Service": "cloudwatch.amazonaws.com"}}),
                        Match.object_like(
                            {"Principal": {"Service": f"logs.{dev.config.region}.amazonaws.com"}}
                        ),
                    ]
                )
            },
        },
    )
    dev.template.has_resource_properties(
        "AWS::KMS::Alias", {"AliasName": f"alias/{dev.config.stack_name}"}
    )


def test_streams_are_declared_encrypted_and_retained_per_stage(
    dev: Synthesized, prod: Synthesized
) -> None:
    for synth in (dev, prod):
        assert len(synth.of_type("AWS::Kinesis::Stream")) == len(PIPELINE.streams)
        for stream in PIPELINE.streams:
            synth.template.has_resource_properties(
                "AWS::Kinesis::Stream",
                {
                    "Name": synth.physical(stream.name),
                    "RetentionPeriodHours": synth.config.stream_retention_hours,
                    "StreamEncryption": {"EncryptionType": "KMS", "KeyId": _key_ref(synth)},
                },
            )
    # dev pays for one provisioned shard per stream, prod scales on demand
    for rendered in dev.of_type("AWS::Kinesis::Stream").values():
        assert rendered["Properties"]["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
        assert rendered["Properties"]["ShardCount"] == 1
    for rendered in prod.of_type("AWS::Kinesis::Stream").values():
        assert rendered["Properties"]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
        assert "ShardCount" not in rendered["Properties"]
    assert (dev.config.stream_retention_hours, prod.config.stream_retention_hours) == (24, 168)


def test_shard_counts_and_retention_come_from_context(tmp_path: Path) -> None:
    # Given CLI-style string overrides on top of prod's defaults
    synth = synthesize(
        tmp_path,
        nag=False,
        stage="prod",
        shard_counts='{"payments-raw": 4}',
        stream_retention_hours="48",
    )
    # Then the named stream is provisioned with 4 shards and the others stay on demand
    raw = synth.logical_id("AWS::Kinesis::Stream", "Name", synth.physical("payments-raw"))
    for logical_id, stream in synth.of_type("AWS::Kinesis::Stream").items():
        props = stream["Properties"]
        assert props["RetentionPeriodHours"] == 48
        if logical_id == raw:
            assert props["ShardCount"] == 4
            assert props["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
        else:
            assert props["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}


@pytest.mark.parametrize("variant", ["dev", "features"])
def test_tables_have_declared_keys_indexes_ttl_pitr_and_the_key(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    assert len(synth.of_type("AWS::DynamoDB::Table")) == len(synth.pipeline.tables)
    for table in synth.pipeline.tables:
        key_schema = [{"AttributeName": table.partition_key, "KeyType": "HASH"}]
        if table.sort_key:
            key_schema.append({"AttributeName": table.sort_key, "KeyType": "RANGE"})
        indexes = [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    *(
                        [{"AttributeName": index.sort_key, "KeyType": "RANGE"}]
                        if index.sort_key
                        else []
                    ),
                ],
                # As declared: ALL answers reads from the index, KEYS_ONLY only finds items
                "Projection": {"ProjectionType": index.projection},
            }
            for index in table.indexes
        ]
        synth.template.has_resource_properties(
            "AWS::DynamoDB::Table",
            {
                "TableName": synth.physical(table.name),
                "KeySchema": key_schema,
                "GlobalSecondaryIndexes": indexes or Match.absent(),
                "BillingMode": "PAY_PER_REQUEST",
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {
                    "SSEEnabled": True,
                    "SSEType": "KMS",
                    "KMSMasterKeyId": _key_ref(synth),
                },
                "TimeToLiveSpecification": (
                    {"AttributeName": table.ttl_attribute, "Enabled": True}
                    if table.ttl_attribute
                    else Match.absent()
                ),
            },
        )
        # Every key attribute, of the table and its indexes, is declared as a string
        (rendered,) = [
            t["Properties"]
            for t in synth.of_type("AWS::DynamoDB::Table").values()
            if t["Properties"]["TableName"] == synth.physical(table.name)
        ]
        keys = {table.partition_key, table.sort_key} | {
            k for i in table.indexes for k in (i.partition_key, i.sort_key)
        }
        assert sorted(rendered["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
            {"AttributeName": k, "AttributeType": "S"} for k in sorted(keys - {None})
        ]
    # The reference pipeline really declares composite keys and indexes
    assert any(t.indexes for t in synth.pipeline.tables)


def test_buckets_are_encrypted_private_tls_only_versioned_logged_and_expiring(
    dev: Synthesized,
) -> None:
    (log_bucket,) = [
        k
        for k, b in dev.of_type("AWS::S3::Bucket").items()
        if "LoggingConfiguration" not in b["Properties"]
    ]
    archived = {a.bucket for a in PIPELINE.archives}
    for bucket in PIPELINE.buckets:
        dev.template.has_resource_properties(
            "AWS::S3::Bucket",
            {
                "BucketName": dev.physical(bucket.name),
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {
                            "BucketKeyEnabled": True,
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": _key_ref(dev),
                            },
                        }
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                "LoggingConfiguration": {
                    "DestinationBucketName": {"Ref": log_bucket},
                    "LogFilePrefix": f"{bucket.name}/",
                },
                # (the archive's lifecycle is its own test's)
                "LifecycleConfiguration": (
                    Match.any_value()
                    if bucket.name in archived
                    else {
                        "Rules": [
                            Match.object_like(
                                {
                                    "ExpirationInDays": dev.config.object_expiration_days,
                                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                                    "Status": "Enabled",
                                }
                            )
                        ]
                    }
                ),
            },
        )
    # Every bucket, the access log bucket included, refuses plain HTTP
    for logical_id in dev.of_type("AWS::S3::Bucket"):
        dev.template.has_resource_properties(
            "AWS::S3::BucketPolicy",
            {
                "Bucket": {"Ref": logical_id},
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                },
            },
        )


def _denies_plain_http(synth: Synthesized, policy_type: str, target: str, ref: Any) -> None:
    synth.template.has_resource_properties(
        policy_type,
        {
            target: [ref],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_declared_topics_are_encrypted_and_tls_only(dev: Synthesized) -> None:
    assert dev.pipeline.topics
    for topic in dev.pipeline.topics:
        topic_id = dev.logical_id("AWS::SNS::Topic", "TopicName", dev.physical(topic.name))
        assert dev.resources[topic_id]["Properties"]["KmsMasterKeyId"] == _key_ref(dev)
        _denies_plain_http(dev, "AWS::SNS::TopicPolicy", "Topics", {"Ref": topic_id})


def test_declared_queues_are_encrypted_and_tls_only(features: Synthesized) -> None:
    key = _key_ref(features)
    for queue in features.pipeline.queues:
        features.template.has_resource_properties(
            "AWS::SQS::Queue",
            {
                "QueueName": features.physical(queue.name),
                "KmsMasterKeyId": key,
                "RedrivePolicy": Match.object_like({"maxReceiveCount": 5}),
            },
        )
    for queue_id in features.of_type("AWS::SQS::Queue"):
        _denies_plain_http(features, "AWS::SQS::QueuePolicy", "Queues", {"Ref": queue_id})


def test_prod_retains_and_protects_state_dev_does_not(dev: Synthesized, prod: Synthesized) -> None:
    for resource_type in STATEFUL_TYPES:
        for resource in prod.of_type(resource_type).values():
            assert resource["DeletionPolicy"] == "Retain", resource_type
            assert resource["UpdateReplacePolicy"] == "Retain", resource_type
        for resource in dev.of_type(resource_type).values():
            assert resource["DeletionPolicy"] == "Delete", resource_type
    for table in prod.of_type("AWS::DynamoDB::Table").values():
        assert table["Properties"]["DeletionProtectionEnabled"] is True
    for table in dev.of_type("AWS::DynamoDB::Table").values():
        assert table["Properties"]["DeletionProtectionEnabled"] is False
    assert prod.stack.termination_protection is True
    assert dev.stack.termination_protection is False


def test_msk_variant_is_a_private_iam_authenticated_serverless_cluster(msk: Synthesized) -> None:
    # Given the MSK variant, Then there are no Kinesis streams but one serverless cluster
    assert not msk.of_type("AWS::Kinesis::Stream")
    msk.template.resource_count_is("AWS::MSK::ServerlessCluster", 1)
    subnets = msk.of_type("AWS::EC2::Subnet")
    assert len(subnets) == msk.config.kafka.zone_count
    # ... in private subnets only (no internet or NAT gateway anywhere)
    assert all(not s["Properties"]["MapPublicIpOnLaunch"] for s in subnets.values())
    msk.template.resource_count_is("AWS::EC2::InternetGateway", 0)
    msk.template.resource_count_is("AWS::EC2::NatGateway", 0)
    msk.template.has_resource_properties(
        "AWS::MSK::ServerlessCluster",
        {
            "ClusterName": msk.config.stack_name,
            "ClientAuthentication": {"Sasl": {"Iam": {"Enabled": True}}},
            "VpcConfigs": [
                {
                    "SubnetIds": [{"Ref": s} for s in sorted(subnets)],
                    "SecurityGroups": Match.any_value(),
                }
            ],
        },
    )
    # ... with the endpoints Lambda's Kafka pollers need, and flow logs
    services = {
        e["Properties"]["ServiceName"]
        if isinstance(e["Properties"]["ServiceName"], str)
        else str(e["Properties"]["ServiceName"])
        for e in msk.of_type("AWS::EC2::VPCEndpoint").values()
    }
    for service in ("lambda", "sts", "s3", "dynamodb"):
        assert any(service in s for s in services), service
    msk.template.resource_count_is("AWS::EC2::FlowLog", 1)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_log_groups_follow_the_stage_retention(stage: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(stage)
    for log_group in synth.of_type("AWS::Logs::LogGroup").values():
        assert log_group["Properties"]["RetentionInDays"] == synth.config.log_retention_days
