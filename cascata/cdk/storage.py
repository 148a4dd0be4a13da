"""Constructs for the declared stateful resources: streams, tables, buckets, queues, topics.

Each construct takes the declared resource plus plain keyword arguments (capacity, retention,
removal policy) and renders it with production defaults: the pipeline key for encryption,
TLS-only resource policies, point-in-time recovery, lifecycle rules, access logging. Every
construct pins its CloudFormation logical id to the declared name (see `naming.py`).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cascata.cdk.naming import pin, stable_id
from cascata.pipeline import Bucket, Queue, Stream, Table, Topic


class PipelineStream(Construct):
    """A Kinesis data stream: on-demand unless a shard count is given, KMS-encrypted."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        declared: Stream,
        stream_name: str,
        shard_count: int | None,
        retention: Duration,
        encryption_key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.declared = declared
        self.pipeline_stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=stream_name,
            stream_mode=(
                kinesis.StreamMode.ON_DEMAND
                if shard_count is None
                else kinesis.StreamMode.PROVISIONED
            ),
            shard_count=shard_count,
            retention_period=retention,
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=encryption_key,
            removal_policy=removal_policy,
        )
        pin(self.pipeline_stream, stable_id("Stream", declared.name))
        Validations.of(self.pipeline_stream).acknowledge(
            Acknowledgment(
                id="AwsSolutions-KDS3",
                reason="The design requires a customer-managed key for every data store (one "
                "auditable key policy with rotation); the extra KMS cost is accepted.",
            )
        )


class ViewTable(Construct):
    """A DynamoDB table: on-demand, PITR, customer-managed KMS, optional TTL, declared GSIs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        declared: Table,
        table_name: str,
        encryption_key: kms.IKey,
        deletion_protection: bool,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.declared = declared
        self.view_table = dynamodb.Table(
            self,
            "Table",
            table_name=table_name,
            partition_key=dynamodb.Attribute(
                name=declared.partition_key, type=dynamodb.AttributeType.STRING
            ),
            sort_key=(
                dynamodb.Attribute(name=declared.sort_key, type=dynamodb.AttributeType.STRING)
                if declared.sort_key
                else None
            ),
            time_to_live_attribute=declared.ttl_attribute,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=encryption_key,
            deletion_protection=deletion_protection,
            removal_policy=removal_policy,
        )
        pin(self.view_table, stable_id("Table", declared.name))
        for index in declared.indexes:
            # The declaration says what each index carries (ALL: reads served by the index;
            # KEYS_ONLY: the index only finds items, keeping its writes small).
            self.view_table.add_global_secondary_index(
                index_name=index.name,
                partition_key=dynamodb.Attribute(
                    name=index.partition_key, type=dynamodb.AttributeType.STRING
                ),
                sort_key=(
                    dynamodb.Attribute(name=index.sort_key, type=dynamodb.AttributeType.STRING)
                    if index.sort_key
                    else None
                ),
                projection_type=dynamodb.ProjectionType(index.projection),
            )


class AccessLogBucket(Construct):
    """Receives S3 server access logs of the pipeline's buckets.

    S3 log delivery cannot write to SSE-KMS buckets, so this one bucket uses SSE-S3.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        expiration: Duration,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_log_bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=expiration,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=removal_policy,
        )
        pin(self.access_log_bucket, stable_id("BucketAccessLogs"))


ARCHIVE_COLD_AFTER = Duration.days(90)
"""Archive objects move to S3 Glacier Instant Retrieval after this long: replays and Athena
audits still read them directly (millisecond access), at about a fifth of the storage price."""

NONCURRENT_COLD_AFTER = Duration.days(30)


class PipelineBucket(Construct):
    """An S3 bucket for quarantined records, on-failure records or archives.

    Versioned because its objects are evidence (a record and why it failed): an overwrite
    or delete must stay recoverable until the lifecycle rule expires it. With `expiration`
    None the bucket keeps everything for good (the archive: history is its purpose) and its
    lifecycle only moves objects, current and noncurrent, to a colder storage class.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        declared: Bucket,
        bucket_name: str,
        encryption_key: kms.IKey,
        access_logs: s3.IBucket,
        expiration: Duration | None,
        removal_policy: RemovalPolicy,
        cold_after: Duration = ARCHIVE_COLD_AFTER,
    ) -> None:
        super().__init__(scope, construct_id)
        self.declared = declared
        lifecycle = (
            s3.LifecycleRule(
                id="expire-records",
                expiration=expiration,
                noncurrent_version_expiration=Duration.days(30),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
            if expiration is not None
            else s3.LifecycleRule(
                id="keep-history-cold",
                transitions=[
                    s3.Transition(
                        storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                        transition_after=cold_after,
                    )
                ],
                # A deleted or overwritten archive object survives as a noncurrent version,
                # kept for good too: the archive is the only copy of history.
                noncurrent_version_transitions=[
                    s3.NoncurrentVersionTransition(
                        storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                        transition_after=NONCURRENT_COLD_AFTER,
                    )
                ],
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        )
        self.pipeline_bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=encryption_key,
            # One data key per bucket instead of a KMS call per object: cheaper, same control.
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=f"{declared.name}/",
            lifecycle_rules=[lifecycle],
            removal_policy=removal_policy,
        )
        pin(self.pipeline_bucket, stable_id("Bucket", declared.name))


class PipelineQueue(Construct):
    """An SQS queue with its own dead-letter queue, KMS-encrypted and TLS-only."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        declared: Queue,
        queue_name: str,
        encryption_key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.declared = declared
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{queue_name}-dlq",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=encryption_key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=removal_policy,
        )
        pin(self.dead_letter_queue, stable_id("Queue", f"{declared.name}-dlq"))
        self.pipeline_queue = sqs.Queue(
            self,
            "Queue",
            queue_name=queue_name,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=encryption_key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=5, queue=self.dead_letter_queue
            ),
            removal_policy=removal_policy,
        )
        pin(self.pipeline_queue, stable_id("Queue", declared.name))


class PipelineTopic(Construct):
    """An SNS topic, KMS-encrypted and TLS-only."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        declared: Topic,
        topic_name: str,
        encryption_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.declared = declared
        self.pipeline_topic = sns.Topic(
            self,
            "Topic",
            topic_name=topic_name,
            master_key=encryption_key,
            enforce_ssl=True,
        )
        pin(self.pipeline_topic, stable_id("Topic", declared.name))
