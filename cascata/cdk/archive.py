"""`StreamArchive`: one declared `Archive` rendered as an Amazon Data Firehose delivery stream.

The delivery stream reads the Kinesis stream and writes the archive bucket in the layout that
`cascata_runtime.archive` documents: its Lambda record transformation (the declared handler,
from the shared asset) turns each record into one JSON line and names the partition; dynamic
partitioning puts it under `<kind>/stream=<stream>/date=<date>/hour=<hour>/`, gzip-compressed,
SSE-KMS with the pipeline key. Records Firehose itself cannot process or deliver go under
`failed/<error type>/<yyyy-MM-dd>/` instead of being dropped. Delivery errors are logged to an
encrypted log group; alarms say when the archive is late (data freshness), when the
transformation or the S3 delivery fails, or when a buffer holds more partitions than dynamic
partitioning allows. Its role may read this one stream, write these prefixes of the bucket,
invoke this one function and write this one log stream, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Acknowledgment, ArnFormat, Duration, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cascata.cdk.access import nag_resource
from cascata.cdk.config import AlarmThresholds
from cascata.cdk.function import (
    AlarmSpec,
    FunctionRuntime,
    HelperFunction,
    PipelineFunction,
    create_alarms,
)
from cascata.cdk.naming import pin, stable_id
from cascata.pipeline import Archive

ARCHIVE_PREFIX = (
    "!{partitionKeyFromLambda:kind}/stream=!{partitionKeyFromLambda:stream}/"
    "date=!{partitionKeyFromLambda:date}/hour=!{partitionKeyFromLambda:hour}/"
)
"""The object prefix, from the partition keys the transformation returns
(`cascata_runtime.archive.Partition.keys`)."""

ERROR_OUTPUT_PREFIX = (
    "failed/!{firehose:error-output-type}/!{timestamp:yyyy}-!{timestamp:MM}-!{timestamp:dd}/"
)
"""Where Firehose puts what it could not transform, partition or deliver, by error type."""

ARCHIVE_KINDS = ("events", "errors")
"""The top-level prefixes the transformation partitions into (`cascata_runtime.archive`)."""

FAILED_PREFIX = "failed"

FILE_EXTENSION = ".jsonl.gz"
"""Object names end like the local archiver's, so both layouts are the same."""

LOG_STREAM = "DestinationDelivery"

FRESHNESS_MARGIN = Duration.minutes(15)
"""How much older than one buffer interval the oldest undelivered record may get before paging:
Firehose retries a failing transformation or S3 write within this time on its own."""

DYNAMIC_PARTITIONING_RETRY = Duration.minutes(5)


def archive_name(archive: Archive) -> str:
    """The mechanical name of an archive's delivery stream and transformation function."""
    return f"archive-{archive.stream}"


