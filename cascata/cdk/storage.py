"""Constructs for the declared stateful resources: streams, tables, buckets, queues, topics.

Each construct takes the declared resource plus plain keyword arguments (capacity, retention,
removal policy) and renders it with production defaults: the pipeline key for encryption,
TLS-only resource policies, point-in-time recovery, lifecycle rules, access logging. Every
construct pins its CloudFormation logical id to the declared name (see `naming.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cascata.cdk.naming import pin, stable_id
from cascata.cdk.scanners import acknowledge_checks
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

    S3 log delivery cannot write to SSE-KMS buckets, so this one bucket uses SSE-S3. Versioned
    like the buckets it logs (a deleted log stays recoverable until the lifecycle expires it);
    it does not log itself.
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
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=expiration,
                    noncurrent_version_expiration=NONCURRENT_LOG_EXPIRATION,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=removal_policy,
        )
        pin(self.access_log_bucket, stable_id("BucketAccessLogs"))
        acknowledge_checks(
            self.access_log_bucket,
            {
                "CKV_AWS_18": "This is the access-log bucket of the stack's buckets: logging "
                "it into itself would log every log delivery, without end, and S3 advises "
                "against it. Who reads or deletes logs is still recorded by CloudTrail."
            },
        )


NONCURRENT_LOG_EXPIRATION = Duration.days(30)
"""An overwritten or deleted access log stays recoverable this long."""

HISTORY_DELETE_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion")
"""Denied on the archive's objects outside the break-glass role: a delete marker hides an
object from the listing a replay or an audit reads, a version delete destroys it."""

HISTORY_SETTINGS_ACTIONS = (
    "s3:DeleteBucket",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutReplicationConfiguration",
)
"""Denied on the archive bucket outside the break-glass and deployment roles: suspending
versioning, adding an expiration rule (S3 then deletes on its own, past any bucket policy) or
deleting the bucket would lose history as surely as deleting objects."""


@dataclass(frozen=True, slots=True)
class HistoryGuard:
    """Who may still delete history from an archive bucket.

    `break_glass_role_arn` may delete objects and change the bucket's settings;
    `deployment_role_arn` (CloudFormation's execution role) may only change the settings, as
    a reviewed deployment does. Both are matched with `ArnLike`, so a role ARN may carry
    wildcards (an SSO permission set's role has a generated suffix).
    """

    break_glass_role_arn: str
    deployment_role_arn: str | None = None


def history_guard_statements(bucket: s3.IBucket, guard: HistoryGuard) -> list[iam.PolicyStatement]:
    """The bucket policy statements that keep an archive's history from being deleted."""
    anyone = [iam.AnyPrincipal()]
    settings_roles = [guard.break_glass_role_arn]
    if guard.deployment_role_arn is not None:
        settings_roles.append(guard.deployment_role_arn)
    return [
        iam.PolicyStatement(
            sid="HistoryIsNeverDeleted",
            effect=iam.Effect.DENY,
            principals=anyone,
            actions=list(HISTORY_DELETE_ACTIONS),
            resources=[bucket.arn_for_objects("*")],
            conditions={"ArnNotLike": {"aws:PrincipalArn": guard.break_glass_role_arn}},
        ),
        iam.PolicyStatement(
            sid="HistorySettingsOnlyByDeploymentOrBreakGlass",
            effect=iam.Effect.DENY,
            principals=anyone,
            actions=list(HISTORY_SETTINGS_ACTIONS),
            resources=[bucket.bucket_arn],
            conditions={"ArnNotLike": {"aws:PrincipalArn": settings_roles}},
        ),
    ]


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

    With a `guard` (the archive), the bucket policy denies deleting objects or versions to
    everyone but the break-glass role, and changing versioning, lifecycle or replication, or
    deleting the bucket, to everyone but that role and the deployment role. A deny rather
    than S3 Object Lock: docs/security.md says why.
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
        guard: HistoryGuard | None = None,
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
        if guard is not None:
            for statement in history_guard_statements(self.pipeline_bucket, guard):
                self.pipeline_bucket.add_to_resource_policy(statement)


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
