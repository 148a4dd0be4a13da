"""Where a processor reads from: a Kinesis stream or an MSK topic, behind one interface.

Each source turns the declared `EventSource` into an event source mapping on a function,
grants the function what the mapping needs to read, and says which metric measures how far
behind the mapping is (iterator age for Kinesis, offset lag for Kafka). The settings that
Lambda supports for both brokers are rendered identically; the ones Kafka lacks (tumbling
windows) are refused rather than silently dropped; the parallelization factor, a Kinesis
throughput knob with no Kafka equivalent (Kafka scales with partitions), is not rendered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from cascata.cdk.access import grant
from cascata.cdk.kafka import KafkaCluster
from cascata.pipeline import EventSource, ResourceKind

_STARTING_POSITION = {
    "TRIM_HORIZON": lambda_.StartingPosition.TRIM_HORIZON,
    "LATEST": lambda_.StartingPosition.LATEST,
    "AT_TIMESTAMP": lambda_.StartingPosition.AT_TIMESTAMP,
}


class StreamSource(Protocol):
    """A broker-specific way to attach a declared `EventSource` to a function."""

    def attach(
        self,
        scope: Construct,
        *,
        construct_id: str,
        function: lambda_.Function,
        settings: EventSource,
        on_failure: lambda_.IEventSourceDlq,
        consumer_group: str,
    ) -> lambda_.EventSourceMapping:
        """Create the mapping (as `construct_id` where the broker lets us name it)."""
        ...

    def lag_metric(self, function: lambda_.IFunction, *, period: Duration) -> cloudwatch.Metric:
        """How far behind the mapping is, as CloudWatch measures it."""
        ...

    @property
    def lag_unit(self) -> str: ...


def _filters(settings: EventSource) -> list[Mapping[str, Any]] | None:
    # FilterCriteria.filter re-serializes each declared pattern into the JSON string
    # FilterCriteria holds (a raw dict here would render an empty filter).
    return [lambda_.FilterCriteria.filter(json.loads(p)) for p in settings.filters] or None


def _seconds(value: int) -> Duration | None:
    return Duration.seconds(value) if value > 0 else None


def _max_record_age(settings: EventSource) -> Duration | None:
    # -1 is Lambda's "no age limit", expressed by leaving the property out (CDK refuses -1).
    age = settings.max_record_age_s
    return None if age == -1 else Duration.seconds(age)


@dataclass(frozen=True, slots=True)
class KinesisSource:
    """A Kinesis data stream read through a standard (shared-throughput) iterator."""

    stream: kinesis.IStream
    encryption_key: kms.IKey

    lag_unit = "ms"

    def attach(
        self,
        scope: Construct,
        *,
        construct_id: str,
        function: lambda_.Function,
        settings: EventSource,
        on_failure: lambda_.IEventSourceDlq,
        consumer_group: str,
    ) -> lambda_.EventSourceMapping:
        del consumer_group  # Kinesis mappings keep their own checkpoint per shard.
        # The L2 mapping (not KinesisEventSource) so that the read grant is ours: exact
        # actions and a kms:ViaService condition, instead of Stream.grantRead.
        mapping = lambda_.EventSourceMapping(
            scope,
            construct_id,
            target=function,
            event_source_arn=self.stream.stream_arn,
            starting_position=_STARTING_POSITION[settings.starting_position],
            starting_position_timestamp=settings.starting_position_timestamp,
            batch_size=settings.batch_size,
            max_batching_window=Duration.seconds(settings.batching_window_s),
            parallelization_factor=settings.parallelization_factor,
            bisect_batch_on_error=settings.bisect_on_error,
            retry_attempts=settings.max_retries,
            max_record_age=_max_record_age(settings),
            report_batch_item_failures=settings.report_batch_item_failures,
            tumbling_window=_seconds(settings.tumbling_window_s),
            filters=_filters(settings),
            on_failure=on_failure,
            support_s3_on_failure_destination=True,
            # EventCount metrics give OnFailureDestinationDeliveredEventCount per mapping.
            metrics_config=lambda_.MetricsConfig(metrics=[lambda_.MetricType.EVENT_COUNT]),
        )
        grant(
            function,
            kind=ResourceKind.STREAM,
            access="read",
            resource_arn=self.stream.stream_arn,
            key=self.encryption_key,
            scope=scope,
        )
        # Lambda checks its permissions when the mapping is created: the policy must exist.
        if function.role is not None:
            mapping.node.add_dependency(function.role)
        return mapping

    def lag_metric(self, function: lambda_.IFunction, *, period: Duration) -> cloudwatch.Metric:
        return function.metric("IteratorAge", statistic="Maximum", period=period)


@dataclass(frozen=True, slots=True)
class KafkaTopicSource:
    """An MSK Serverless topic read by provisioned Kafka pollers with IAM authentication.

    Provisioned pollers are what make bisect, bounded retries, maximum record age, partial
    batch responses and on-failure destinations available to Kafka mappings.
    """

    cluster: KafkaCluster
    topic: str
    min_pollers: int
    max_pollers: int

    lag_unit = "records"

    def attach(
        self,
        scope: Construct,
        *,
        construct_id: str,
        function: lambda_.Function,
        settings: EventSource,
        on_failure: lambda_.IEventSourceDlq,
        consumer_group: str,
    ) -> lambda_.EventSourceMapping:
        # ManagedKafkaEventSource creates the mapping under the function itself, named after
        # the topic; the stable logical id is pinned by the caller.
        del scope, construct_id
        # A parallelization factor only raises throughput (Kafka scales with partitions, one
        # poller per partition keeps per-key order), so it is not rendered. A tumbling window
        # changes what the handler computes, so it is refused instead of silently dropped.
        if settings.tumbling_window_s:
            raise ValueError(
                f"{function.node.path}: Kafka mappings have no tumbling windows; aggregate "
                "windows in the processor or keep this processor on Kinesis"
            )
        event_source = sources.ManagedKafkaEventSource(
            cluster_arn=self.cluster.cluster_arn,
            topic=self.topic,
            # A fixed group keeps the committed offsets if the mapping is ever recreated.
            consumer_group_id=consumer_group,
            starting_position=_STARTING_POSITION[settings.starting_position],
            starting_position_timestamp=settings.starting_position_timestamp,
            batch_size=settings.batch_size,
            max_batching_window=Duration.seconds(settings.batching_window_s),
            bisect_batch_on_error=settings.bisect_on_error,
            retry_attempts=settings.max_retries,
            max_record_age=_max_record_age(settings),
            report_batch_item_failures=settings.report_batch_item_failures,
            filters=_filters(settings),
            on_failure=on_failure,
            provisioned_poller_config=sources.ProvisionedPollerConfig(
                minimum_pollers=self.min_pollers, maximum_pollers=self.max_pollers
            ),
            metrics_config=lambda_.MetricsConfig(
                metrics=[lambda_.MetricType.EVENT_COUNT, lambda_.MetricType.ERROR_COUNT]
            ),
        )
        existing = {m.node.path for m in _mappings(function)}
        function.add_event_source(event_source)
        if function.role is not None:
            Validations.of(function.role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                    "service-role/AWSLambdaMSKExecutionRole]",
                    reason="Added by ManagedKafkaEventSource: Lambda's Kafka pollers and the "
                    "VPC-attached function need its cluster-description and ENI actions, which "
                    "have no resource-level form.",
                )
            )
        added = [m for m in _mappings(function) if m.node.path not in existing]
        if len(added) != 1:
            raise RuntimeError(f"{function.node.path}: expected one new event source mapping")
        # IAM authentication: the mapping connects as the function's execution role.
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "kafka-cluster:Connect",
                    "kafka-cluster:DescribeClusterDynamicConfiguration",
                ],
                resources=[self.cluster.cluster_arn],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                resources=[self.cluster.topic_arn(self.topic, consumer=function)],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
                resources=[self.cluster.group_arn(consumer_group, consumer=function)],
            )
        )
        return added[0]

    def lag_metric(self, function: lambda_.IFunction, *, period: Duration) -> cloudwatch.Metric:
        return function.metric("OffsetLag", statistic="Maximum", period=period)


def _mappings(function: lambda_.Function) -> list[lambda_.EventSourceMapping]:
    return [c for c in function.node.children if isinstance(c, lambda_.EventSourceMapping)]
