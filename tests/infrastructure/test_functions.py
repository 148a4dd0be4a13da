"""Functions of every kind: runtime, packaging, logging, tracing, environment, grants.

The environment test is the contract with the handlers: each function (stream processor,
scheduled or behind the API) gets exactly the variables its settings class reads (plus
Powertools'), and each value is the physical name of the resource the declaration binds, in the
template, in this stage.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any

import pytest

from cascata.cdk.access import permissions
from cascata.cdk.function import VPC_NETWORK_ACTIONS, VPC_NETWORK_READS, VPC_NETWORK_WRITES
from cascata.cdk.kafka import kafka_clients
from cascata.pipeline import Function, Processor, ResourceKind, ScheduledFunction, Table
from payments.pipeline import PIPELINE
from payments.settings import SETTINGS_BY_FUNCTION

from .conftest import ROOT, Synthesized

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


def _environment(synth: Synthesized, function: str) -> dict[str, str]:
    _, rendered = synth.function(function)
    variables: dict[str, str] = rendered["Properties"]["Environment"]["Variables"]
    return variables


def test_every_declared_function_has_a_settings_class() -> None:
    assert set(SETTINGS_BY_FUNCTION) == {f.name for f in PIPELINE.functions}


def _helper_functions(synth: Synthesized) -> set[str]:
    """The stacks' own functions: an archive's record transformation (Kinesis only), the
    archive replay's republisher (archive-mode version stacks)."""
    prefix = f"cascata-{synth.config.stage}"
    helpers = set()
    if synth.of_type("AWS::KinesisFirehose::DeliveryStream"):
        helpers |= {f"{prefix}-archive-{a.stream}" for a in synth.pipeline.archives}
    if synth.pipeline.replay_from == "archive":
        helpers.add(f"{prefix}-republish-{synth.pipeline.version}")
    if synth.of_type("Custom::KafkaTopics"):
        # The MSK custom resources' handlers and their Provider framework functions
        helpers |= {f"{synth.config.stack_name}-kafka-bootstrap",
                    f"{synth.config.stack_name}-kafka-bootstrap-provider",
                    f"{synth.stack.deployment_name}-kafka-topics",
                    f"{synth.stack.deployment_name}-kafka-topics-provider"}
    return helpers


def test_every_function_kind_is_rendered(every_stage: Synthesized) -> None:
    # One Lambda function per declared function, stream processors, scheduled and API alike,
    # plus the archives' transformations
    assert {
        r["Properties"]["FunctionName"]
        for r in every_stage.of_type("AWS::Lambda::Function").values()
    } == {every_stage.physical(f.name) for f in every_stage.pipeline.functions} | (
        _helper_functions(every_stage)
    )
    assert {type(f).__name__ for f in every_stage.pipeline.functions} == {
        "Processor",
        "ScheduledFunction",
        "ApiFunction",
    }


