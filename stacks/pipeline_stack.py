"""`PipelineStack`: the declared pipeline rendered for one stage.

The stack composes the constructs: the key, every declared resource (Kinesis streams or, with
`broker=msk`, an MSK Serverless cluster whose topics carry the same names), the functions of
every kind (stream processors, scheduled functions, the functions behind the one HTTP API),
the alarm topic, the dashboard and the outputs. It reads the declaration (`cascata.pipeline`)
and a `StageConfig`; nothing in it or below it branches on the stage name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cascata.pipeline import PIPELINE, Broker, Pipeline, ResourceKind
from stacks.bindings import BoundResource, KafkaTopic, StoredResource
from stacks.config import LOG_RETENTION, StageConfig
from stacks.encryption import PipelineKey
from stacks.function import FunctionRuntime, VpcPlacement
from stacks.http_api import ApiHandler, PipelineHttpApi
from stacks.kafka import KafkaCluster
from stacks.naming import pascal, stable_id
from stacks.observability import AlarmTopic, PipelineDashboard
from stacks.scheduled_task import ScheduledTask
from stacks.sources import KafkaTopicSource, KinesisSource, StreamSource
from stacks.storage import (
    AccessLogBucket,
    PipelineBucket,
    PipelineQueue,
    PipelineStream,
    PipelineTopic,
    ViewTable,
)
from stacks.stream_processor import QUARANTINE_NAMESPACE, AttachedSource, StreamProcessor

LAMBDA_ASSET = Path(__file__).resolve().parent.parent / "lambdas"
"""The one code asset of every function; handler strings are relative to it."""

ASSET_EXCLUDES = (
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "**/*.egg-info",
    "**/tests",
    "**/test_*.py",
    "**/conftest.py",
)

POWERTOOLS_LAYER_ACCOUNT = "017000801446"
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python311-arm64"


def powertools_layer_arn(*, region: str, version: int) -> str:
    """The AWS-published Powertools v3 layer for python3.11 on arm64, pinned by version."""
    return (
        f"arn:aws:lambda:{region}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
        f"{POWERTOOLS_LAYER_NAME}:{version}"
    )


def powertools_environment(function: str, *, log_level: str) -> dict[str, str]:
    """The Powertools variables every function gets on top of its declared environment."""
    return {
        "POWERTOOLS_SERVICE_NAME": function,
        "POWERTOOLS_METRICS_NAMESPACE": QUARANTINE_NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": log_level,
    }


def log_retention(days: int) -> logs.RetentionDays:
    """CloudWatch's day count as the enum member CDK expects (jsii exposes members by name)."""
    return logs.RetentionDays[LOG_RETENTION[days]]


