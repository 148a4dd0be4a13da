"""The pipeline's customer-managed KMS key.

One key per stage encrypts streams, tables, buckets, queues, topics and log groups: one key
policy to audit, one rotation schedule, and a single place where a service is allowed to use
it. AWS services that act on their own behalf (CloudWatch publishing alarms to the encrypted
topic, CloudWatch Logs writing encrypted log groups) are allowed here, scoped to this account
and region; everything else is granted on identity policies per function.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from cascata.cdk.naming import pin, stable_id


class PipelineKey(Construct):
    """A rotating customer-managed key with the service statements the pipeline needs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.pipeline_key = kms.Key(
            self,
            "Key",
            description=f"Encrypts every stream, table, bucket and log group of {alias}",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            # The longest waiting period: a deleted key makes every encrypted record unreadable.
            pending_window=Duration.days(30),
        )
        pin(self.pipeline_key, stable_id("PipelineKey"))
        self.pipeline_key.add_alias(f"alias/{alias}")
        # CloudWatch alarms publish to the KMS-encrypted alarm topic as the CloudWatch service.
        self.pipeline_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        # CloudWatch Logs encrypts log groups with the key, only for this account's log groups.
        self.pipeline_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsForThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:DescribeKey",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"
                        )
                    }
                },
            )
        )