class StreamArchive(Construct):
    """A Firehose delivery stream copying one Kinesis stream to the archive bucket."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        archive: Archive,
        delivery_stream_name: str,
        stream: kinesis.IStream,
        bucket: s3.IBucket,
        encryption_key: kms.IKey,
        runtime: FunctionRuntime,
        environment: Mapping[str, str],
        thresholds: AlarmThresholds,
    ) -> None:
        super().__init__(scope, construct_id)
        self.archive = archive
        self.delivery_stream_name = delivery_stream_name
        name = archive_name(archive)
        stack = Stack.of(self)
        region = stack.region

        self.transform = PipelineFunction(
            self,
            "Transform",
            declared=HelperFunction(
                name=name,
                handler=archive.handler,
                description=f"Firehose record transformation of the {archive.stream} archive: "
                "one JSON line per record, partitioned by event date and hour.",
            ),
            function_name=delivery_stream_name,
            environment=environment,
            bindings={},
            runtime=runtime,
        )
        self.transform.acknowledge_policy_findings()
        self.transform.acknowledge_checks(
            {
                "CKV_AWS_116": "Invoked only by its Firehose delivery stream, synchronously: "
                "records it cannot transform go to the archive's failed/ prefix, so a "
                "dead-letter queue (asynchronous invocations only) would never receive "
                "anything.",
                "CKV_AWS_115": "Invoked only by its delivery stream, one buffer (1 MiB or 60 s) "
                "per source shard at a time, so its concurrency follows the stream's shards. "
                "A reservation protects nothing downstream (Firehose itself); set too low, "
                "throttles would send records to failed/ instead of the archive.",
            }
        )

        self.delivery_log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/kinesisfirehose/{delivery_stream_name}",
            retention=runtime.log_retention,
            encryption_key=encryption_key,
            removal_policy=runtime.removal_policy,
        )
        pin(self.delivery_log_group, stable_id("LogGroup", f"delivery-{name}"))
        log_stream = logs.LogStream(
            self,
            "LogStream",
            log_group=self.delivery_log_group,
            log_stream_name=LOG_STREAM,
            removal_policy=runtime.removal_policy,
        )

        # Firehose's role: exactly what a Kinesis-sourced, Lambda-transformed, SSE-KMS S3
        # delivery needs (the Firehose developer guide's policy, narrowed to these resources).
        self.delivery_role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("firehose.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"Firehose {delivery_stream_name}: read {archive.stream}, write the "
            "archive",
        )
        statements = [
            iam.PolicyStatement(
                actions=[
                    "kinesis:DescribeStream",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                ],
                resources=[stream.stream_arn],
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[encryption_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"kinesis.{region}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                actions=["s3:AbortMultipartUpload", "s3:PutObject"],
                resources=[
                    bucket.arn_for_objects(f"{prefix}/*")
                    for prefix in (*ARCHIVE_KINDS, FAILED_PREFIX)
                ],
            ),
            iam.PolicyStatement(
                actions=[
                    "s3:GetBucketLocation",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                ],
                resources=[bucket.bucket_arn],
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[encryption_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                actions=["lambda:GetFunctionConfiguration", "lambda:InvokeFunction"],
                resources=[self.transform.pipeline_function.function_arn],
            ),
            iam.PolicyStatement(
                actions=["logs:PutLogEvents"],
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name=(
                            f"{self.delivery_log_group.log_group_name}:log-stream:{LOG_STREAM}"
                        ),
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            ),
        ]
        policy = iam.Policy(self, "RolePolicy", statements=statements)
        policy.attach_to_role(self.delivery_role)
        Validations.of(policy).acknowledge(
            *(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::"
                    f"{nag_resource(self, bucket.arn_for_objects(f'{prefix}/*'))}]",
                    reason=f"Firehose writes objects under the archive's `{prefix}/` prefix, "
                    "whose keys it derives per record (partition, date, hour); no other prefix.",
                )
                for prefix in (*ARCHIVE_KINDS, FAILED_PREFIX)
            )
        )

        self.delivery_stream = firehose.CfnDeliveryStream(
            self,
            "DeliveryStream",
            delivery_stream_name=delivery_stream_name,
            delivery_stream_type="KinesisStreamAsSource",
            kinesis_stream_source_configuration=(
                firehose.CfnDeliveryStream.KinesisStreamSourceConfigurationProperty(
                    kinesis_stream_arn=stream.stream_arn,
                    role_arn=self.delivery_role.role_arn,
                )
            ),
            extended_s3_destination_configuration=(
                firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                    bucket_arn=bucket.bucket_arn,
                    role_arn=self.delivery_role.role_arn,
                    prefix=ARCHIVE_PREFIX,
                    error_output_prefix=ERROR_OUTPUT_PREFIX,
                    file_extension=FILE_EXTENSION,
                    compression_format="GZIP",
                    buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                        interval_in_seconds=archive.buffer_interval_s,
                        size_in_m_bs=archive.buffer_size_mib,
                    ),
                    encryption_configuration=(
                        firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                            kms_encryption_config=(
                                firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                                    awskms_key_arn=encryption_key.key_arn
                                )
                            )
                        )
                    ),
                    dynamic_partitioning_configuration=(
                        firehose.CfnDeliveryStream.DynamicPartitioningConfigurationProperty(
                            enabled=True,
                            retry_options=firehose.CfnDeliveryStream.RetryOptionsProperty(
                                duration_in_seconds=DYNAMIC_PARTITIONING_RETRY.to_seconds()
                            ),
                        )
                    ),
                    # The transformation names the partition itself: no metadata extraction.
                    processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                        enabled=True,
                        processors=[
                            firehose.CfnDeliveryStream.ProcessorProperty(
                                type="Lambda",
                                parameters=[
                                    _parameter(
                                        "LambdaArn",
                                        self.transform.pipeline_function.function_arn,
                                    ),
                                    _parameter("NumberOfRetries", "3"),
                                    # 1 MiB in keeps the transformed lines (base64 JSON, about
                                    # 1.5x) far below Lambda's 6 MB response limit.
                                    _parameter("BufferSizeInMBs", "1"),
                                    _parameter("BufferIntervalInSeconds", "60"),
                                ],
                            )
                        ],
                    ),
                    cloud_watch_logging_options=(
                        firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                            enabled=True,
                            log_group_name=self.delivery_log_group.log_group_name,
                            log_stream_name=LOG_STREAM,
                        )
                    ),
                    s3_backup_mode="Disabled",
                )
            ),
        )
        pin(self.delivery_stream, stable_id("DeliveryStream", name))
        # Firehose checks its role when the delivery stream is created.
        self.delivery_stream.node.add_dependency(policy)
        self.delivery_stream.node.add_dependency(log_stream)
        Validations.of(self.delivery_stream).acknowledge(
            Acknowledgment(
                id="AwsSolutions-KDF1",
                reason="Firehose server-side encryption only exists for Direct PUT sources; "
                "this one reads a Kinesis stream encrypted with the pipeline key and writes S3 "
                "with SSE-KMS under the same key, so data is encrypted at every hop.",
            )
        )
        self.archive_alarms = self._alarms(thresholds)

    def metric(self, name: str, *, statistic: str, period: Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/Firehose",
            metric_name=name,
            dimensions_map={"DeliveryStreamName": self.delivery_stream_name},
            statistic=statistic,
            period=period,
        )

    def _alarms(self, thresholds: AlarmThresholds) -> dict[str, cloudwatch.Alarm]:
        period = Duration.minutes(thresholds.period_minutes)
        stream = self.archive.stream
        below_one = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
        freshness = self.archive.buffer_interval_s + FRESHNESS_MARGIN.to_seconds()
        specs = [
            AlarmSpec(
                "FreshnessAlarm",
                self.metric("DeliveryToS3.DataFreshness", statistic="Maximum", period=period),
                freshness,
                f"the {stream} archive is late: its oldest undelivered record is more than "
                f"{freshness} s old (Firehose is retrying the transformation or S3; see "
                "the delivery log group)",
            ),
            AlarmSpec(
                "DeliveryFailuresAlarm",
                self.metric("DeliveryToS3.Success", statistic="Minimum", period=period),
                1,
                f"writes of the {stream} archive to S3 are failing; Firehose retries them for "
                "24 hours, then the records are lost to the archive",
                comparison=below_one,
            ),
            AlarmSpec(
                "TransformFailuresAlarm",
                self.metric("ExecuteProcessing.Success", statistic="Minimum", period=period),
                1,
                f"the {stream} archive's record transformation is failing; records go to the "
                "archive's failed/ prefix instead of events/ and errors/",
                comparison=below_one,
            ),
            AlarmSpec(
                "PartitionsAlarm",
                self.metric("PartitionCountExceeded", statistic="Maximum", period=period),
                0,
                f"the {stream} archive holds more active partitions than dynamic partitioning "
                "allows (a burst of old or skewed event times); the excess goes to failed/",
            ),
        ]
        alarms = create_alarms(self, specs, alarm_topic=self.transform.runtime.alarm_topic)
        alarms.update(
            self.transform.create_alarms(
                self.transform.function_alarms(
                    errors=thresholds.errors,
                    throttles=thresholds.throttles,
                    period=period,
                    throttled_means="Firehose retries, then sends records to failed/",
                )
            )
        )
        return alarms


def _parameter(name: str, value: str) -> firehose.CfnDeliveryStream.ProcessorParameterProperty:
    return firehose.CfnDeliveryStream.ProcessorParameterProperty(
        parameter_name=name, parameter_value=value
    )