class PipelineStack(Stack):
    """Every resource of one stage of the declared pipeline."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        pipeline: Pipeline = PIPELINE,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.pipeline = pipeline
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        retention = log_retention(config.log_retention_days)

        def physical(name: str) -> str:
            return pipeline.physical_name(
                name, stage=config.stage, account=config.account, region=config.region
            )

        self.pipeline_key = PipelineKey(
            self, "PipelineKey", alias=config.stack_name, removal_policy=removal
        ).pipeline_key
        key = self.pipeline_key
        bound: dict[str, BoundResource] = {}

        self.pipeline_streams: dict[str, kinesis.Stream] = {}
        self.kafka: KafkaCluster | None = None
        if config.broker is Broker.MSK:
            self.kafka = KafkaCluster(
                self,
                "Kafka",
                cluster_name=config.stack_name,
                vpc_cidr=config.kafka.vpc_cidr,
                zone_count=config.kafka.zone_count,
                encryption_key=key,
                log_retention=retention,
                removal_policy=removal,
            )
            for stream in pipeline.streams:
                bound[stream.name] = KafkaTopic(cluster=self.kafka, topic=physical(stream.name))
        else:
            for stream in pipeline.streams:
                rendered = PipelineStream(
                    self,
                    f"{pascal(stream.name)}Stream",
                    declared=stream,
                    stream_name=physical(stream.name),
                    shard_count=config.shard_counts.get(stream.name),
                    retention=Duration.hours(config.stream_retention_hours),
                    encryption_key=key,
                    removal_policy=removal,
                ).pipeline_stream
                self.pipeline_streams[stream.name] = rendered
                bound[stream.name] = StoredResource(
                    kind=ResourceKind.STREAM,
                    arn=rendered.stream_arn,
                    key=key,
                    logical_id=stable_id("Stream", stream.name),
                )

        self.pipeline_tables: dict[str, dynamodb.Table] = {}
        for table in pipeline.tables:
            rendered_table = ViewTable(
                self,
                f"{pascal(table.name)}Table",
                declared=table,
                table_name=physical(table.name),
                encryption_key=key,
                deletion_protection=config.deletion_protection,
                removal_policy=removal,
            ).view_table
            self.pipeline_tables[table.name] = rendered_table
            bound[table.name] = StoredResource(
                kind=ResourceKind.TABLE,
                arn=rendered_table.table_arn,
                key=key,
                logical_id=stable_id("Table", table.name),
                indexes=tuple(index.name for index in table.indexes),
            )

        self.access_log_bucket = AccessLogBucket(
            self,
            "AccessLogs",
            expiration=Duration.days(config.access_log_expiration_days),
            removal_policy=removal,
        ).access_log_bucket
        self.pipeline_buckets = {}
        for bucket in pipeline.buckets:
            rendered_bucket = PipelineBucket(
                self,
                f"{pascal(bucket.name)}Bucket",
                declared=bucket,
                bucket_name=physical(bucket.name),
                encryption_key=key,
                access_logs=self.access_log_bucket,
                expiration=Duration.days(config.object_expiration_days),
                removal_policy=removal,
            ).pipeline_bucket
            self.pipeline_buckets[bucket.name] = rendered_bucket
            bound[bucket.name] = StoredResource(
                kind=ResourceKind.BUCKET,
                arn=rendered_bucket.bucket_arn,
                key=key,
                logical_id=stable_id("Bucket", bucket.name),
                bucket=rendered_bucket,
            )
        for queue in pipeline.queues:
            rendered_queue = PipelineQueue(
                self,
                f"{pascal(queue.name)}Queue",
                declared=queue,
                queue_name=physical(queue.name),
                encryption_key=key,
                removal_policy=removal,
            ).pipeline_queue
            bound[queue.name] = StoredResource(
                kind=ResourceKind.QUEUE,
                arn=rendered_queue.queue_arn,
                key=key,
                logical_id=stable_id("Queue", queue.name),
            )
        self.pipeline_topics = {}
        for topic in pipeline.topics:
            rendered_topic = PipelineTopic(
                self,
                f"{pascal(topic.name)}Topic",
                declared=topic,
                topic_name=physical(topic.name),
                encryption_key=key,
            ).pipeline_topic
            self.pipeline_topics[topic.name] = rendered_topic
            bound[topic.name] = StoredResource(
                kind=ResourceKind.TOPIC,
                arn=rendered_topic.topic_arn,
                key=key,
                logical_id=stable_id("Topic", topic.name),
            )

        self.alarm_topic = AlarmTopic(
            self,
            "Alarms",
            display_name=f"{config.stack_name} alarms",
            encryption_key=key,
            email=config.alarm_email,
        ).alarm_topic

        runtime = FunctionRuntime(
            code=lambda_.Code.from_asset(str(LAMBDA_ASSET), exclude=list(ASSET_EXCLUDES)),
            layers=[
                lambda_.LayerVersion.from_layer_version_arn(
                    self,
                    "PowertoolsLayer",
                    powertools_layer_arn(
                        region=config.region, version=config.powertools_layer_version
                    ),
                )
            ],
            encryption_key=key,
            log_retention=retention,
            log_level=config.log_level,
            removal_policy=removal,
            alarm_topic=self.alarm_topic,
        )

        def environment(function: str) -> dict[str, str]:
            # Exactly the declared bindings (plus PIPELINE_STAGE) and the Powertools variables.
            env = pipeline.environment(
                function, stage=config.stage, account=config.account, region=config.region
            )
            env.update(powertools_environment(function, log_level=config.log_level))
            return env

        # Only stream processors join the VPC: they are the ones Lambda's Kafka pollers feed.
        placement = (
            VpcPlacement(
                vpc=self.kafka.kafka_vpc,
                subnets=self.kafka.private_subnets,
                security_groups=[self.kafka.kafka_security_group],
            )
            if self.kafka
            else None
        )
        self.processors: list[StreamProcessor] = []
        for proc in pipeline.processors:
            function_name = physical(proc.name)
            attached: list[AttachedSource] = []
            for position, declared_source in enumerate(proc.sources):
                source: StreamSource
                if self.kafka is not None:
                    source = KafkaTopicSource(
                        cluster=self.kafka,
                        topic=physical(declared_source.stream),
                        min_pollers=config.kafka.min_pollers,
                        max_pollers=config.kafka.max_pollers,
                    )
                else:
                    source = KinesisSource(
                        stream=self.pipeline_streams[declared_source.stream], encryption_key=key
                    )
                attached.append(
                    AttachedSource(
                        settings=declared_source,
                        source=source,
                        on_failure=bound[declared_source.on_failure],
                        # Lambda wants one consumer group per Kafka mapping; the first keeps
                        # the function's name (and so the offsets it has committed).
                        consumer_group=(
                            function_name
                            if position == 0
                            else f"{function_name}-{declared_source.stream}"
                        ),
                    )
                )
            self.processors.append(
                StreamProcessor(
                    self,
                    pascal(proc.name),
                    processor=proc,
                    function_name=function_name,
                    environment=environment(proc.name),
                    sources=attached,
                    bindings=bound,
                    runtime=runtime,
                    thresholds=config.alarms,
                    lag_threshold=(
                        config.alarms.offset_lag
                        if self.kafka is not None
                        else config.alarms.iterator_age_ms
                    ),
                    placement=placement,
                )
            )

        self.scheduled_tasks = [
            ScheduledTask(
                self,
                pascal(scheduled.name),
                scheduled=scheduled,
                function_name=physical(scheduled.name),
                environment=environment(scheduled.name),
                bindings=bound,
                runtime=runtime,
                thresholds=config.alarms,
            )
            for scheduled in pipeline.scheduled
        ]

        self.api_handlers = [
            ApiHandler(
                self,
                pascal(api.name),
                api=api,
                function_name=physical(api.name),
                environment=environment(api.name),
                bindings=bound,
                runtime=runtime,
                thresholds=config.alarms,
            )
            for api in pipeline.apis
        ]
        self.http_api: PipelineHttpApi | None = None
        if self.api_handlers:
            self.http_api = PipelineHttpApi(
                self,
                "HttpApi",
                api_name=config.stack_name,
                handlers=self.api_handlers,
                runtime=runtime,
                thresholds=config.alarms,
            )

        PipelineDashboard(
            self,
            "Dashboard",
            dashboard_name=config.stack_name,
            streams=list(self.pipeline_streams.values()),
            processors=self.processors,
            scheduled=self.scheduled_tasks,
            http_api=self.http_api,
            api_handlers=self.api_handlers,
            tables=list(self.pipeline_tables.values()),
            period=Duration.minutes(config.alarms.period_minutes),
        )
        self._outputs()

    def _outputs(self) -> None:
        for name, rendered in self.pipeline_streams.items():
            CfnOutput(self, f"{pascal(name)}StreamName", value=rendered.stream_name)
        if self.kafka is not None:
            CfnOutput(self, "KafkaClusterArn", value=self.kafka.cluster_arn)
            for declared in self.pipeline.streams:
                CfnOutput(
                    self,
                    f"{pascal(declared.name)}TopicName",
                    value=self.pipeline.physical_name(
                        declared.name,
                        stage=self.config.stage,
                        account=self.config.account,
                        region=self.config.region,
                    ),
                )
        for name, table in self.pipeline_tables.items():
            CfnOutput(self, f"{pascal(name)}TableName", value=table.table_name)
        for name, bucket in self.pipeline_buckets.items():
            CfnOutput(self, f"{pascal(name)}BucketName", value=bucket.bucket_name)
        for name, topic in self.pipeline_topics.items():
            CfnOutput(self, f"{pascal(name)}TopicArn", value=topic.topic_arn)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)
        for fn in [*self.processors, *self.scheduled_tasks, *self.api_handlers]:
            CfnOutput(
                self,
                f"{pascal(fn.declared.name)}FunctionName",
                value=fn.pipeline_function.function_name,
            )
        for task in self.scheduled_tasks:
            CfnOutput(
                self,
                f"{pascal(task.scheduled.name)}DeadLetterQueueUrl",
                value=task.dead_letter_queue.queue_url,
            )
        if self.http_api is not None:
            CfnOutput(
                self,
                "HttpApiUrl",
                value=self.http_api.url,
                description="Base URL of the HTTP API; requests must be SigV4-signed "
                "(IAM authorization on every route)",
            )
