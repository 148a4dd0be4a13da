"""Rendered resources as a function sees them: something to grant access to.

The declaration binds an environment variable to a resource name with an access level; the
stack renders each resource once and wraps it here so `StreamProcessor` can grant exactly the
declared access without knowing whether a "stream" is a Kinesis stream or an MSK topic, and
can point an on-failure destination at a bucket, queue or topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import jsii
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

from cascata.cdk.access import Access, grant, nag_resource
from cascata.cdk.kafka import KafkaCluster
from cascata.pipeline import ResourceKind


class BoundResource(Protocol):
    """A rendered resource that a function can be granted access to."""

    @property
    def kind(self) -> ResourceKind: ...

    def grant_access(
        self, grantee: iam.IGrantable, *, access: Access, scope: IConstruct
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredResource:
    """A stream, table, bucket, queue or topic, possibly encrypted with the pipeline key."""

    kind: ResourceKind
    arn: str
    key: kms.IKey | None
    bucket: s3.IBucket | None = None
    indexes: tuple[str, ...] = ()
    """A table's declared global secondary indexes (reads may query them)."""

    def object_arn_finding(self, scope: IConstruct) -> str | None:
        """The cdk-nag finding an object-level (`bucket/*`) grant on this bucket raises."""
        if self.kind is not ResourceKind.BUCKET:
            return None
        return f"AwsSolutions-IAM5[Resource::{nag_resource(scope, f'{self.arn}/*')}]"

    def grant_access(self, grantee: iam.IGrantable, *, access: Access, scope: IConstruct) -> None:
        grant(
            grantee,
            kind=self.kind,
            access=access,
            resource_arn=self.arn,
            key=self.key,
            scope=scope,
            indexes=self.indexes,
        )


@dataclass(frozen=True, slots=True)
class KafkaTopic:
    """A declared stream rendered as an MSK topic of the same physical name."""

    cluster: KafkaCluster
    topic: str

    @property
    def kind(self) -> ResourceKind:
        return ResourceKind.STREAM

    def grant_access(self, grantee: iam.IGrantable, *, access: Access, scope: IConstruct) -> None:
        """Connect to the cluster and describe the topic; read it, and/or write it with the
        functions' idempotent producer (`cascata_runtime.kafka_sink`): WriteData on the
        topic, WriteDataIdempotently on the cluster (its only resource type)."""
        actions = ["kafka-cluster:DescribeTopic"]
        if access in ("read", "read_write"):
            actions.append("kafka-cluster:ReadData")
        cluster_actions = ["kafka-cluster:Connect"]
        if access in ("write", "read_write"):
            actions.append("kafka-cluster:WriteData")
            cluster_actions.append("kafka-cluster:WriteDataIdempotently")
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=cluster_actions, resources=[self.cluster.cluster_arn])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=actions, resources=[self.cluster.topic_arn(self.topic, consumer=scope)]
            )
        )


class PutOnlyS3OnFailureDestination(sources.S3OnFailureDestination):
    """`S3OnFailureDestination` without its `grantReadWrite`.

    The CDK class grants read, write and delete on the whole bucket; an event source mapping
    only needs to put objects (the grant is made by `grant_on_failure`).
    """

    def __init__(self, bucket: s3.IBucket) -> None:
        super().__init__(bucket)
        self._destination_arn = bucket.bucket_arn

    def bind(
        self, target: lambda_.IEventSourceMapping, target_handler: lambda_.IFunction
    ) -> lambda_.DlqDestinationConfig:
        del target, target_handler
        return lambda_.DlqDestinationConfig(destination=self._destination_arn)


@jsii.implements(lambda_.IEventSourceDlq)
class ArnOnFailureDestination:
    """An SQS queue or SNS topic destination whose permissions are granted separately."""

    def __init__(self, arn: str) -> None:
        self._arn = arn

    def bind(
        self, target: lambda_.IEventSourceMapping, target_handler: lambda_.IFunction
    ) -> lambda_.DlqDestinationConfig:
        del target, target_handler
        return lambda_.DlqDestinationConfig(destination=self._arn)


def on_failure_destination(
    resource: BoundResource, *, grantee: iam.IGrantable, scope: IConstruct
) -> lambda_.IEventSourceDlq:
    """The on-failure destination for a declared bucket, queue or topic, with its grant."""
    if not isinstance(resource, StoredResource) or resource.kind not in (
        ResourceKind.BUCKET,
        ResourceKind.QUEUE,
        ResourceKind.TOPIC,
    ):
        raise ValueError("an on-failure destination must be a declared bucket, queue or topic")
    extra: list[str] = []
    if resource.kind is ResourceKind.BUCKET:
        # Lambda checks the destination bucket exists (ListBucket) before writing records.
        extra.append("s3:ListBucket")
    grant(
        grantee,
        kind=resource.kind,
        access="write",
        resource_arn=resource.arn,
        key=resource.key,
        scope=scope,
        extra_actions=extra,
    )
    if resource.bucket is not None:
        return PutOnlyS3OnFailureDestination(resource.bucket)
    return ArnOnFailureDestination(resource.arn)
