"""Least-privilege grants from a Binding's access level, per resource kind.

CDK's `grant*` helpers are convenient but wide (`s3:DeleteObject*`, `kms:ReEncrypt*`, read
*and* write for an S3 on-failure destination). The declaration says exactly what each function
may do with each resource, so the statements are spelled out here, one table, no wildcards in
actions. KMS use is granted on the pipeline key and limited with `kms:ViaService` to the service
that owns the resource, so a function that may write a bucket cannot use the key for anything
else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import IConstruct

from cascata.pipeline import ResourceKind

Access = Literal["read", "write", "read_write"]


@dataclass(frozen=True, slots=True)
class Permissions:
    """IAM actions on the resource and on the KMS key that encrypts it."""

    actions: tuple[str, ...]
    key_actions: tuple[str, ...]
    object_level: bool = False
    """S3: object actions apply to `bucket/*`, bucket actions to the bucket itself."""
    index_actions: tuple[str, ...] = ()
    """DynamoDB: actions also allowed on the table's declared global secondary indexes."""


# Kinesis producers need only GenerateDataKey; consumers need Decrypt (Kinesis KMS guide).
# DynamoDB with a customer-managed key calls KMS with the caller's permissions for both.
# S3 SSE-KMS: PutObject needs GenerateDataKey, multipart completion and GetObject need Decrypt.
_PERMISSIONS: dict[tuple[ResourceKind, str], Permissions] = {
    (ResourceKind.STREAM, "read"): Permissions(
        actions=(
            "kinesis:DescribeStream",
            "kinesis:DescribeStreamSummary",
            "kinesis:GetRecords",
            "kinesis:GetShardIterator",
            "kinesis:ListShards",
            "kinesis:SubscribeToShard",
        ),
        key_actions=("kms:Decrypt",),
    ),
    (ResourceKind.STREAM, "write"): Permissions(
        actions=(
            "kinesis:DescribeStreamSummary",
            "kinesis:ListShards",
            "kinesis:PutRecord",
            "kinesis:PutRecords",
        ),
        key_actions=("kms:GenerateDataKey",),
    ),
    # Item reads and key-condition queries only: no Scan (a full-table read no view needs),
    # no DescribeTable (the SDK never calls it on the data path).
    (ResourceKind.TABLE, "read"): Permissions(
        actions=("dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query"),
        key_actions=("kms:Decrypt", "kms:DescribeKey"),
        index_actions=("dynamodb:Query",),
    ),
    # Conditional puts and updates (the writes are fenced by versions and source positions);
    # no DeleteItem and no BatchWriteItem, whose DeleteRequest would be a delete by another name.
    (ResourceKind.TABLE, "write"): Permissions(
        actions=("dynamodb:ConditionCheckItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
        key_actions=("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"),
    ),
    (ResourceKind.BUCKET, "read"): Permissions(
        actions=("s3:GetObject",),
        key_actions=("kms:Decrypt",),
        object_level=True,
    ),
    (ResourceKind.BUCKET, "write"): Permissions(
        actions=("s3:AbortMultipartUpload", "s3:PutObject"),
        key_actions=("kms:Decrypt", "kms:GenerateDataKey"),
        object_level=True,
    ),
    (ResourceKind.QUEUE, "read"): Permissions(
        actions=(
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
            "sqs:ReceiveMessage",
        ),
        key_actions=("kms:Decrypt",),
    ),
    (ResourceKind.QUEUE, "write"): Permissions(
        actions=("sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"),
        key_actions=("kms:Decrypt", "kms:GenerateDataKey"),
    ),
    (ResourceKind.TOPIC, "read"): Permissions(
        actions=("sns:GetTopicAttributes",),
        key_actions=(),
    ),
    (ResourceKind.TOPIC, "write"): Permissions(
        actions=("sns:Publish",),
        key_actions=("kms:Decrypt", "kms:GenerateDataKey"),
    ),
}

_VIA_SERVICE = {
    ResourceKind.STREAM: "kinesis",
    ResourceKind.TABLE: "dynamodb",
    ResourceKind.BUCKET: "s3",
    ResourceKind.QUEUE: "sqs",
    ResourceKind.TOPIC: "sns",
}


def permissions(kind: ResourceKind, access: Access) -> list[Permissions]:
    """The permission sets for an access level (`read_write` is read plus write)."""
    levels = ("read", "write") if access == "read_write" else (access,)
    return [_PERMISSIONS[(kind, level)] for level in levels]


def grant(
    grantee: iam.IGrantable,
    *,
    kind: ResourceKind,
    access: Access,
    resource_arn: str,
    key: kms.IKey | None,
    scope: IConstruct,
    extra_actions: Sequence[str] = (),
    indexes: Sequence[str] = (),
) -> None:
    """Allow `grantee` exactly `access` on one resource and, if encrypted, on its key.

    `indexes` names a table's global secondary indexes: index-level actions are granted on
    each declared index by name (`<table-arn>/index/<name>`), never on `index/*`.
    """
    sets = permissions(kind, access)
    object_actions = sorted({a for p in sets if p.object_level for a in p.actions})
    resource_actions = sorted({a for p in sets if not p.object_level for a in p.actions})
    resource_actions = sorted({*resource_actions, *extra_actions})
    if object_actions:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=object_actions, resources=[f"{resource_arn}/*"])
        )
    if resource_actions:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=resource_actions, resources=[resource_arn])
        )
    index_actions = sorted({a for p in sets for a in p.index_actions})
    if index_actions and indexes:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=index_actions,
                resources=[f"{resource_arn}/index/{name}" for name in indexes],
            )
        )
    key_actions = sorted({a for p in sets for a in p.key_actions})
    if key is not None and key_actions:
        region = Stack.of(scope).region
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=key_actions,
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": f"{_VIA_SERVICE[kind]}.{region}.amazonaws.com"
                    }
                },
            )
        )


