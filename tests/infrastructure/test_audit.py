"""The audit over the archive: Glue tables Athena can query without crawlers, a workgroup that
enforces where results go and how much a query may scan, and one policy to run it."""

from __future__ import annotations

import json
import re
from typing import Any

from cascata_runtime.archive import Partition

from .conftest import Synthesized

EVENT_COLUMNS = {
    "shard_id": "string",
    "sequence_number": "string",
    "subsequence_number": "bigint",
    "partition_key": "string",
    "arrival_ms": "bigint",
    "occurred_at": "string",
    "event_id": "string",
    "type": "string",
    "data": "string",
}


def _table(synth: Synthesized, name: str) -> dict[str, Any]:
    (table,) = [
        t["Properties"]
        for t in synth.of_type("AWS::Glue::Table").values()
        if t["Properties"]["TableInput"]["Name"] == name
    ]
    return table


def _join(value: Any) -> list[Any]:
    return value["Fn::Join"][1]


def test_glue_tables_read_the_archive_layout_with_partition_projection(
    dev: Synthesized,
) -> None:
    (database,) = dev.of_type("AWS::Glue::Database").values()
    assert database["Properties"]["DatabaseInput"]["Name"] == "cascata_dev_archive"
    archive = dev.logical_id("AWS::S3::Bucket", "BucketName", dev.physical("archive"))
    assert {
        t["Properties"]["TableInput"]["Name"] for t in dev.of_type("AWS::Glue::Table").values()
    } == {
        "events",
        "errors",
    }
    for kind in ("events", "errors"):
        # Given the table over one top-level prefix of the archive
        table = _table(dev, kind)
        assert table["DatabaseName"] == "cascata_dev_archive"
        table_input = table["TableInput"]
        descriptor = table_input["StorageDescriptor"]
        # Then it reads gzip JSON lines under that prefix...
        assert _join(descriptor["Location"]) == ["s3://", {"Ref": archive}, f"/{kind}/"]
        assert descriptor["SerdeInfo"]["SerializationLibrary"] == (
            "org.openx.data.jsonserde.JsonSerDe"
        )
        assert descriptor["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
        # ... partitioned by stream, date and hour, projected (no crawler, no MSCK REPAIR)
        assert [k["Name"] for k in table_input["PartitionKeys"]] == ["stream", "date", "hour"]
        params = table_input["Parameters"]
        assert params["projection.enabled"] == "true"
        assert params["projection.stream.type"] == "enum"
        # (each archived stream under both names it can have in the layout: the declared
        # one, as the local archiver writes it, and the physical one, as Firehose's event has it)
        assert params["projection.stream.values"].split(",") == [
            "payments-raw",
            "customers",
            "cascata-dev-payments-raw",
            "cascata-dev-customers",
        ]
        assert (params["projection.date.type"], params["projection.date.format"]) == (
            "date",
            "yyyy-MM-dd",
        )
        assert params["projection.date.range"] == "2020-01-01,NOW"
        assert (params["projection.hour.type"], params["projection.hour.range"]) == (
            "integer",
            "0,23",
        )
        assert params["projection.hour.digits"] == "2"
        # ... and the location template is the archive layout's own partition prefix
        template = _join(params["storage.location.template"])
        assert template[:2] == ["s3://", {"Ref": archive}]
        values = {"stream": "payments-raw", "date": "2026-11-25", "hour": "07"}
        rendered = re.sub(r"\$\{(\w+)\}", lambda m, v=values: v[m[1]], template[2])
        assert rendered == "/" + Partition(kind=kind, **values).prefix
        # ... with no data column named like a partition column (Hive refuses that)
        columns = {c["Name"]: c["Type"] for c in descriptor["Columns"]}
        assert not set(columns) & {"stream", "date", "hour"}
    # The events table has the documented columns
    events = _table(dev, "events")["TableInput"]["StorageDescriptor"]["Columns"]
    assert {c["Name"]: c["Type"] for c in events} == EVENT_COLUMNS
    errors = _table(dev, "errors")["TableInput"]["StorageDescriptor"]["Columns"]
    assert {c["Name"]: c["Type"] for c in errors}["subsequence_number"] == "bigint"
    assert {c["Name"]: c["Type"] for c in errors}["error"] == (
        "struct<field:string,code:string,reason:string>"
    )


def test_workgroup_enforces_encrypted_expiring_results_and_a_scan_cutoff(
    dev: Synthesized,
) -> None:
    (workgroup,) = dev.of_type("AWS::Athena::WorkGroup").values()
    props = workgroup["Properties"]
    assert props["Name"] == "cascata-dev-audit"
    config = props["WorkGroupConfiguration"]
    # Clients cannot override where results go or how they are encrypted
    assert config["EnforceWorkGroupConfiguration"] is True
    assert 10 * 1024**2 <= config["BytesScannedCutoffPerQuery"] <= 100 * 1024**3
    key = next(iter(dev.of_type("AWS::KMS::Key")))
    results = config["ResultConfiguration"]
    assert results["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS",
        "KmsKey": {"Fn::GetAtt": [key, "Arn"]},
    }
    assert _join(results["OutputLocation"]) == ["s3://", {"Ref": "BucketAuditResults"}, "/results/"]
    # ... into a dedicated bucket, KMS, private, TLS-only, logged, results gone after 7 days
    bucket = dev.resources["BucketAuditResults"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": [key, "Arn"]}}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "audit-results/"
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == 7


def _by_sid(synth: Synthesized) -> dict[str, dict[str, Any]]:
    (policy,) = synth.of_type("AWS::IAM::ManagedPolicy").values()
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def test_audit_policy_is_exactly_what_running_the_audit_needs(dev: Synthesized) -> None:
    statements = _by_sid(dev)
    prefix = f"arn:aws:{{}}:{dev.config.region}:{dev.config.account}:"
    # Athena: run, follow and read queries, in the audit workgroup only
    athena = statements["RunQueriesInTheAuditWorkgroup"]
    assert _actions(athena) == {
        "athena:StartQueryExecution",
        "athena:GetQueryExecution",
        "athena:GetQueryResults",
    }
    assert athena["Resource"] == prefix.format("athena") + "workgroup/cascata-dev-audit"
    # Glue: those two tables (and their database and catalog, which Athena resolves)
    glue = statements["ReadTheArchiveTables"]
    assert _actions(glue) == {"glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"}
    assert sorted(glue["Resource"]) == sorted(
        prefix.format("glue") + r
        for r in (
            "catalog",
            "database/cascata_dev_archive",
            "table/cascata_dev_archive/events",
            "table/cascata_dev_archive/errors",
        )
    )
    # S3: read the archive's events/ and errors/, write and read results/
    archive = dev.logical_id("AWS::S3::Bucket", "BucketName", dev.physical("archive"))
    read = statements["ReadTheArchive"]
    assert _actions(read) == {"s3:GetObject"}
    assert sorted(_join(r)[1] for r in read["Resource"]) == ["/errors/*", "/events/*"]
    assert {json.dumps(_join(r)[0]) for r in read["Resource"]} == {
        json.dumps({"Fn::GetAtt": [archive, "Arn"]})
    }
    listing = statements["ListTheArchive"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["events/*", "errors/*"]}}
    results = statements["WriteAndReadQueryResults"]
    assert _actions(results) == {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}
    assert _join(results["Resource"])[1] == "/results/*"
    # KMS only through S3; and nothing else anywhere
    kms = statements["UseThePipelineKeyThroughS3"]
    assert kms["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{dev.config.region}.amazonaws.com"}
    }
    every = {a for s in statements.values() for a in _actions(s)}
    assert not [a for a in every if "*" in a or a.startswith(("s3:Delete", "glue:Create"))]
    assert all(s["Resource"] != "*" for s in statements.values())


def test_the_policy_workgroup_and_database_are_outputs(dev: Synthesized) -> None:
    outputs = dev.json["Outputs"]
    (policy_id,) = dev.of_type("AWS::IAM::ManagedPolicy")
    assert outputs["AuditPolicyArn"]["Value"] == {"Ref": policy_id}
    assert outputs["AuditWorkGroup"]["Value"] == "cascata-dev-audit"
    assert outputs["AuditDatabase"]["Value"] == "cascata_dev_archive"
    assert outputs["AuditResultsBucketName"]["Value"] == {"Ref": "BucketAuditResults"}
