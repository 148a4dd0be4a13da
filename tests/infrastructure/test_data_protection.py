"""Data protection, per stage: what keeps history and state from being lost.

The archive is the only copy of history beyond stream retention and the source of every
replay and audit: versioned, its deletes denied to everyone but the break-glass role, its
access logged. Every other bucket is versioned and logged too; every table has point-in-time
recovery, and deletion protection where the stage asks for it (prod). docs/security.md says
why a deny and not S3 Object Lock.
"""

from __future__ import annotations

from typing import Any

import pytest

from cascata.cdk.storage import HISTORY_DELETE_ACTIONS, HISTORY_SETTINGS_ACTIONS

from .conftest import ACCOUNT, Synthesized

STAGES = ["dev", "prod", "msk"]
WITH_VERSIONS = [*STAGES, "v2_stream", "v2_archive"]
ACCESS_LOGS = "BucketAccessLogs"


def _bucket_policy(synth: Synthesized, bucket_id: str) -> list[dict[str, Any]]:
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synth.of_type("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    statements: list[dict[str, Any]] = policy
    return statements


def _archive_bucket(synth: Synthesized) -> str:
    (name,) = {synth.physical(a.bucket) for a in synth.pipeline.archives}
    return synth.logical_id("AWS::S3::Bucket", "BucketName", name)


def _role(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_bucket_is_versioned_and_logged_to_the_access_log_bucket(
    stage: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(stage)
    buckets = synth.of_type("AWS::S3::Bucket")
    # Given the stage's buckets: the declared ones (archive, quarantine, on-failure), the audit
    # results and the access-log bucket
    declared = {synth.physical(b.name) for b in synth.pipeline.buckets}
    assert declared <= {b["Properties"].get("BucketName") for b in buckets.values()}
    assert ACCESS_LOGS in buckets
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        # Then every one is versioned...
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        # ... keeps old versions until its lifecycle says (never, for the archive)...
        for rule in props["LifecycleConfiguration"]["Rules"]:
            if "ExpirationInDays" in rule:
                assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1, logical_id
        # ... and every one but the log bucket itself logs its access there, under its prefix
        if logical_id == ACCESS_LOGS:
            assert "LoggingConfiguration" not in props
            continue
        logging = props["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": ACCESS_LOGS}, logical_id
        assert logging["LogFilePrefix"].endswith("/"), logical_id
    prefixes = [
        b["Properties"]["LoggingConfiguration"]["LogFilePrefix"]
        for k, b in buckets.items()
        if k != ACCESS_LOGS
    ]
    assert len(set(prefixes)) == len(prefixes)


@pytest.mark.parametrize("stage", STAGES)
def test_the_access_log_bucket_can_receive_logs_and_expires_them(
    stage: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(stage)
    props = synth.resources[ACCESS_LOGS]["Properties"]
    # S3 log delivery cannot write SSE-KMS: SSE-S3, private, TLS-only, expiring
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == synth.config.access_log_expiration_days
    statements = _bucket_policy(synth, ACCESS_LOGS)
    assert any(
        s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )
    # ... and the S3 logging service may write there, for this account's buckets only
    deliveries = [
        s for s in statements if s.get("Principal") == {"Service": "logging.s3.amazonaws.com"}
    ]
    assert len(deliveries) == len(synth.of_type("AWS::S3::Bucket")) - 1
    for delivery in deliveries:
        assert delivery["Effect"] == "Allow" and delivery["Action"] == "s3:PutObject"
        assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}


@pytest.mark.parametrize("stage", STAGES)
def test_the_archive_denies_deleting_history_outside_the_break_glass_role(
    stage: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(stage)
    archive = _archive_bucket(synth)
    statements = {s.get("Sid"): s for s in _bucket_policy(synth, archive)}
    break_glass = _role(synth.config.break_glass_role)
    deployment = _role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{synth.config.region}")
    # Then deleting an object or a version is denied to every principal but break-glass...
    objects = statements["HistoryIsNeverDeleted"]
    assert objects["Effect"] == "Deny" and objects["Principal"] == {"AWS": "*"}
    assert sorted(objects["Action"]) == sorted(HISTORY_DELETE_ACTIONS)
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(objects["Action"])
    assert objects["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [archive, "Arn"]}, "/*"]]
    }
    assert objects["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": break_glass}}
    # ... and the settings that would lose history (versioning, lifecycle, replication, the
    # bucket itself) to everyone but break-glass and the deployment (a reviewed change)
    settings = statements["HistorySettingsOnlyByDeploymentOrBreakGlass"]
    assert settings["Effect"] == "Deny" and settings["Principal"] == {"AWS": "*"}
    assert {"s3:PutLifecycleConfiguration", "s3:PutBucketVersioning", "s3:DeleteBucket"} <= set(
        settings["Action"]
    )
    assert sorted(settings["Action"]) == sorted(HISTORY_SETTINGS_ACTIONS)
    assert settings["Resource"] == {"Fn::GetAtt": [archive, "Arn"]}
    assert settings["Condition"] == {
        "ArnNotLike": {"aws:PrincipalArn": [break_glass, deployment]}
    }
    # The archive's own lifecycle only moves history to a colder class: nothing expires
    (rule,) = synth.resources[archive]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert not [k for k in rule if "Expiration" in k]
    # No other bucket is guarded: quarantine and on-failure records expire by design
    for logical_id in synth.of_type("AWS::S3::Bucket"):
        if logical_id != archive and logical_id != ACCESS_LOGS:
            sids = {s.get("Sid") for s in _bucket_policy(synth, logical_id)}
            assert "HistoryIsNeverDeleted" not in sids, logical_id


def test_the_break_glass_role_is_a_stage_knob(tmp_path_factory: pytest.TempPathFactory) -> None:
    from .conftest import synthesize

    # Given an SSO permission set's role (generated suffix) as the break-glass role
    role = "aws-reserved/sso.amazonaws.com/*/AWSReservedSSO_BreakGlass_*"
    synth = synthesize(
        tmp_path_factory.mktemp("break-glass"), stage="dev", break_glass_role=role, nag=False
    )
    statements = {s.get("Sid"): s for s in _bucket_policy(synth, _archive_bucket(synth))}
    # Then the deny names it, wildcards kept for ArnLike
    condition = statements["HistoryIsNeverDeleted"]["Condition"]
    assert condition == {"ArnNotLike": {"aws:PrincipalArn": _role(role)}}


@pytest.mark.parametrize("variant", WITH_VERSIONS)
def test_every_table_has_point_in_time_recovery_and_the_stage_deletion_protection(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    tables = synth.of_type("AWS::DynamoDB::Table")
    assert tables
    for logical_id, table in tables.items():
        props = table["Properties"]
        assert props["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }, logical_id
        assert props["DeletionProtectionEnabled"] is synth.config.deletion_protection, logical_id
    # prod protects every view and state table from deletion and keeps it if the stack goes;
    # dev keeps neither, for a cheap teardown
    if synth.config.stage == "prod":
        assert synth.config.deletion_protection and synth.config.retain_data
        assert {t["DeletionPolicy"] for t in tables.values()} == {"Retain"}
    else:
        assert not synth.config.deletion_protection
        assert {t["DeletionPolicy"] for t in tables.values()} == {"Delete"}
