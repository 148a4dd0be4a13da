"""`ArchiveAudit`: the archive as Athena tables, a workgroup to query it, a policy to use both.

The Lambda architecture's batch layer, offered as an audit: recompute a view from the archive
in SQL and compare it with the live one. Two Glue tables read the archive layout that
`cascata_runtime.archive` writes, one over `events/` (events partitioned by event time) and
one over `errors/` (records that were not events, partitioned by arrival time). Both use
partition projection, so no crawler and no `MSCK REPAIR`: Athena computes the partitions from
the table properties (stream: the archived streams; date: 2020-01-01 to today; hour: 00-23).
`stream` is a partition column, not a data column, although every line also carries it: Hive
tables refuse a name that is both, and the two always hold the same value by construction.

The workgroup enforces its settings: results under one prefix of a dedicated bucket,
SSE-KMS with the pipeline key, expired after 7 days, and a bytes-scanned cutoff per query so
a query without a partition filter cannot scan the whole history by accident. The managed
policy `<stack>-audit` is everything a person or a job needs to run the audit, nothing more:
attach it to a role or group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cascata.cdk.access import nag_resource
from cascata.cdk.archive import ARCHIVE_KINDS
from cascata.cdk.naming import pin, stable_id

RESULTS_PREFIX = "results"
RESULTS_EXPIRATION = Duration.days(7)
BYTES_SCANNED_CUTOFF = 10 * 1024**3
"""10 GiB per query: months of payments with a partition filter, never a full-history scan."""

PROJECTION_START = "2020-01-01"
ENGINE_VERSION = "Athena engine version 3"

JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    comment: str


EVENT_COLUMNS = (
    Column("shard_id", "string", "source shard of the raw stream"),
    Column("sequence_number", "string", "source sequence number (order within the shard)"),
    Column("subsequence_number", "bigint",
           "place of a user record in its KPL aggregate; null when not aggregated"),
    Column("partition_key", "string", "Kinesis partition key"),
    Column("arrival_ms", "bigint", "arrival in the raw stream, epoch milliseconds"),
    Column("occurred_at", "string", "event time, RFC 3339 UTC"),
    Column("event_id", "string", "producer-assigned event id"),
    Column("type", "string", "event type, e.g. payment.made"),
    Column("data", "string", "the producer's exact bytes (the whole envelope), as JSON text"),
)
ERROR_COLUMNS = (
    Column("shard_id", "string", "source shard of the raw stream"),
    Column("sequence_number", "string", "source sequence number (order within the shard)"),
    Column("subsequence_number", "bigint",
           "place of a user record in its KPL aggregate; null when not aggregated"),
    Column("partition_key", "string", "Kinesis partition key"),
    Column("arrival_ms", "bigint", "arrival in the raw stream, epoch milliseconds"),
    Column("data", "string", "the record's bytes as text, when they are UTF-8"),
    Column("data_base64", "string", "the record's bytes in base64, when they are not UTF-8"),
    Column(
        "error",
        "struct<field:string,code:string,reason:string>",
        "why the record is not an event",
    ),
)
PARTITION_COLUMNS = (
    Column("stream", "string", "the archived stream, by its declared or physical name"),
    Column("date", "string", "yyyy-MM-dd: event date (events), arrival date (errors), UTC"),
    Column("hour", "string", "00-23, UTC"),
)


def glue_name(name: str) -> str:
    """Athena names are lowercase letters, digits and underscores (no quoting needed)."""
    return name.replace("-", "_").lower()


class ArchiveAudit(Construct):
    """Glue tables over the archive, an Athena workgroup and the policy to run the audit."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        archive_bucket: s3.IBucket,
        streams: Sequence[str],
        encryption_key: kms.IKey,
        access_logs: s3.IBucket,
        removal_policy: RemovalPolicy,
        bytes_scanned_cutoff: int = BYTES_SCANNED_CUTOFF,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        account, region = stack.account, stack.region
        self.database_name = glue_name(f"{name}_archive")
        self.workgroup_name = f"{name}-audit"

        self.results_bucket = s3.Bucket(
            self,
            "ResultsBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=encryption_key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            # Versioned like every bucket of the stack; an overwritten result is kept a day.
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="audit-results/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-query-results",
                    expiration=RESULTS_EXPIRATION,
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=removal_policy,
        )
        pin(self.results_bucket, stable_id("Bucket", "audit-results"))

        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name,
                description=f"The {name} archive (s3://{archive_bucket.bucket_name}/): raw "
                "events and non-event records, for audits and batch recomputation.",
            ),
        )
        pin(self.database, stable_id("GlueDatabase", "archive"))
        self.tables = {
            kind: self._table(
                kind,
                bucket=archive_bucket,
                columns=EVENT_COLUMNS if kind == "events" else ERROR_COLUMNS,
                streams=streams,
            )
            for kind in ARCHIVE_KINDS
        }

        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=self.workgroup_name,
            description=f"Audit queries over the {name} archive; results expire after "
            f"{RESULTS_EXPIRATION.to_days()} days",
            state="ENABLED",
            recursive_delete_option=removal_policy is RemovalPolicy.DESTROY,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=bytes_scanned_cutoff,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version=ENGINE_VERSION
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.results_bucket.bucket_name}/{RESULTS_PREFIX}/",
                    expected_bucket_owner=account,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=encryption_key.key_arn
                    ),
                ),
            ),
        )
        pin(self.workgroup, stable_id("AthenaWorkGroup", "audit"))
        self.workgroup.apply_removal_policy(removal_policy)

        self.audit_policy = self._policy(
            name=name,
            archive_bucket=archive_bucket,
            encryption_key=encryption_key,
            region=region,
        )
        # Pinned: the policy has a fixed name (a replacement would collide with it), and
        # people and roles outside the stack attach it by that name.
        pin(self.audit_policy, stable_id("AuditPolicy"))
        Validations.of(self.audit_policy).acknowledge(
            *(
                Acknowledgment(
                    id=_finding(self, archive_bucket.arn_for_objects(f"{kind}/*")),
                    reason=f"Athena reads every object of the archive's `{kind}/` prefix that "
                    f"a query's partitions select (the `{kind}` table's location); no other "
                    "prefix of the archive.",
                )
                for kind in ARCHIVE_KINDS
            ),
            Acknowledgment(
                id=_finding(self, self.results_bucket.arn_for_objects(f"{RESULTS_PREFIX}/*")),
                reason="Athena writes and the caller reads query results under the workgroup's "
                f"`{RESULTS_PREFIX}/` prefix, one object per query execution id.",
            ),
        )

    def _table(
        self,
        kind: str,
        *,
        bucket: s3.IBucket,
        columns: Sequence[Column],
        streams: Sequence[str],
    ) -> glue.CfnTable:
        location = f"s3://{bucket.bucket_name}/{kind}/"
        table = glue.CfnTable(
            self,
            f"{kind.capitalize()}Table",
            catalog_id=Stack.of(self).account,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=kind,
                description=(
                    "Archived events, partitioned by event date and hour (UTC)"
                    if kind == "events"
                    else "Archived records that are not events, with the reason, partitioned "
                    "by arrival date and hour (UTC)"
                ),
                table_type="EXTERNAL_TABLE",
                partition_keys=[_column(c) for c in PARTITION_COLUMNS],
                parameters={
                    "EXTERNAL": "TRUE",
                    "classification": "json",
                    "compressionType": "gzip",
                    "projection.enabled": "true",
                    "projection.stream.type": "enum",
                    "projection.stream.values": ",".join(streams),
                    "projection.date.type": "date",
                    "projection.date.format": "yyyy-MM-dd",
                    "projection.date.range": f"{PROJECTION_START},NOW",
                    "projection.date.interval": "1",
                    "projection.date.interval.unit": "DAYS",
                    "projection.hour.type": "integer",
                    "projection.hour.range": "0,23",
                    "projection.hour.digits": "2",
                    "storage.location.template": (
                        location + "stream=${stream}/date=${date}/hour=${hour}/"
                    ),
                },
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    columns=[_column(c) for c in columns],
                    input_format=TEXT_INPUT,
                    output_format=TEXT_OUTPUT,
                    compressed=True,
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library=JSON_SERDE,
                        parameters={"ignore.malformed.json": "false"},
                    ),
                ),
            ),
        )
        table.add_resource_dependency(self.database)
        pin(table, stable_id("GlueTable", f"archive-{kind}"))
        return table

    def table_arn(self, kind: str) -> str:
        return Stack.of(self).format_arn(
            service="glue", resource="table", resource_name=f"{self.database_name}/{kind}"
        )

    def _policy(
        self,
        *,
        name: str,
        archive_bucket: s3.IBucket,
        encryption_key: kms.IKey,
        region: str,
    ) -> iam.ManagedPolicy:
        stack = Stack.of(self)
        workgroup_arn = stack.format_arn(
            service="athena", resource="workgroup", resource_name=self.workgroup_name
        )
        catalog_arn = stack.format_arn(service="glue", resource="catalog")
        database_arn = stack.format_arn(
            service="glue", resource="database", resource_name=self.database_name
        )
        results = self.results_bucket
        return iam.ManagedPolicy(
            self,
            "Policy",
            managed_policy_name=f"{name}-audit",
            description=f"Run audit queries over the {name} archive in the {self.workgroup_name} "
            "Athena workgroup",
            statements=[
                iam.PolicyStatement(
                    sid="RunQueriesInTheAuditWorkgroup",
                    actions=[
                        "athena:GetQueryExecution",
                        "athena:GetQueryResults",
                        "athena:StartQueryExecution",
                    ],
                    resources=[workgroup_arn],
                ),
                # Athena resolves the database, then the table; partitions are projected, so
                # GetPartitions is only asked for by engines that ignore projection.
                iam.PolicyStatement(
                    sid="ReadTheArchiveTables",
                    actions=["glue:GetDatabase", "glue:GetPartitions", "glue:GetTable"],
                    resources=[
                        catalog_arn,
                        database_arn,
                        *(self.table_arn(kind) for kind in ARCHIVE_KINDS),
                    ],
                ),
                iam.PolicyStatement(
                    sid="ReadTheArchive",
                    actions=["s3:GetObject"],
                    resources=[archive_bucket.arn_for_objects(f"{k}/*") for k in ARCHIVE_KINDS],
                ),
                iam.PolicyStatement(
                    sid="ListTheArchive",
                    actions=["s3:ListBucket"],
                    resources=[archive_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{k}/*" for k in ARCHIVE_KINDS]}},
                ),
                iam.PolicyStatement(
                    sid="WriteAndReadQueryResults",
                    actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                    resources=[results.arn_for_objects(f"{RESULTS_PREFIX}/*")],
                ),
                iam.PolicyStatement(
                    sid="LocateTheBuckets",
                    actions=["s3:GetBucketLocation"],
                    resources=[archive_bucket.bucket_arn, results.bucket_arn],
                ),
                iam.PolicyStatement(
                    sid="ListQueryResults",
                    actions=["s3:ListBucket", "s3:ListBucketMultipartUploads"],
                    resources=[results.bucket_arn],
                ),
                iam.PolicyStatement(
                    sid="UseThePipelineKeyThroughS3",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[encryption_key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
                ),
            ],
        )


def _column(column: Column) -> glue.CfnTable.ColumnProperty:
    return glue.CfnTable.ColumnProperty(name=column.name, type=column.type, comment=column.comment)


def _finding(scope: Construct, resource: str) -> str:
    return f"AwsSolutions-IAM5[Resource::{nag_resource(scope, resource)}]"