def test_environment_is_exactly_what_the_settings_read_plus_powertools(
    every_stage: Synthesized,
) -> None:
    for fn in every_stage.pipeline.functions:
        # Given the variables the function's settings class reads
        reads = SETTINGS_BY_FUNCTION[fn.name].required_variables()
        # Then the function gets exactly those plus the Powertools ones (and, when it reaches
        # Kafka itself on MSK, where the brokers are: tests/infrastructure/test_kafka.py)
        environment = _environment(every_stage, fn.name)
        kafka = {"CASCATA_BROKER", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_AUTH"}
        assert set(environment) - kafka == reads | POWERTOOLS_VARIABLES, fn.name
        # ... which are the declaration's own rendering, nothing hand-written
        assert {k: v for k, v in environment.items() if k in reads} == (
            every_stage.pipeline.environment(
                fn.name,
                stage=every_stage.config.stage,
                account=every_stage.config.account,
                region=every_stage.config.region,
            )
        ), fn.name
        assert environment["POWERTOOLS_SERVICE_NAME"] == fn.name
        assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "Cascata"
        assert environment["POWERTOOLS_LOG_LEVEL"] == every_stage.config.log_level
        assert environment["PIPELINE_STAGE"] == every_stage.config.stage


@pytest.mark.parametrize("variant", ["dev", "prod", "features"])
def test_each_bound_variable_names_a_resource_the_function_may_use(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    for fn in synth.pipeline.functions:
        environment = _environment(synth, fn.name)
        granted = _granted_resources(synth.policy_statements(fn.name))
        for binding in fn.bindings:
            # Given a declared binding
            kind = synth.pipeline.resource(binding.resource).kind
            resource_type, name_property = _TYPE_AND_NAME[kind]
            # Then its variable holds the physical name of that resource in the template
            logical_id = synth.logical_id(resource_type, name_property, environment[binding.env])
            # ... and the function's policy grants on that very resource
            assert logical_id in granted, f"{fn.name}: {binding.env} -> {logical_id}"


def test_msk_stream_variables_name_the_topics_the_mappings_read(msk: Synthesized) -> None:
    topics = {
        t
        for m in msk.of_type("AWS::Lambda::EventSourceMapping").values()
        for t in m["Properties"]["Topics"]
    }
    outputs = {o["Value"] for o in msk.json["Outputs"].values() if isinstance(o["Value"], str)}
    for fn in msk.pipeline.functions:
        environment = _environment(msk, fn.name)
        for binding in fn.bindings:
            if msk.pipeline.resource(binding.resource).kind is ResourceKind.STREAM:
                assert environment[binding.env] in outputs, binding.env
                assert environment[binding.env] == msk.physical(binding.resource)
    assert topics <= outputs
    # ... and every declared stream, read or only written, has its topic named in the outputs
    assert {msk.physical(s.name) for s in msk.pipeline.streams} <= outputs


def test_functions_are_python312_arm64_with_the_pinned_powertools_layer(
    every_stage: Synthesized,
) -> None:
    # The AWS-published Powertools layer of exactly the installed release, for this runtime
    # and architecture, read from AWS's public SSM parameter when CloudFormation deploys
    installed = importlib.metadata.version("aws-lambda-powertools")
    parameters = {
        name: p
        for name, p in every_stage.json["Parameters"].items()
        if p.get("Default", "").startswith("/aws/service/powertools/")
    }
    ((layer_parameter, parameter),) = parameters.items()
    assert parameter == {
        "Type": "AWS::SSM::Parameter::Value<String>",
        "Default": f"/aws/service/powertools/python/arm64/python3.12/{installed}",
    }
    for fn in every_stage.pipeline.functions:
        _, function = every_stage.function(fn.name)
        props = function["Properties"]
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == fn.handler
        assert props["MemorySize"] == fn.memory_mb
        assert props["Timeout"] == fn.timeout_s
        assert props["FunctionName"] == every_stage.physical(fn.name)
        # ... and on MSK, for a function that reaches Kafka itself, the Kafka client layer
        # beside it (tests/infrastructure/test_kafka.py says which functions)
        others = [layer for layer in props["Layers"] if layer != {"Ref": layer_parameter}]
        assert len(props["Layers"]) == len(others) + 1, props["Layers"]
        assert len(others) <= (every_stage.config.broker.value == "msk"), others
        # Environment encrypted with the stage's key
        assert props["KmsKeyArn"] == {"Fn::GetAtt": ["PipelineKey", "Arn"]}
        # Structured logs into the function's own log group, traced
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert props["TracingConfig"] == {"Mode": "Active"}
        log_group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
        log_group = every_stage.resources[log_group_id]["Properties"]
        assert log_group["LogGroupName"] == f"/aws/lambda/{props['FunctionName']}"
        assert log_group["RetentionInDays"] == every_stage.config.log_retention_days
        assert "KmsKeyId" in log_group
        # Reserved concurrency as the stage reserves it, else as declared (scheduled
        # functions: one at a time)
        reserved = every_stage.config.reserved_concurrency.get(fn.name, fn.reserved_concurrency)
        if reserved is None:
            assert "ReservedConcurrentExecutions" not in props, fn.name
        else:
            assert props["ReservedConcurrentExecutions"] == reserved, fn.name


def test_no_partition_is_written_into_the_cdk_rendering() -> None:
    # ARNs take the partition from the stack (its region's), never a literal `arn:aws:`
    sources = sorted((ROOT / "cascata" / "cdk").glob("*.py"))
    offenders = [
        f"{path.name}:{number}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"arn:aws[:-]", line)
    ]
    assert sources and not offenders, offenders


def test_prod_reserves_concurrency_for_the_api_functions_dev_does_not(
    dev: Synthesized, prod: Synthesized
) -> None:
    # Given the stage knob: prod reserves for the HTTP-facing functions, dev (whose account
    # may not have the concurrency to reserve) does not
    assert prod.config.reserved_concurrency and not dev.config.reserved_concurrency
    for name, reserved in prod.config.reserved_concurrency.items():
        _, function = prod.function(name)
        assert function["Properties"]["ReservedConcurrentExecutions"] == reserved
        _, function = dev.function(name)
        assert "ReservedConcurrentExecutions" not in function["Properties"]


def test_declared_reserved_concurrency_is_applied(dev: Synthesized, features: Synthesized) -> None:
    _, function = features.function("balances")
    assert function["Properties"]["ReservedConcurrentExecutions"] == 4
    _, function = dev.function("notify")
    assert function["Properties"]["ReservedConcurrentExecutions"] == 5


def test_msk_functions_run_in_the_private_subnets_only_when_they_talk_to_kafka(
    msk: Synthesized,
) -> None:
    subnets = set(msk.of_type("AWS::EC2::Subnet"))
    clients = kafka_clients(msk.pipeline)
    # The functions that produce to a topic or ask the cluster about one (they bind a stream)
    assert clients == {"validate", "postings", "fraud-detect", "windows", "windows-close",
                       "ingest"}
    for fn in msk.pipeline.functions:
        _, function = msk.function(fn.name)
        # Only those pay for ENIs and VPC cold starts; a processor that only consumes is fed
        # by Lambda's pollers, which reach the cluster through the mapping, not the function
        assert ("VpcConfig" in function["Properties"]) is (fn.name in clients), fn.name
        if fn.name in clients:
            vpc_config = function["Properties"]["VpcConfig"]
            assert {s["Ref"] for s in vpc_config["SubnetIds"]} == subnets
    # notify publishes to SNS and query reads DynamoDB: neither may be cut off from them in
    # subnets without a NAT
    for name in ("notify", "query", "balances", "profiles"):
        _, function = msk.function(name)
        assert "VpcConfig" not in function["Properties"], name


def test_every_function_in_the_vpc_may_manage_its_network_interfaces(msk: Synthesized) -> None:
    # Given every function the MSK variant places in the cluster's VPC (declared or not)
    in_vpc = {k: f for k, f in msk.of_type("AWS::Lambda::Function").items()
              if "VpcConfig" in f["Properties"]}
    assert in_vpc
    in_account = f"arn:aws:ec2:{msk.config.region}:{msk.config.account}:*/*"

    def rendered(resource: Any) -> str:
        if isinstance(resource, dict):  # arn:${AWS::Partition}:...
            return "".join("aws" if p == {"Ref": "AWS::Partition"} else p
                           for p in resource["Fn::Join"][1])
        return str(resource)

    for function_id, function in in_vpc.items():
        # Then its own role holds what Lambda needs to create its network interfaces (CDK
        # attaches AWSLambdaVPCAccessExecutionRole only to roles it creates; Lambda refuses
        # to create a VPC function whose role cannot create them): the reads on "*" (their
        # only form), the writes on this account's and region's EC2 resources
        granted: dict[str, set[str]] = {}
        for statement in msk.policy_statements_of(function_id):
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                if action.startswith("ec2:"):
                    granted.setdefault(action, set()).add(rendered(statement["Resource"]))
        name = function["Properties"]["FunctionName"]
        assert all(granted[a] == {"*"} for a in VPC_NETWORK_READS), name
        assert all(granted[a] == {in_account} for a in VPC_NETWORK_WRITES), name
        assert set(VPC_NETWORK_ACTIONS) == set(granted), name
    # ... and a function outside it gets none of them
    for function_id in msk.of_type("AWS::Lambda::Function"):
        if function_id not in in_vpc:
            actions = json.dumps(msk.policy_statements_of(function_id))
            assert "ec2:CreateNetworkInterface" not in actions, function_id


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
    missing = [
        fn.handler
        for fn in dev.pipeline.functions
        if fn.module.replace(".", "/") + ".py" not in files
    ]
    assert not missing, f"handler modules missing from lambdas/: {missing}"
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


def _declared_resources(synth: Synthesized, fn: Function) -> set[str]:
    """Logical ids of what a function may touch: its log group, the key, its bindings, its
    sources and on-failure destinations, and a scheduled function's dead-letter queue."""
    expected = {synth.function(fn.name)[1]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]}
    expected.add(next(iter(synth.of_type("AWS::KMS::Key"))))
    names = [b.resource for b in fn.bindings]
    if isinstance(fn, Processor):
        names += [s.stream for s in fn.sources] + [s.on_failure for s in fn.sources]
    for name in names:
        kind = synth.pipeline.resource(name).kind
        resource_type, name_property = _TYPE_AND_NAME[kind]
        expected.add(synth.logical_id(resource_type, name_property, synth.physical(name)))
    if isinstance(fn, ScheduledFunction):
        expected.add(
            synth.logical_id("AWS::SQS::Queue", "QueueName", f"{synth.physical(fn.name)}-dlq")
        )
    return expected


def _version_patterns(synth: Synthesized, fn: Function) -> set[str]:
    """The version-table patterns a function following the live pointer may read: each bound
    view as `<table>-v*`, and each of its declared indexes (never `index/*`)."""
    tables = [synth.pipeline.resource(b.resource) for b in fn.bindings]
    if not any(isinstance(t, Table) and t.role == "control" for t in tables):
        return set()
    prefix = f"arn:aws:dynamodb:{synth.config.region}:{synth.config.account}:table/"
    patterns = set()
    for table in tables:
        if isinstance(table, Table) and table.role == "view":
            pattern = f"{prefix}{synth.physical(table.name)}-v*"
            patterns.add(pattern)
            patterns |= {f"{pattern}/index/{index.name}" for index in table.indexes}
    return patterns


@pytest.mark.parametrize("variant", ["dev", "features"])
def test_grants_are_exactly_the_declared_access(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    key_id = next(iter(synth.of_type("AWS::KMS::Key")))
    for fn in synth.pipeline.functions:
        statements = synth.policy_statements(fn.name)
        patterns = _version_patterns(synth, fn)
        # Then no action is a wildcard, and the only wildcard resources are X-Ray's and the
        # later versions of the views a live-pointer reader binds
        for statement in statements:
            assert statement["Effect"] == "Allow"
            assert not [a for a in _actions(statement) if "*" in a], statement
            names = [n for n in _resource_names(statement) if n not in patterns]
            assert "*" not in json.dumps(names), statement
            if statement["Resource"] == "*":
                assert set(_actions(statement)) == {
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                }
            # ... and the key may only be used through the service owning the resource
            if _granted_resources([statement]) == {key_id}:
                assert "kms:ViaService" in statement["Condition"]["StringEquals"], statement
        # ... and the resources are the declared ones: bindings, sources, destinations, logs
        assert _granted_resources(statements) == _declared_resources(synth, fn), fn.name


def _resource_names(statement: dict[str, Any]) -> list[str]:
    """The literal parts of a statement's resources, e.g. `/index/by-day`, `/*` (not `*`)."""
    resources = statement["Resource"]
    if resources == "*":
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict) and "Fn::Join" in node:
            walk(node["Fn::Join"][1])
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(resources)
    # Object-level grants on one declared bucket are `<bucket-arn>/*` by necessity.
    return [name for name in found if name != "/*"]


def _actions_on(statements: list[dict[str, Any]], logical_id: str) -> set[str]:
    return {
        action
        for statement in statements
        if logical_id in _granted_resources([statement])
        for action in _actions(statement)
    }


def _index_statements(statements: list[dict[str, Any]], logical_id: str) -> list[list[str]]:
    """For each statement on a table's indexes: the index names it names."""
    found = []
    for statement in statements:
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        names = [
            r["Fn::Join"][1][1].removeprefix("/index/")
            for r in resources
            if isinstance(r, dict)
            and "Fn::Join" in r
            and r["Fn::Join"][1][0] == {"Fn::GetAtt": [logical_id, "Arn"]}
            and str(r["Fn::Join"][1][1]).startswith("/index/")
        ]
        if names:
            assert _actions(statement) == ["dynamodb:Query"], statement
            found.append(names)
    return found


TABLE_READ = {"dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query"}
TABLE_WRITE = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"}


def test_access_levels_map_to_actions(features: Synthesized) -> None:
    # Given balances: table read_write, quarantine write, sessions read, balance-events write
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
    events = features.logical_id(
        "AWS::SNS::Topic", "TopicName", features.physical("balance-events")
    )
    # Then the access table is the documented one...
    assert set(permissions(ResourceKind.TABLE, "read")[0].actions) == TABLE_READ
    assert set(permissions(ResourceKind.TABLE, "write")[0].actions) == TABLE_WRITE
    # ... read_write is read plus write, read is read only, write is write only
    assert _actions_on(statements, balances) == TABLE_READ | TABLE_WRITE
    assert _actions_on(statements, sessions) == TABLE_READ
    assert _actions_on(statements, quarantine) == {"s3:PutObject", "s3:AbortMultipartUpload"}
    assert _actions_on(statements, events) == {"sns:Publish"}
    # ... and nobody may delete a quarantined record, an item, or scan a whole table
    every = {
        a
        for f in features.pipeline.functions
        for s in features.policy_statements(f.name)
        for a in _actions(s)
    }
    assert not [
        a
        for a in every
        if a.startswith(("s3:Delete", "dynamodb:Delete"))
        or a in ("dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:DescribeTable")
    ]


def test_table_reads_reach_the_declared_indexes_by_name(dev: Synthesized) -> None:
    for fn in dev.pipeline.functions:
        statements = dev.policy_statements(fn.name)
        for binding in fn.bindings:
            declared = dev.pipeline.resource(binding.resource)
            if not isinstance(declared, Table):
                continue
            # Given a function bound to a table
            table = dev.logical_id("AWS::DynamoDB::Table", "TableName", dev.physical(declared.name))
            indexes = _index_statements(statements, table)
            # Then it may Query each declared index, named one by one (never `index/*`)...
            assert sorted(n for names in indexes for n in names) == sorted(
                i.name for i in declared.indexes
            ), (fn.name, declared.name)
            # ... and reads or writes the table as declared, with the key through DynamoDB
            expected = TABLE_READ if binding.access == "read" else TABLE_READ | TABLE_WRITE
            assert _actions_on(statements, table) == expected, (fn.name, declared.name)
    # e.g. the API's query function reads both indexed views through their indexes
    query = dev.policy_statements("query")
    alerts = dev.logical_id("AWS::DynamoDB::Table", "TableName", dev.physical("alerts-view"))
    assert _index_statements(query, alerts) == [["by-day"]]


def test_topic_write_is_publish_on_that_topic_and_the_key_through_sns(dev: Synthesized) -> None:
    statements = dev.policy_statements("notify")
    topic = dev.logical_id("AWS::SNS::Topic", "TopicName", dev.physical("notifications"))
    key_id = next(iter(dev.of_type("AWS::KMS::Key")))
    on_topic = [s for s in statements if topic in _granted_resources([s])]
    assert [_actions(s) for s in on_topic] == [["sns:Publish"]]
    assert on_topic[0]["Resource"] == {"Ref": topic}
    via_sns = [
        s
        for s in statements
        if _granted_resources([s]) == {key_id}
        and s["Condition"]["StringEquals"]["kms:ViaService"].startswith("sns.")
    ]
    assert [sorted(_actions(s)) for s in via_sns] == [["kms:Decrypt", "kms:GenerateDataKey"]]
    # ... and no other function may publish to it
    for fn in dev.pipeline.functions:
        if fn.name != "notify":
            assert topic not in _granted_resources(dev.policy_statements(fn.name)), fn.name


def test_s3_on_failure_destination_may_only_receive_records(dev: Synthesized) -> None:
    failures = dev.logical_id("AWS::S3::Bucket", "BucketName", dev.physical("failures"))
    for proc in dev.pipeline.processors:
        assert _actions_on(dev.policy_statements(proc.name), failures) == {
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:ListBucket",
        }


def test_live_pointer_readers_may_read_later_versions_of_their_views_only(
    dev: Synthesized,
) -> None:
    # Given the query function, which binds the version registry and reads four views
    query = dev.pipeline.function("query")
    patterns = _version_patterns(dev, query)
    assert len(patterns) == 4 + 1, patterns  # four views, one of them indexed (alerts by day)
    actions: dict[str, set[str]] = {}
    for statement in dev.policy_statements("query"):
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            if isinstance(resource, str) and resource.startswith("arn:aws:dynamodb:"):
                actions.setdefault(resource, set()).update(_actions(statement))
    # Then exactly those patterns are granted, reads on the tables, Query on the indexes...
    assert set(actions) == patterns
    for resource, granted in actions.items():
        assert granted == ({"dynamodb:Query"} if "/index/" in resource else TABLE_READ), resource
    # ... the registry itself and the writers are not widened: no other function gets any
    for fn in dev.pipeline.functions:
        if fn.name != "query":
            assert "-v*" not in json.dumps(dev.policy_statements(fn.name)), fn.name