VERSIONED_TABLE_SUFFIX = "-v*"
"""Tables of versions built by replay are `<declared physical name>-v<N>`
(`cascata_runtime.versions.versioned_name`); this matches them and only them."""


@dataclass(frozen=True, slots=True)
class VersionedTable:
    """A view a reader follows across versions: its v1 physical name and declared indexes."""

    table_name: str
    indexes: tuple[str, ...] = ()


def versioned_table_arns(scope: IConstruct, table: VersionedTable) -> tuple[str, list[str]]:
    """The ARN pattern of every later version of a table, and of each declared index of it."""
    stack = Stack.of(scope)
    table_arn = stack.format_arn(
        service="dynamodb",
        resource="table",
        resource_name=f"{table.table_name}{VERSIONED_TABLE_SUFFIX}",
    )
    return table_arn, [f"{table_arn}/index/{name}" for name in table.indexes]


def grant_versioned_reads(
    grantee: iam.IGrantable, *, tables: Sequence[VersionedTable], scope: IConstruct
) -> None:
    """Allow a reader that follows the live pointer to read every version of these views.

    The versions do not exist when the reader is deployed (a replay creates them later, in a
    stack of its own), so they are named by pattern: `table/<name>-v*` with the table read
    actions and `table/<name>-v*/index/<declared index>` with Query, nothing broader. The
    versions are encrypted with the same pipeline key, which the v1 read grant already covers.
    """
    read = permissions(ResourceKind.TABLE, "read")[0]
    table_arns: list[str] = []
    index_arns: list[str] = []
    for table in tables:
        table_arn, indexes = versioned_table_arns(scope, table)
        table_arns.append(table_arn)
        index_arns.extend(indexes)
    if table_arns:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=sorted(read.actions), resources=table_arns)
        )
    if index_arns:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=sorted(read.index_actions), resources=index_arns)
        )


def nag_resource(scope: IConstruct, value: str) -> str:
    """A resource as cdk-nag prints it in a finding id (`AwsSolutions-IAM5[Resource::...]`):
    literals as they are, `<LogicalId.Attr>` for a GetAtt, `<LogicalId>` for a Ref, joins
    concatenated. Acknowledgments are computed with it, never typed by hand."""
    return _render(Stack.of(scope).resolve(value))


def _render(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((intrinsic, argument),) = node.items()
        if intrinsic == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if intrinsic == "Ref":
            return f"<{argument}>"
        if intrinsic == "Fn::Join":
            separator, parts = argument
            return str(separator).join(_render(part) for part in parts)
    return json.dumps(node, separators=(",", ":"))
