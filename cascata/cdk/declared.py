"""The declared resources of a pipeline rendered in a stack: created, or referenced.

One function renders every stream (Kinesis, or topics on the MSK cluster), table, bucket,
queue and topic of the declaration for both kinds of stack: the base stack creates them all;
a version stack creates what the version owns (`Pipeline.owns`: its tables and derived
streams, in archive mode its replay streams) and references the rest, which the base stack
holds. Constructs are created in the stack's own scope, so their logical ids are those the
base stack has always had (the stateful ones are pinned besides: `cascata.cdk.naming`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aws_cdk import ArnFormat, DefaultStackSynthesizer, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from cascata.cdk.bindings import BoundResource, KafkaTopic, StoredResource
from cascata.cdk.config import StageConfig
from cascata.cdk.kafka import KafkaCluster
from cascata.cdk.naming import pascal
from cascata.cdk.storage import (
    AccessLogBucket,
    HistoryGuard,
    PipelineBucket,
    PipelineQueue,
    PipelineStream,
    PipelineTopic,
    ViewTable,
)
from cascata.pipeline import Broker, Pipeline, ResourceKind


@dataclass
class Declared:
    """What `render_declared` made: every resource by declared name, and what this stack
    created (a version stack's shared resources are referenced, not created)."""

    bound: dict[str, BoundResource] = field(default_factory=dict)
    """Every resource as the functions' bindings see it."""
    streams: dict[str, kinesis.IStream] = field(default_factory=dict)
    tables: dict[str, dynamodb.ITable] = field(default_factory=dict)
    buckets: dict[str, s3.IBucket] = field(default_factory=dict)
    created_streams: dict[str, kinesis.IStream] = field(default_factory=dict)
    created_tables: dict[str, dynamodb.ITable] = field(default_factory=dict)
    created_buckets: dict[str, s3.IBucket] = field(default_factory=dict)
    created_queues: dict[str, sqs.IQueue] = field(default_factory=dict)
    created_topics: dict[str, sns.ITopic] = field(default_factory=dict)
    kafka: KafkaCluster | None = None
    access_log_bucket: s3.IBucket | None = None


def role_arn(stack: Stack, name: str) -> str:
    """The ARN of a role of the stack's account by name (with its path, if any)."""
    return f"arn:{stack.partition}:iam::{stack.account}:role/{name.strip('/')}"


def deployment_role_arn(stack: Stack) -> str | None:
    """The role CloudFormation deploys the stack with (CDK's bootstrap), when known."""
    synthesizer = stack.synthesizer
    if not isinstance(synthesizer, DefaultStackSynthesizer):
        return None
    # The synthesizer's ARN is written for the assembly manifest, partition as a placeholder.
    return synthesizer.cloud_formation_execution_role_arn.replace(
        "${AWS::Partition}", stack.partition
    )


def render_declared(
    stack: Stack,
    *,
    pipeline: Pipeline,
    config: StageConfig,
    key: kms.IKey,
    removal: RemovalPolicy,
    retention: logs.RetentionDays,
    physical: Callable[[str], str],
    reference: Callable[[str], bool],
    kafka: KafkaCluster | None = None,
) -> Declared:
    """Render the declaration's resources in `stack`; `reference(name)` says which the base
    stack holds (a version stack only uses them), `physical(name)` names them. `kafka`: the
    base stack's cluster, which a version stack uses instead of creating one."""
    out = Declared()
    bound = out.bound

    streams = out.streams
    if config.broker is Broker.MSK and kafka is not None:
        out.kafka = kafka
        for stream in pipeline.streams:
            bound[stream.name] = KafkaTopic(cluster=out.kafka, topic=physical(stream.name))
    elif config.broker is Broker.MSK:
        out.kafka = KafkaCluster(
            stack,
            "Kafka",
            cluster_name=config.stack_name,
            vpc_cidr=config.kafka.vpc_cidr,
            zone_count=config.kafka.zone_count,
            encryption_key=key,
            log_retention=retention,
            removal_policy=removal,
        )
        for stream in pipeline.streams:
            bound[stream.name] = KafkaTopic(cluster=out.kafka, topic=physical(stream.name))
    else:
        for stream in pipeline.streams:
            rendered: kinesis.IStream
            if reference(stream.name):
                rendered = kinesis.Stream.from_stream_attributes(
                    stack,
                    f"{pascal(stream.name)}Stream",
                    stream_arn=stack.format_arn(
                        service="kinesis",
                        resource="stream",
                        resource_name=physical(stream.name),
                    ),
                    encryption_key=key,
                )
            else:
                rendered = PipelineStream(
                    stack,
                    f"{pascal(stream.name)}Stream",
                    declared=stream,
                    stream_name=physical(stream.name),
                    shard_count=config.shard_counts.get(stream.name),
                    retention=Duration.hours(config.stream_retention_hours),
                    encryption_key=key,
                    removal_policy=removal,
                ).pipeline_stream
                out.created_streams[stream.name] = rendered
            streams[stream.name] = rendered
            bound[stream.name] = StoredResource(
                kind=ResourceKind.STREAM,
                arn=rendered.stream_arn,
                key=key,
            )

    tables = out.tables
    for table in pipeline.tables:
        rendered_table: dynamodb.ITable
        if reference(table.name):
            rendered_table = dynamodb.Table.from_table_attributes(
                stack,
                f"{pascal(table.name)}Table",
                table_name=physical(table.name),
                encryption_key=key,
            )
        else:
            rendered_table = ViewTable(
                stack,
                f"{pascal(table.name)}Table",
                declared=table,
                table_name=physical(table.name),
                encryption_key=key,
                deletion_protection=config.deletion_protection,
                removal_policy=removal,
            ).view_table
            out.created_tables[table.name] = rendered_table
        tables[table.name] = rendered_table
        bound[table.name] = StoredResource(
            kind=ResourceKind.TABLE,
            arn=rendered_table.table_arn,
            key=key,
            indexes=tuple(index.name for index in table.indexes),
        )

    if any(not reference(b.name) for b in pipeline.buckets):
        out.access_log_bucket = AccessLogBucket(
            stack,
            "AccessLogs",
            expiration=Duration.days(config.access_log_expiration_days),
            removal_policy=removal,
        ).access_log_bucket
    # An archive keeps history for good, and only the break-glass role may delete it;
    # every other bucket expires its records.
    archive_buckets = {a.bucket for a in pipeline.archives}
    history_guard = HistoryGuard(
        break_glass_role_arn=role_arn(stack, config.break_glass_role),
        deployment_role_arn=deployment_role_arn(stack),
    )
    buckets = out.buckets
    for bucket in pipeline.buckets:
        rendered_bucket: s3.IBucket
        if reference(bucket.name):
            rendered_bucket = s3.Bucket.from_bucket_attributes(
                stack,
                f"{pascal(bucket.name)}Bucket",
                bucket_name=physical(bucket.name),
                encryption_key=key,
            )
        else:
            assert out.access_log_bucket is not None
            rendered_bucket = PipelineBucket(
                stack,
                f"{pascal(bucket.name)}Bucket",
                declared=bucket,
                bucket_name=physical(bucket.name),
                encryption_key=key,
                access_logs=out.access_log_bucket,
                expiration=(
                    None
                    if bucket.name in archive_buckets
                    else Duration.days(config.object_expiration_days)
                ),
                removal_policy=removal,
                guard=history_guard if bucket.name in archive_buckets else None,
            ).pipeline_bucket
            out.created_buckets[bucket.name] = rendered_bucket
        buckets[bucket.name] = rendered_bucket
        bound[bucket.name] = StoredResource(
            kind=ResourceKind.BUCKET,
            arn=rendered_bucket.bucket_arn,
            key=key,
            bucket=rendered_bucket,
        )
    for queue in pipeline.queues:
        rendered_queue: sqs.IQueue
        if reference(queue.name):
            rendered_queue = sqs.Queue.from_queue_attributes(
                stack,
                f"{pascal(queue.name)}Queue",
                queue_arn=stack.format_arn(
                    service="sqs",
                    resource=physical(queue.name),
                    arn_format=ArnFormat.NO_RESOURCE_NAME,
                ),
                key_arn=key.key_arn,
            )
        else:
            rendered_queue = PipelineQueue(
                stack,
                f"{pascal(queue.name)}Queue",
                declared=queue,
                queue_name=physical(queue.name),
                encryption_key=key,
                removal_policy=removal,
            ).pipeline_queue
            out.created_queues[queue.name] = rendered_queue
        bound[queue.name] = StoredResource(
            kind=ResourceKind.QUEUE,
            arn=rendered_queue.queue_arn,
            key=key,
        )
    for topic in pipeline.topics:
        rendered_topic: sns.ITopic
        if reference(topic.name):
            rendered_topic = sns.Topic.from_topic_attributes(
                stack,
                f"{pascal(topic.name)}Topic",
                topic_arn=stack.format_arn(
                    service="sns",
                    resource=physical(topic.name),
                    arn_format=ArnFormat.NO_RESOURCE_NAME,
                ),
                key_arn=key.key_arn,
            )
        else:
            rendered_topic = PipelineTopic(
                stack,
                f"{pascal(topic.name)}Topic",
                declared=topic,
                topic_name=physical(topic.name),
                encryption_key=key,
            ).pipeline_topic
            out.created_topics[topic.name] = rendered_topic
        bound[topic.name] = StoredResource(
            kind=ResourceKind.TOPIC,
            arn=rendered_topic.topic_arn,
            key=key,
        )

    return out
