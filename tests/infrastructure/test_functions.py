"""Functions: runtime, packaging, logging, tracing, environment and least-privilege grants.

The environment test is the contract with the handlers: each function gets exactly the
variables its settings class reads (plus Powertools'), and each value is the physical name of
the resource the declaration binds, in the template, in this stage.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cascata.pipeline import PIPELINE, ResourceKind
from payments.settings import SETTINGS_BY_FUNCTION
from stacks.access import permissions

from .conftest import REGION, Synthesized

POWERTOOLS_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}
_TYPE_AND_NAME = {
    ResourceKind.STREAM: ("AWS::Kinesis::Stream", "Name"),
    ResourceKind.TABLE: ("AWS::DynamoDB::Table", "TableName"),
    ResourceKind.BUCKET: ("AWS::S3::Bucket", "BucketName"),
    ResourceKind.QUEUE: ("AWS::SQS::Queue", "QueueName"),
    ResourceKind.TOPIC: ("AWS::SNS::Topic", "TopicName"),
}


def _environment(synth: Synthesized, processor: str) -> dict[str, str]:
    _, function = synth.function(processor)
    variables: dict[str, str] = function["Properties"]["Environment"]["Variables"]
    return variables


def test_every_declared_processor_has_a_settings_class() -> None:
    assert set(SETTINGS_BY_FUNCTION) == {p.name for p in PIPELINE.processors}


def test_environment_is_exactly_what_the_settings_read_plus_powertools(
    every_stage: Synthesized,
) -> None:
    for proc in every_stage.pipeline.processors:
        # Given the variables the function's settings class reads
        reads = SETTINGS_BY_FUNCTION[proc.name].variables()
        # Then the function gets exactly those plus the Powertools ones
        environment = _environment(every_stage, proc.name)
        assert set(environment) == reads | POWERTOOLS_VARIABLES, proc.name
        # ... which are the declaration's own rendering, nothing hand-written
        assert {k: v for k, v in environment.items() if k in reads} == (
            every_stage.pipeline.environment(
                proc.name,
                stage=every_stage.config.stage,
                account=every_stage.config.account,
                region=every_stage.config.region,
            )
        )
        assert environment["POWERTOOLS_SERVICE_NAME"] == proc.name
        assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "Cascata"
        assert environment["POWERTOOLS_LOG_LEVEL"] == every_stage.config.log_level
        assert environment["PIPELINE_STAGE"] == every_stage.config.stage


@pytest.mark.parametrize("variant", ["dev", "prod", "features"])
def test_each_bound_variable_names_a_resource_the_function_may_use(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    for proc in synth.pipeline.processors:
        environment = _environment(synth, proc.name)
        granted = _granted_resources(synth.policy_statements(proc.name))
        for binding in proc.bindings:
            # Given a declared binding
            kind = synth.pipeline.resource(binding.resource).kind
            resource_type, name_property = _TYPE_AND_NAME[kind]
            # Then its variable holds the physical name of that resource in the template
            logical_id = synth.logical_id(resource_type, name_property, environment[binding.env])
            # ... and the function's policy grants on that very resource
            assert logical_id in granted, f"{proc.name}: {binding.env} -> {logical_id}"


def test_msk_stream_variables_name_the_topics_the_mappings_read(msk: Synthesized) -> None:
    topics = {
        t
        for m in msk.of_type("AWS::Lambda::EventSourceMapping").values()
        for t in m["Properties"]["Topics"]
    }
    outputs = {o["Value"] for o in msk.json["Outputs"].values() if isinstance(o["Value"], str)}
    for proc in msk.pipeline.processors:
        environment = _environment(msk, proc.name)
        for binding in proc.bindings:
            if msk.pipeline.resource(binding.resource).kind is ResourceKind.STREAM:
                assert environment[binding.env] in outputs, binding.env
                assert environment[binding.env] == msk.physical(binding.resource)
    assert topics <= outputs


def test_functions_are_python311_arm64_with_the_pinned_powertools_layer(
    every_stage: Synthesized,
) -> None:
    # The AWS-published Powertools v3 layer for this runtime and architecture, by version.
    layer = re.compile(
        rf"^arn:aws:lambda:{REGION}:017000801446:layer:"
        r"AWSLambdaPowertoolsPythonV3-python311-arm64:\d+$"
    )
    for proc in every_stage.pipeline.processors:
        _, function = every_stage.function(proc.name)
        props = function["Properties"]
        assert props["Runtime"] == "python3.11"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == proc.handler
        assert props["MemorySize"] == proc.memory_mb
        assert props["Timeout"] == proc.timeout_s
        assert props["FunctionName"] == every_stage.physical(proc.name)
        assert len(props["Layers"]) == 1 and layer.match(props["Layers"][0]), props["Layers"]
        assert props["Layers"][0].endswith(f":{every_stage.config.powertools_layer_version}")
        # Structured logs into the function's own log group, traced
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert props["TracingConfig"] == {"Mode": "Active"}
        log_group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
        log_group = every_stage.resources[log_group_id]["Properties"]
        assert log_group["LogGroupName"] == f"/aws/lambda/{props['FunctionName']}"
        assert log_group["RetentionInDays"] == every_stage.config.log_retention_days
        assert "KmsKeyId" in log_group
        # No reserved concurrency unless declared
        assert "ReservedConcurrentExecutions" not in props


def test_declared_reserved_concurrency_is_applied(features: Synthesized) -> None:
    _, function = features.function("balances")
    assert function["Properties"]["ReservedConcurrentExecutions"] == 4


def test_msk_functions_run_in_the_private_subnets(msk: Synthesized) -> None:
    subnets = set(msk.of_type("AWS::EC2::Subnet"))
    for proc in msk.pipeline.processors:
        _, function = msk.function(proc.name)
        vpc_config = function["Properties"]["VpcConfig"]
        assert {s["Ref"] for s in vpc_config["SubnetIds"]} == subnets


def test_code_asset_is_the_lambdas_folder_without_caches_or_tests(dev: Synthesized) -> None:
    # Given the asset every function points at
    hashes = {
        f["Properties"]["Code"]["S3Key"].removesuffix(".zip")
        for f in dev.of_type("AWS::Lambda::Function").values()
    }
    assert len(hashes) == 1, "all functions share the one lambdas/ asset"
    asset = dev.outdir / f"asset.{hashes.pop()}"
    files = {p.relative_to(asset).as_posix() for p in asset.rglob("*") if p.is_file()}
    # Then it holds the shared runtime and the payments package...
    assert "payments/settings.py" in files
    assert "cascata_runtime/errors.py" in files
    # ... every declared handler module (a typo would only show at the first invocation)
    for proc in dev.pipeline.processors:
        assert proc.module.replace(".", "/") + ".py" in files, proc.handler
    # ... and nothing that changes the asset hash without changing the code
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in files if "/tests/" in f or Path(f).name.startswith("test_")]


def _granted_resources(statements: list[dict[str, Any]]) -> set[str]:
    """Logical ids of every resource a policy names (GetAtt/Ref, also inside Fn::Join)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Fn::GetAtt" in node:
                found.add(node["Fn::GetAtt"][0])
            elif "Ref" in node:
                found.add(node["Ref"])
            else:
                for value in node.values():
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for statement in statements:
        walk(statement["Resource"])
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


