"""`PipelineStack`: the declared pipeline rendered for one stage.

The stack composes the constructs: the key, every declared resource (Kinesis streams or, with
`broker=msk`, an MSK Serverless cluster whose topics carry the same names), the functions of
every kind (stream processors, scheduled functions, the functions behind the one HTTP API),
the archives (Firehose) and the audit over them (Glue, Athena), the alarm topic, the dashboard
and the outputs. It reads the declaration (`cascata.pipeline`) and a `StageConfig`; nothing in
it or below it branches on the stage name.

The same class renders a version stack (`cascata-<stage>-v2`): given the pipeline of a version
(`stacks.replay.replay_pipeline`) and the base stack's `SharedResources`, it creates only what
the version owns (`Pipeline.owns`: its tables, derived streams and functions, and in archive
mode its replay streams and the archive replay) and uses the rest from the base stack: the key
and the alarm topic as cross-stack references, the shared declared resources by name.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from aws_cdk import Annotations, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cascata.cdk.access import (
    VersionedTable,
    grant_versioned_reads,
    nag_resource,
    versioned_table_arns,
)
from cascata.cdk.archive import StreamArchive, archive_name
from cascata.cdk.asset import project_asset
from cascata.cdk.audit import ArchiveAudit
from cascata.cdk.bindings import BoundResource
from cascata.cdk.config import LOG_RETENTION, ReplayConfig, StageConfig
from cascata.cdk.declared import render_declared
from cascata.cdk.encryption import PipelineKey
from cascata.cdk.function import (
    LAMBDA_ARCH,
    LAMBDA_ARCHITECTURE,
    LAMBDA_PYTHON,
    LAMBDA_RUNTIME,
    FunctionRuntime,
    PipelineFunction,
    VpcPlacement,
)
from cascata.cdk.http_api import ApiHandler, PipelineHttpApi
from cascata.cdk.kafka import KafkaCluster, kafka_clients
from cascata.cdk.kafka_layer import built_layer
from cascata.cdk.msk_resources import DeclaredTopic, KafkaBootstrap, KafkaTopics
from cascata.cdk.naming import pascal
from cascata.cdk.observability import AlarmTopic, PipelineDashboard
from cascata.cdk.replay import ArchiveReplay
from cascata.cdk.scheduled_task import ScheduledTask
from cascata.cdk.sources import KafkaTopicSource, KinesisSource, StreamSource
from cascata.cdk.stream_processor import QUARANTINE_NAMESPACE, AttachedSource, StreamProcessor
from cascata.pipeline import Pipeline, Table
from cascata.project import current_pipeline
from cascata_runtime.sinks import AUTH_VARIABLE, BOOTSTRAP_VARIABLE, BROKER_VARIABLE

POWERTOOLS_DISTRIBUTION = "aws-lambda-powertools"


def powertools_version() -> str:
    """The Powertools release installed here: the one the tests and the local runtime ran."""
    return importlib.metadata.version(POWERTOOLS_DISTRIBUTION)


def powertools_layer_parameter(*, version: str, architecture: str = LAMBDA_ARCHITECTURE) -> str:
    """The public SSM parameter in which AWS publishes, in every region, the ARN of the
    Powertools layer of one release for the functions' Python and architecture."""
    return "/aws/service/powertools/python/{}/python{}.{}/{}".format(
        architecture, *LAMBDA_PYTHON, version
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


@dataclass(frozen=True, slots=True)
class SharedResources:
    """What a version stack takes from the base stack as cross-stack references: the key and
    the alarm topic, whose identifiers are generated at deploy time.

    The declared resources a version shares (`Pipeline.owns` is False: buckets, topics, the
    version registry, the origin streams in stream mode) are referenced by their physical
    names instead, which the declaration fixes for every stage: the version's IAM statements
    then name them literally (reviewable, and acknowledgeable by cdk-nag), and nothing but the
    key and the topic ties the version stack to the base stack's outputs.
    """

    pipeline: Pipeline
    """The base (v1) pipeline, whose archives a replay from the archive reads."""
    key: kms.IKey
    alarm_topic: sns.ITopic
    kafka: KafkaCluster | None = None
    """With broker=msk: the base stack's cluster, its network and security group, which a
    version's topics, mappings and functions use (cross-stack references)."""
    kafka_bootstrap_brokers: str | None = None
    """With broker=msk: the cluster's bootstrap string, as the base stack resolved it."""


def view_indexes(table: Table) -> tuple[str, ...]:
    return tuple(index.name for index in table.indexes)


class PipelineStack(Stack):
    """Every resource of one stage of the declared pipeline, or of one version of its views."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        pipeline: Pipeline | None = None,
        shared: SharedResources | None = None,
        replay: ReplayConfig | None = None,
        **kwargs: Any,
    ) -> None:
        pipeline = pipeline or current_pipeline()
        super().__init__(scope, construct_id, **kwargs)
        if (pipeline.replay_from is None) != (shared is None) or (
            (replay is None) != (shared is None)
        ):
            raise ValueError(
                "a version pipeline needs the base stack's shared resources and its replay "
                "configuration; the base pipeline takes neither"
            )
        self.config = config
        self.pipeline = pipeline
        self.shared = shared
        self.replay = replay
        self.deployment_name = config.version_stack_name(pipeline.version)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        retention = log_retention(config.log_retention_days)

        def physical(name: str) -> str:
            return pipeline.physical_name(
                name, stage=config.stage, account=config.account, region=config.region
            )

        def reference(name: str) -> bool:
            """True when the base stack holds this resource and this stack only uses it."""
            return shared is not None and not pipeline.owns(name)

        if shared is not None:
            self.pipeline_key = shared.key
        else:
            self.pipeline_key = PipelineKey(
                self, "PipelineKey", alias=config.stack_name, removal_policy=removal
            ).pipeline_key
        key = self.pipeline_key
        declared = render_declared(
            self, pipeline=pipeline, config=config, key=key, removal=removal,
            retention=retention, physical=physical, reference=reference,
            kafka=shared.kafka if shared is not None else None,
        )
        bound = declared.bound
        streams, tables, buckets = declared.streams, declared.tables, declared.buckets
        self.kafka = declared.kafka
        self.access_log_bucket = declared.access_log_bucket
        self.pipeline_streams = declared.created_streams
        """The streams this stack creates (a version stack's shared streams are not here)."""
        self.pipeline_tables = declared.created_tables
        self.pipeline_buckets = declared.created_buckets
        self.pipeline_queues = declared.created_queues
        self.pipeline_topics = declared.created_topics

        self.alarm_topic: sns.ITopic
        if shared is not None:
            self.alarm_topic = shared.alarm_topic
        else:
            self.alarm_topic = AlarmTopic(
                self,
                "Alarms",
                display_name=f"{config.stack_name} alarms",
                encryption_key=key,
                email=config.alarm_email,
            ).alarm_topic


        asset = project_asset()
        runtime = FunctionRuntime(
            code=lambda_.Code.from_asset(str(asset.path), exclude=list(asset.excludes)),
            layers=[
                lambda_.LayerVersion.from_layer_version_arn(
                    self,
                    "PowertoolsLayer",
                    # A CloudFormation parameter of SSM type: resolved by CloudFormation at
                    # deploy time in the stack's own region and partition, so synthesis needs
                    # no network and the release is exactly the installed one.
                    ssm.StringParameter.value_for_string_parameter(
                        self, powertools_layer_parameter(version=powertools_version())
                    ),
                )
            ],
            encryption_key=key,
            log_retention=retention,
            log_level=config.log_level,
            removal_policy=removal,
            alarm_topic=self.alarm_topic,
        )

        # Only the functions that talk to Kafka themselves (`kafka_clients`) join the VPC. A
        # processor that only consumes stays outside: Lambda's pollers reach the cluster
        # through the mapping's network configuration, not the function's.
        placement = (
            VpcPlacement(
                vpc=self.kafka.kafka_vpc,
                subnets=self.kafka.private_subnets,
                security_groups=[self.kafka.kafka_security_group],
            )
            if self.kafka
            else None
        )
        self.kafka_layer: lambda_.ILayerVersion | None = None
        self.kafka_bootstrap: KafkaBootstrap | None = None
        self.kafka_topics: KafkaTopics | None = None
        kafka_runtime = runtime
        kafka_environment: dict[str, str] = {}
        bootstrap_brokers: str | None = None
        if self.kafka is not None and placement is not None:
            self.kafka_layer = lambda_.LayerVersion(
                self,
                "KafkaLayer",
                code=lambda_.Code.from_asset(str(built_layer())),
                compatible_runtimes=[LAMBDA_RUNTIME],
                compatible_architectures=[LAMBDA_ARCH],
                description="confluent-kafka and the MSK IAM SASL signer (requirements-layer.lock)",
                removal_policy=RemovalPolicy.DESTROY,
            )
            kafka_runtime = replace(runtime, layers=[*runtime.layers, self.kafka_layer])
            if shared is not None and shared.kafka_bootstrap_brokers is not None:
                bootstrap_brokers = shared.kafka_bootstrap_brokers
            else:
                self.kafka_bootstrap = KafkaBootstrap(
                    self,
                    "KafkaBootstrap",
                    cluster_arn=self.kafka.cluster_arn,
                    function_name=f"{config.stack_name}-kafka-bootstrap",
                    runtime=runtime,
                )
                bootstrap_brokers = self.kafka_bootstrap.bootstrap_brokers
            self.kafka_topics = KafkaTopics(
                self,
                "KafkaTopics",
                topics=[
                    DeclaredTopic(
                        name=physical(stream.name),
                        partitions=config.topic_partitions(stream.name),
                        retention_ms=config.stream_retention_ms,
                    )
                    for stream in pipeline.streams
                    if pipeline.owns(stream.name)
                ],
                owner=self.deployment_name,
                cluster_arn=self.kafka.cluster_arn,
                topic_arn=partial(self.kafka.topic_arn, consumer=self),
                bootstrap_brokers=bootstrap_brokers,
                function_name=f"{self.deployment_name}-kafka-topics",
                runtime=kafka_runtime,
                placement=placement,
                delete_on_removal=not config.retain_data,
            )
            kafka_environment = {
                BROKER_VARIABLE: config.broker.value,
                BOOTSTRAP_VARIABLE: bootstrap_brokers,
                AUTH_VARIABLE: "iam",
            }
        self.shared_resources = SharedResources(
            pipeline=shared.pipeline if shared is not None else pipeline,
            key=key,
            alarm_topic=self.alarm_topic,
            kafka=self.kafka,
            kafka_bootstrap_brokers=bootstrap_brokers,
        )
        clients = kafka_clients(pipeline) if self.kafka is not None else frozenset()

        def reaches_kafka(function: str) -> bool:
            """With broker=msk, whether a function talks to Kafka itself (it binds a stream)."""
            return function in clients

        if self.kafka is not None:
            # What the functions in the subnets call, and where the Kafka mappings deliver
            # their on-failure records (from the cluster's VPC), must be reachable there. A
            # version binds the kinds its base binds, so in a version stack these are no-ops
            # (an endpoint added here would land in the base stack, which owns the VPC).
            for name in sorted(clients):
                for binding in pipeline.function(name).bindings:
                    self.kafka.reach(pipeline.resource(binding.resource).kind)
            for proc in pipeline.processors:
                for source in proc.sources:
                    self.kafka.reach(pipeline.resource(source.on_failure).kind)

        def environment(function: str) -> dict[str, str]:
            # Exactly the declared bindings (plus PIPELINE_STAGE), the Powertools variables and,
            # for a function that reaches Kafka, where the brokers are.
            env = pipeline.environment(
                function, stage=config.stage, account=config.account, region=config.region
            )
            env.update(powertools_environment(function, log_level=config.log_level))
            if reaches_kafka(function):
                env.update(kafka_environment)
            return env

        def runtime_of(function: str) -> FunctionRuntime:
            """The Kafka client layer only where a function reaches Kafka itself."""
            return kafka_runtime if reaches_kafka(function) else runtime

        def placement_of(function: str) -> VpcPlacement | None:
            return placement if reaches_kafka(function) else None

        self.processors = self._stream_processors(
            streams=streams, bound=bound, runtime_of=runtime_of, environment=environment,
            physical=physical, placement_of=placement_of,
        )
        if self.kafka_topics is not None:
            # Lambda's pollers and the producers find their topics there from the first deploy.
            for processor in self.processors:
                processor.pipeline_function.node.add_dependency(self.kafka_topics.resource)

        self.scheduled_tasks = [
            ScheduledTask(
                self,
                pascal(scheduled.name),
                scheduled=scheduled,
                function_name=physical(scheduled.name),
                environment=environment(scheduled.name),
                bindings=bound,
                runtime=runtime_of(scheduled.name),
                thresholds=config.alarms,
                reserved_concurrency=config.reserved_concurrency.get(scheduled.name),
                placement=placement_of(scheduled.name),
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
                runtime=runtime_of(api.name),
                thresholds=config.alarms,
                reserved_concurrency=config.reserved_concurrency.get(api.name),
                placement=placement_of(api.name),
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

        self._grant_versioned_reads(
            [*self.processors, *self.scheduled_tasks, *self.api_handlers], physical
        )

        self.archives = self._archives(streams=streams, buckets=buckets, runtime=runtime)
        self.audit = self._audit(buckets=buckets, physical=physical, removal=removal)

        self.archive_replay: ArchiveReplay | None = None
        if shared is not None and replay is not None and pipeline.replay_from == "archive":
            self.archive_replay = self._archive_replay(
                shared=shared,
                replay=replay,
                streams=streams,
                tables=tables,
                buckets=buckets,
                runtime=runtime,
            )

        PipelineDashboard(
            self,
            "Dashboard",
            dashboard_name=self.deployment_name,
            streams=list(self.pipeline_streams.values()),
            processors=self.processors,
            scheduled=self.scheduled_tasks,
            http_api=self.http_api,
            api_handlers=self.api_handlers,
            tables=list(self.pipeline_tables.values()),
            archives=self.archives,
            archive_replay=self.archive_replay,
            period=Duration.minutes(config.alarms.period_minutes),
        )
        self._outputs()

    def _stream_processors(
        self,
        *,
        streams: Mapping[str, kinesis.IStream],
        bound: Mapping[str, BoundResource],
        runtime_of: Callable[[str], FunctionRuntime],
        environment: Callable[[str], dict[str, str]],
        physical: Callable[[str], str],
        placement_of: Callable[[str], VpcPlacement | None],
    ) -> list[StreamProcessor]:
        """Each declared processor: its function and one event source mapping per source (a
        Kinesis stream, or the topic on the MSK cluster)."""
        processors: list[StreamProcessor] = []
        for proc in self.pipeline.processors:
            function_name = physical(proc.name)
            attached: list[AttachedSource] = []
            for position, declared_source in enumerate(proc.sources):
                source: StreamSource
                if self.kafka is not None:
                    source = KafkaTopicSource(
                        cluster=self.kafka,
                        topic=physical(declared_source.stream),
                        min_pollers=self.config.kafka.min_pollers,
                        max_pollers=self.config.kafka.max_pollers,
                    )
                else:
                    source = KinesisSource(
                        stream=streams[declared_source.stream],
                        encryption_key=self.pipeline_key,
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
            processors.append(
                StreamProcessor(
                    self,
                    pascal(proc.name),
                    processor=proc,
                    function_name=function_name,
                    environment=environment(proc.name),
                    sources=attached,
                    bindings=bound,
                    runtime=runtime_of(proc.name),
                    thresholds=self.config.alarms,
                    lag_threshold=(
                        self.config.alarms.offset_lag
                        if self.kafka is not None
                        else self.config.alarms.iterator_age_ms
                    ),
                    placement=placement_of(proc.name),
                    reserved_concurrency=self.config.reserved_concurrency.get(proc.name),
                )
            )
        return processors

    def _archives(
        self,
        *,
        streams: Mapping[str, kinesis.IStream],
        buckets: Mapping[str, s3.IBucket],
        runtime: FunctionRuntime,
    ) -> list[StreamArchive]:
        """The declared archives (Firehose from the Kinesis streams to the archive bucket)."""
        archives: list[StreamArchive] = []
        if self.pipeline.archives and self.kafka is not None:
            # Said at synth, not a warning: the MSK variant is complete without it.
            Annotations.of(self).add_info(
                "cascata: the declared archives are not rendered with broker=msk (Firehose "
                "reads the Kinesis streams here); see docs/deploy.md, The MSK variant"
            )
        elif self.pipeline.archives:
            for archive in self.pipeline.archives:
                name = archive_name(archive)
                archives.append(
                    StreamArchive(
                        self,
                        f"{pascal(archive.stream)}Archive",
                        archive=archive,
                        delivery_stream_name=f"{self.pipeline.app}-{self.config.stage}-{name}",
                        stream=streams[archive.stream],
                        bucket=buckets[archive.bucket],
                        encryption_key=self.pipeline_key,
                        runtime=runtime,
                        environment={
                            # The declared name, as the local archiver writes it in
                            # `stream=`; the delivery event's source ARN only has the physical
                            # one (the transformation may prefer this, see docs/deploy.md).
                            "ARCHIVE_STREAM": archive.stream,
                            "PIPELINE_STAGE": self.config.stage,
                            **powertools_environment(name, log_level=self.config.log_level),
                        },
                        thresholds=self.config.alarms,
                    )
                )
        return archives

    def _audit(
        self,
        *,
        buckets: Mapping[str, s3.IBucket],
        physical: Callable[[str], str],
        removal: RemovalPolicy,
    ) -> ArchiveAudit | None:
        """The batch audit over the archive (Glue tables, an Athena workgroup)."""
        if not self.archives:
            return None
        archive_buckets_used = sorted({a.bucket for a in self.pipeline.archives})
        if len(archive_buckets_used) != 1:
            raise ValueError(
                "the audit reads one archive bucket; the declared archives use "
                + ", ".join(archive_buckets_used)
            )
        (archive_bucket,) = archive_buckets_used
        assert self.access_log_bucket is not None
        return ArchiveAudit(
            self,
            "Audit",
            name=self.deployment_name,
            archive_bucket=buckets[archive_bucket],
            # Both names a stream can have in `stream=`: the declared one (the local
            # archiver's) and the physical one (in the Firehose event's source ARN).
            streams=[
                *(a.stream for a in self.pipeline.archives),
                *(physical(a.stream) for a in self.pipeline.archives),
            ],
            encryption_key=self.pipeline_key,
            access_logs=self.access_log_bucket,
            removal_policy=removal,
        )

    def _grant_versioned_reads(
        self, functions: list[PipelineFunction], physical: Callable[[str], str]
    ) -> None:
        """A function that binds the version registry follows the live pointer: let it read
        every later version of the views it binds (and nothing else)."""
        declared_tables = {t.name: t for t in self.pipeline.tables}
        for function in functions:
            names = [b.resource for b in function.declared.bindings]
            if not any(
                n in declared_tables and declared_tables[n].role == "control" for n in names
            ):
                continue
            views: list[Table] = [
                declared_tables[n]
                for n in names
                if n in declared_tables and declared_tables[n].role == "view"
            ]
            grant_versioned_reads(
                function.pipeline_function,
                tables=[VersionedTable(physical(view.name), view_indexes(view)) for view in views],
                scope=function,
            )
            reason = (
                "Later versions of this view are created by replay after this function is "
                "deployed; `-v*` names exactly them (`<view>-v<N>`), read actions only."
            )
            reasons: dict[str, str] = {}
            for view in views:
                table_arn, index_arns = versioned_table_arns(
                    function, VersionedTable(physical(view.name), view_indexes(view))
                )
                for arn in (table_arn, *index_arns):
                    reasons[nag_resource(function, arn)] = reason
            function.acknowledge_wildcards(reasons)

    def _archive_replay(
        self,
        *,
        shared: SharedResources,
        replay: ReplayConfig,
        streams: Mapping[str, kinesis.IStream],
        tables: Mapping[str, dynamodb.ITable],
        buckets: Mapping[str, s3.IBucket],
        runtime: FunctionRuntime,
    ) -> ArchiveReplay:
        config, pipeline, base = self.config, self.pipeline, shared.pipeline

        def name_in(p: Pipeline, resource: str) -> str:
            return p.physical_name(
                resource, stage=config.stage, account=config.account, region=config.region
            )

        (bucket,) = {a.bucket for a in base.archives}
        (control,) = [t.name for t in pipeline.tables if t.role == "control"]
        archived = [a.stream for a in base.archives]
        return ArchiveReplay(
            self,
            "ArchiveReplay",
            replay=replay,
            function_name=f"{pipeline.app}-{config.stage}-republish-{pipeline.version}",
            state_machine_name=f"{pipeline.app}-{config.stage}-replay-{pipeline.version}",
            archive_bucket=buckets[bucket],
            archive_bucket_name=name_in(base, bucket),
            versions_table=tables[control],
            versions_table_name=name_in(pipeline, control),
            replay_streams={s: streams[s] for s in archived},
            replay_stream_names={s: name_in(pipeline, s) for s in archived},
            encryption_key=self.pipeline_key,
            runtime=runtime,
            environment={
                "PIPELINE_STAGE": config.stage,
                **powertools_environment("republish", log_level=config.log_level),
            },
            thresholds=config.alarms,
        )

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
        if self.shared is None:
            CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)
        for fn in [*self.processors, *self.scheduled_tasks, *self.api_handlers]:
            CfnOutput(
                self,
                f"{pascal(fn.declared.name)}FunctionName",
                value=fn.pipeline_function.function_name,
            )
        for archive in self.archives:
            CfnOutput(
                self,
                f"{pascal(archive.archive.stream)}DeliveryStreamName",
                value=archive.delivery_stream_name,
            )
        if self.audit is not None:
            CfnOutput(
                self,
                "AuditPolicyArn",
                value=self.audit.audit_policy.managed_policy_arn,
                description="Managed policy to attach to whoever runs the Athena audit",
            )
            CfnOutput(self, "AuditWorkGroup", value=self.audit.workgroup_name)
            CfnOutput(self, "AuditDatabase", value=self.audit.database_name)
            CfnOutput(self, "AuditResultsBucketName", value=self.audit.results_bucket.bucket_name)
        if self.archive_replay is not None:
            CfnOutput(
                self,
                "ReplayStateMachineArn",
                value=self.archive_replay.state_machine.state_machine_arn,
                description="Start an execution to republish the archive into this version",
            )
            CfnOutput(
                self,
                "RepublishFunctionName",
                value=self.archive_replay.republish.pipeline_function.function_name,
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