@pytest.mark.parametrize("variant", ["dev", "features"])
def test_grants_are_exactly_the_declared_access(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    key_id = next(iter(synth.of_type("AWS::KMS::Key")))
    for proc in synth.pipeline.processors:
        statements = synth.policy_statements(proc.name)
        # Then no action is a wildcard, and the only wildcard resource is X-Ray's
        for statement in statements:
            assert statement["Effect"] == "Allow"
            assert not [a for a in _actions(statement) if "*" in a], statement
            if statement["Resource"] == "*":
                assert set(_actions(statement)) == {
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                }
            # ... and the key may only be used through the service owning the resource
            if _granted_resources([statement]) == {key_id}:
                assert "kms:ViaService" in statement["Condition"]["StringEquals"], statement
        # ... and the resources are the declared ones: bindings, source, destination, logs
        expected = {synth.function(proc.name)[1]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]}
        expected.add(key_id)
        for name in [b.resource for b in proc.bindings] + [
            proc.source.stream,
            proc.source.on_failure,
        ]:
            kind = synth.pipeline.resource(name).kind
            resource_type, name_property = _TYPE_AND_NAME[kind]
            expected.add(synth.logical_id(resource_type, name_property, synth.physical(name)))
        assert _granted_resources(statements) == expected, proc.name


def _actions_on(statements: list[dict[str, Any]], logical_id: str) -> set[str]:
    return {
        action
        for statement in statements
        if logical_id in _granted_resources([statement])
        for action in _actions(statement)
    }


def test_access_levels_map_to_actions(features: Synthesized) -> None:
    # Given balances: table read_write, quarantine write, sessions read, alerts write
    statements = features.policy_statements("balances")
    balances = features.logical_id(
        "AWS::DynamoDB::Table", "TableName", features.physical("balances")
    )
    sessions = features.logical_id(
        "AWS::DynamoDB::Table", "TableName", features.physical("sessions")
    )
    quarantine = features.logical_id(
        "AWS::S3::Bucket", "BucketName", features.physical("quarantine")
    )
    alerts = features.logical_id("AWS::SNS::Topic", "TopicName", features.physical("alerts"))
    table_read = set(permissions(ResourceKind.TABLE, "read")[0].actions)
    table_write = set(permissions(ResourceKind.TABLE, "write")[0].actions)
    # Then read_write is read plus write, read is read only, write is write only
    assert _actions_on(statements, balances) == table_read | table_write
    assert _actions_on(statements, sessions) == table_read
    assert _actions_on(statements, quarantine) == {"s3:PutObject", "s3:AbortMultipartUpload"}
    assert _actions_on(statements, alerts) == {"sns:Publish"}
    # ... and nobody may delete a quarantined record or read another function's output
    every = {
        a
        for p in features.pipeline.processors
        for s in features.policy_statements(p.name)
        for a in _actions(s)
    }
    assert not [a for a in every if a.startswith(("s3:Delete", "dynamodb:DeleteTable"))]


def test_s3_on_failure_destination_may_only_receive_records(dev: Synthesized) -> None:
    failures = dev.logical_id("AWS::S3::Bucket", "BucketName", dev.physical("failures"))
    for proc in dev.pipeline.processors:
        assert _actions_on(dev.policy_statements(proc.name), failures) == {
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:ListBucket",
        }
