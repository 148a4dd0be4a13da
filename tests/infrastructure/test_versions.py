"""Version stacks (`-c version=v2`): a version of the views rebuilt on AWS next to the base stack.

A version stack creates only what the version owns (its tables, derived streams, functions, and
in archive mode its replay streams and the archive replay), references the shared resources of
the base stack, reads history from the start (or from `replaySince`), and is watched and
least-privileged exactly like the base stack's processors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cascata.pipeline import Processor, ResourceKind, ScheduledFunction
from payments.settings import SETTINGS_BY_FUNCTION

from .conftest import REPLAY_SINCE, REPLAY_SINCE_EPOCH, Synthesized, synthesize
from .test_operations import _PER_PROCESSOR, _alarms_of, _by_metric

SHARED_TYPES = (
    "AWS::S3::Bucket",
    "AWS::KMS::Key",
    "AWS::SNS::Topic",
    "AWS::ApiGatewayV2::Api",
    "AWS::KinesisFirehose::DeliveryStream",
    "AWS::Glue::Database",
    "AWS::Glue::Table",
    "AWS::Athena::WorkGroup",
    "AWS::IAM::ManagedPolicy",
)


REPLAYED = ("validate", "postings", "balances", "fraud-detect", "windows", "profiles")
"""Every processor but notify, whose effect (a message to people) must not be repeated."""


def _names(synth: Synthesized, resource_type: str, prop: str) -> set[str]:
    return {r["Properties"][prop] for r in synth.of_type(resource_type).values()}


def test_a_version_stack_creates_only_what_the_version_owns(every_version: Synthesized) -> None:
    synth = every_version
    pipeline = synth.pipeline
    stage = synth.config.stage
    assert synth.stack.stack_name == f"cascata-{stage}-v2"
    # Nothing shared is created again: no second bucket (quarantine, failures, archive), key,
    # topic, API, archive or audit
    for resource_type in SHARED_TYPES:
        assert not synth.of_type(resource_type), resource_type
    # Its own tables: every view and state table, versioned; the registry stays in the base
    assert _names(synth, "AWS::DynamoDB::Table", "TableName") == {
        f"cascata-{stage}-{t}-v2"
        for t in ("balances", "profiles", "alerts-view", "fraud-state", "activity-view",
                  "dedupe")
    }
    # Its own streams: the derived ones; from the archive, also replay streams of the origins
    derived = {"payments-validated", "ledger-entries", "alerts", "activity", "activity-late"}
    origins = {"payments-raw", "customers"} if pipeline.replay_from == "archive" else set()
    assert _names(synth, "AWS::Kinesis::Stream", "Name") == {
        f"cascata-{stage}-{s}-v2" for s in derived | origins
    }
    # Its own functions: the replayable processors and the scheduled ones, no notify, no API
    republish = {f"cascata-{stage}-republish-v2"} if pipeline.replay_from == "archive" else set()
    assert (
        _names(synth, "AWS::Lambda::Function", "FunctionName")
        == {f"cascata-{stage}-{f}-v2" for f in (*REPLAYED, "windows-close")} | republish
    )
    (dashboard,) = synth.of_type("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == f"cascata-{stage}-v2"


@pytest.mark.parametrize(("variant", "base"), [("v2_stream", "dev"), ("v2_archive", "prod")])
def test_a_version_never_changes_the_base_stacks_resources(
    variant: str, base: str, request: pytest.FixtureRequest
) -> None:
    version: Synthesized = request.getfixturevalue(variant)
    alone: Synthesized = request.getfixturevalue(base)
    assert version.base is not None
    # Given the base stack synthesized next to a version, Then its resources are the ones it
    # has alone, and it only gains the outputs the version reads (the key, the alarm topic)
    assert version.base.resources == alone.resources
    added = set(version.base.json["Outputs"]) - set(alone.json["Outputs"])
    assert len(added) == 2 and all(o.startswith("PublishOutput") for o in added), added
    # ... read by the version as weak references: the base stack never waits for a version
    references = re.findall(r'"Fn::(GetStackOutput|ImportValue)"', json.dumps(version.json))
    assert references and set(references) == {"GetStackOutput"}


def _origin(synth: Synthesized, stream: str) -> bool:
    return synth.pipeline.resource(stream).origin  # type: ignore[union-attr]


def test_mappings_read_history_from_the_start_or_from_replay_since(
    every_version: Synthesized,
) -> None:
    synth = every_version
    failures = f"arn:aws:s3:::{synth.physical('failures')}"
    since = synth.stack.replay.since if synth.stack.replay else None
    mappings = synth.of_type("AWS::Lambda::EventSourceMapping")
    assert len(mappings) == sum(len(p.sources) for p in synth.pipeline.processors)
    for proc in synth.pipeline.processors:
        for source in proc.sources:
            # Given a mapping of a version's processor
            props = synth.mapping(proc.name, source.stream)
            shared = not synth.pipeline.owns(source.stream)
            # Then a shared origin stream is read from its trim horizon or from replaySince,
            # and a stream of the version's own from its trim horizon (all of it is the
            # version's)
            if shared and since is not None:
                assert props["StartingPosition"] == "AT_TIMESTAMP", proc.name
                assert props["StartingPositionTimestamp"] == REPLAY_SINCE_EPOCH
            else:
                assert props["StartingPosition"] == "TRIM_HORIZON", proc.name
                assert "StartingPositionTimestamp" not in props
            # ... the shared stream is the base stack's, named by its ARN; the others are ours
            if shared:
                assert _origin(synth, source.stream)
                assert props["EventSourceArn"] == synth.arn("kinesis", source.stream)
            else:
                stream_id = synth.logical_id(
                    "AWS::Kinesis::Stream", "Name", synth.physical(source.stream)
                )
                assert props["EventSourceArn"] == {"Fn::GetAtt": [stream_id, "Arn"]}
            # ... no record is discarded for its age (a replay reads old records by design)...
            assert "MaximumRecordAgeInSeconds" not in props, proc.name
            # ... while failures stay per record, bounded, and parked with their payload
            assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            assert props["BisectBatchOnFunctionError"] is True
            assert props["MaximumRetryAttempts"] == source.max_retries
            assert 0 <= source.max_retries <= 10
            assert props["DestinationConfig"] == {"OnFailure": {"Destination": failures}}
            assert props["BatchSize"] == source.batch_size
    origins_read = [
        s.stream for p in synth.pipeline.processors for s in p.sources if _origin(synth, s.stream)
    ]
    assert sorted(origins_read) == ["customers", "payments-raw"]
    if synth.pipeline.replay_from == "archive":
        # From the archive, even the origins are the version's own (replay) streams
        assert all(synth.pipeline.owns(s) for s in origins_read)
    else:
        assert not any(synth.pipeline.owns(s) for s in origins_read)
    if since is not None:
        assert since.isoformat().startswith(REPLAY_SINCE[:19])


def test_environment_names_the_versions_resources_and_the_shared_ones(
    every_version: Synthesized,
) -> None:
    synth = every_version
    stage = synth.config.stage
    for fn in synth.pipeline.functions:
        _, rendered = synth.function(fn.name)
        variables = rendered["Properties"]["Environment"]["Variables"]
        # The same variables as the base stack's function (its settings class reads them)...
        reads = SETTINGS_BY_FUNCTION[fn.name].required_variables()
        assert reads <= set(variables)
        # ... each the declaration's own rendering for this version
        assert {k: v for k, v in variables.items() if k in reads} == synth.pipeline.environment(
            fn.name, stage=stage, account=synth.config.account, region=synth.config.region
        )
    validate = synth.pipeline.environment("validate", stage=stage)
    assert validate["VALIDATED_STREAM"] == f"cascata-{stage}-payments-validated-v2"
    assert validate["QUARANTINE_BUCKET"].startswith(f"cascata-{stage}-quarantine-")


def _resource_keys(synth: Synthesized, statement: dict[str, Any]) -> set[str]:
    """What a statement names: a logical id of this stack, `KEY` for the base stack's key (a
    weak reference), a literal ARN of the base stack's resources (without `/*`), or `*`."""
    resources = statement["Resource"]
    found: set[str] = set()
    for resource in resources if isinstance(resources, list) else [resources]:
        if isinstance(resource, str):
            found.add(resource.removesuffix("/*"))
        elif "Fn::GetStackOutput" in resource:
            assert "PipelineKey" in resource["Fn::GetStackOutput"]["OutputName"], resource
            found.add("KEY")
        elif "Fn::GetAtt" in resource:
            found.add(resource["Fn::GetAtt"][0])
        elif "Ref" in resource:
            found.add(resource["Ref"])
        elif "Fn::Join" in resource:
            # `<table-arn>/index/<declared index>` or `<bucket-arn>/*` of a resource of ours
            first, rest = resource["Fn::Join"][1]
            assert rest == "/*" or re.fullmatch(r"/index/[a-z-]+", rest), resource
            found.add(first["Fn::GetAtt"][0])
        else:
            raise AssertionError(f"unexpected resource {resource}")
    return found


_SERVICE = {
    ResourceKind.STREAM: ("kinesis", "AWS::Kinesis::Stream", "Name"),
    ResourceKind.TABLE: ("dynamodb", "AWS::DynamoDB::Table", "TableName"),
    ResourceKind.BUCKET: ("s3", "AWS::S3::Bucket", "BucketName"),
}


def test_grants_are_the_base_stacks_least_privilege(every_version: Synthesized) -> None:
    synth = every_version
    for fn in synth.pipeline.functions:
        _, rendered = synth.function(fn.name)
        statements = synth.policy_statements(fn.name)
        # Given the resources the function may touch: its log group, the key, its bindings,
        # sources and on-failure destinations, a scheduled function's dead-letter queue
        expected = {rendered["Properties"]["LoggingConfig"]["LogGroup"]["Ref"], "KEY", "*"}
        names = [b.resource for b in fn.bindings]
        if isinstance(fn, Processor):
            names += [s.stream for s in fn.sources] + [s.on_failure for s in fn.sources]
        for name in names:
            service, resource_type, prop = _SERVICE[synth.pipeline.resource(name).kind]
            if synth.pipeline.owns(name):
                expected.add(synth.logical_id(resource_type, prop, synth.physical(name)))
            else:
                expected.add(synth.arn(service, name))
        if isinstance(fn, ScheduledFunction):
            expected.add(
                synth.logical_id("AWS::SQS::Queue", "QueueName", f"{synth.physical(fn.name)}-dlq")
            )
        # Then the policy names exactly those...
        named = set().union(*(_resource_keys(synth, s) for s in statements))
        assert named == expected, fn.name
        for statement in statements:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            # ... with no wildcard action, `*` only for X-Ray, the key only through a service
            assert not [a for a in actions if "*" in a], statement
            if statement["Resource"] == "*":
                assert set(actions) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
            if _resource_keys(synth, statement) == {"KEY"}:
                assert "kms:ViaService" in statement["Condition"]["StringEquals"], statement
            assert not [a for a in actions if a.startswith(("s3:Delete", "dynamodb:Delete"))]


def test_processors_are_alarmed_like_the_base_stacks(every_version: Synthesized) -> None:
    synth = every_version
    for proc in synth.pipeline.processors:
        alarms = _alarms_of(synth, proc.name)
        on_failure = [
            a for a in alarms if a["MetricName"] == "OnFailureDestinationDeliveredEventCount"
        ]
        assert len(on_failure) == len(proc.sources), proc.name
        by_metric = _by_metric([a for a in alarms if a not in on_failure])
        assert set(by_metric) == _PER_PROCESSOR | {"IteratorAge"}, proc.name
        assert by_metric["IteratorAge"]["Threshold"] == synth.config.alarms.iterator_age_ms
    # Every alarm of the version notifies the base stack's alarm topic
    for alarm in synth.of_type("AWS::CloudWatch::Alarm").values():
        (action,) = alarm["Properties"]["AlarmActions"]
        assert "AlarmTopic" in action["Fn::GetStackOutput"]["OutputName"]
        assert alarm["Properties"]["OKActions"] == [action]


def test_the_versions_scheduled_function_has_a_schedule_of_its_own(v2_stream: Synthesized) -> None:
    (scheduled,) = v2_stream.pipeline.scheduled
    function_id, _ = v2_stream.function(scheduled.name)
    (schedule,) = v2_stream.of_type("AWS::Scheduler::Schedule").values()
    assert schedule["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert schedule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert v2_stream.of_type("AWS::Scheduler::ScheduleGroup")
    assert _names(v2_stream, "AWS::SQS::Queue", "QueueName") == {"cascata-dev-windows-close-v2-dlq"}


def test_a_prod_version_is_retained_and_protected_like_prod(v2_archive: Synthesized) -> None:
    assert v2_archive.stack.termination_protection is True
    for resource_type in ("AWS::DynamoDB::Table", "AWS::Kinesis::Stream", "AWS::Logs::LogGroup"):
        for resource in v2_archive.of_type(resource_type).values():
            assert resource["DeletionPolicy"] == "Retain", resource_type
    for table in v2_archive.of_type("AWS::DynamoDB::Table").values():
        assert table["Properties"]["DeletionProtectionEnabled"] is True


# --- archive mode: the replay ----------------------------------------------------------------


def _definition(synth: Synthesized) -> tuple[dict[str, Any], dict[str, Any]]:
    (machine,) = synth.of_type("AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    parts = props["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else json.dumps(json.dumps(p))[1:-1] for p in parts)
    return props, json.loads(text)


def test_the_replay_state_machine_loops_over_republish_until_done(
    v2_archive: Synthesized,
) -> None:
    props, definition = _definition(v2_archive)
    function_id, function = v2_archive.function_by_name("cascata-prod-republish-v2")
    assert props["StateMachineName"] == "cascata-prod-replay-v2"
    assert props["StateMachineType"] == "STANDARD"
    # Given the definition: invoke republish, then go on until it answers done
    states = definition["States"]
    task = states[definition["StartAt"]]
    assert task["Type"] == "Task"
    # (the intrinsic in the definition string is kept as its JSON text)
    assert task["Resource"] == json.dumps({"Fn::GetAtt": [function_id, "Arn"]})
    assert task["TimeoutSeconds"] > function["Properties"]["Timeout"] == 900
    choice = states[task["Next"]]
    assert choice["Type"] == "Choice"
    (when,) = choice["Choices"]
    assert (when["Variable"], when["BooleanEquals"]) == ("$.done", True)
    assert states[when["Next"]]["Type"] == "Succeed"
    assert choice["Default"] == definition["StartAt"]
    # ... retrying transient failures, then failing (and paging) rather than looping forever
    assert task["Retry"][-1]["ErrorEquals"] == ["States.ALL"]
    assert all(r["MaxAttempts"] <= 6 for r in task["Retry"])
    # Then it logs everything to an encrypted log group and traces with X-Ray
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    (destination,) = props["LoggingConfiguration"]["Destinations"]
    log_group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    log_group = v2_archive.resources[log_group_id]["Properties"]
    assert log_group["LogGroupName"] == "/aws/vendedlogs/states/cascata-prod-replay-v2"
    assert "PipelineKey" in log_group["KmsKeyId"]["Fn::GetStackOutput"]["OutputName"]
    assert log_group["RetentionInDays"] == v2_archive.config.log_retention_days
    assert props["TracingConfiguration"] == {"Enabled": True}
    # ... and its role may invoke that function, deliver logs and traces, nothing else
    role_id = props["RoleArn"]["Fn::GetAtt"][0]
    trust = v2_archive.resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust[0]["Principal"] == {"Service": "states.amazonaws.com"}
    granted: dict[str, set[str]] = {}
    for statement in v2_archive.role_statements(role_id):
        actions = statement["Action"]
        key = json.dumps(statement["Resource"])
        granted.setdefault(key, set()).update([actions] if isinstance(actions, str) else actions)
    assert granted == {
        json.dumps({"Fn::GetAtt": [function_id, "Arn"]}): {"lambda:InvokeFunction"},
        json.dumps("*"): {
            "logs:CreateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:DescribeLogGroups",
            "logs:DescribeResourcePolicies",
            "logs:GetLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:UpdateLogDelivery",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
            "xray:PutTelemetryRecords",
            "xray:PutTraceSegments",
        },
    }


def test_republish_gets_its_configuration_and_exactly_its_grants(v2_archive: Synthesized) -> None:
    function_id, function = v2_archive.function_by_name("cascata-prod-republish-v2")
    props = function["Properties"]
    assert props["Handler"] == "cascata_runtime.republish.handler"
    assert props["Timeout"] == 900
    assert props["ReservedConcurrentExecutions"] == 1
    archive = v2_archive.physical("archive")
    variables = props["Environment"]["Variables"]
    assert {k: v for k, v in variables.items() if not k.startswith("POWERTOOLS_")} == {
        "ARCHIVE_BUCKET": archive,
        "VERSIONS_TABLE": "cascata-prod-versions",
        "REPLAY_VERSION": "v2",
        "REPLAY_STREAMS": json.dumps(
            {
                "customers": "cascata-prod-customers-v2",
                "payments-raw": "cascata-prod-payments-raw-v2",
            }
        ),
        "REPLAY_SINCE": "2026-11-25T00:00:00Z",
        # replayUntil=2026-11-26T12:00:00+01:00, handed over in UTC
        "REPLAY_UNTIL": "2026-11-26T11:00:00Z",
        "PIPELINE_STAGE": "prod",
    }
    region = v2_archive.config.region
    streams = [
        v2_archive.logical_id("AWS::Kinesis::Stream", "Name", f"cascata-prod-{s}-v2")
        for s in ("customers", "payments-raw")
    ]
    log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
    grants = []
    for statement in v2_archive.policy_statements_of(function_id):
        actions = statement["Action"]
        resources = statement["Resource"]
        grants.append(
            (
                tuple(sorted([actions] if isinstance(actions, str) else actions)),
                json.dumps(resources, sort_keys=True),
                json.dumps(statement.get("Condition"), sort_keys=True),
            )
        )

    def via(service: str) -> str:
        return json.dumps({"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}})

    key = json.dumps(
        {
            "Fn::GetStackOutput": {
                "OutputName": "PublishOutputFnGetAttPipelineKeyArn05C98209",
                "Region": region,
                "StackName": "cascata-prod",
            }
        },
        sort_keys=True,
    )
    assert sorted(grants) == sorted(
        [
            (
                ("logs:CreateLogStream", "logs:PutLogEvents"),
                json.dumps({"Fn::GetAtt": [log_group, "Arn"]}),
                "null",
            ),
            (("xray:PutTelemetryRecords", "xray:PutTraceSegments"), json.dumps("*"), "null"),
            (("s3:ListBucket",), json.dumps(f"arn:aws:s3:::{archive}"), "null"),
            (
                ("s3:GetObject",),
                json.dumps(
                    [f"arn:aws:s3:::{archive}/errors/*", f"arn:aws:s3:::{archive}/events/*"]
                ),
                "null",
            ),
            (("kms:Decrypt",), key, via("s3")),
            (
                ("kinesis:PutRecords",),
                json.dumps([{"Fn::GetAtt": [s, "Arn"]} for s in streams]),
                "null",
            ),
            (("kms:GenerateDataKey",), key, via("kinesis")),
            (
                ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
                json.dumps(v2_archive.arn("dynamodb", "versions")),
                "null",
            ),
            (
                ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"),
                key,
                via("dynamodb"),
            ),
        ]
    )


def test_the_replay_is_alarmed_and_named_in_the_outputs(v2_archive: Synthesized) -> None:
    (machine_id,) = v2_archive.of_type("AWS::StepFunctions::StateMachine")
    metrics = {
        a["Properties"]["MetricName"]
        for a in v2_archive.of_type("AWS::CloudWatch::Alarm").values()
        if {"Name": "StateMachineArn", "Value": {"Ref": machine_id}}
        in a["Properties"].get("Dimensions", [])
    }
    assert metrics == {"ExecutionsFailed", "ExecutionsTimedOut"}
    outputs = v2_archive.json["Outputs"]
    assert outputs["ReplayStateMachineArn"]["Value"] == {"Ref": machine_id}
    assert "AlarmTopicArn" not in outputs


def test_stream_mode_has_no_replay_machinery(v2_stream: Synthesized, v2_since: Synthesized) -> None:
    for synth in (v2_stream, v2_since):
        assert not synth.of_type("AWS::StepFunctions::StateMachine")
        assert "ReplayStateMachineArn" not in synth.json["Outputs"]


def test_shared_queues_and_topics_are_named_not_recreated(tmp_path: Path) -> None:
    # Given the features variant (SQS on-failure destinations, a topic a processor publishes
    # to) rebuilt as a version, with cdk-nag on
    from .variants import FEATURES

    synth = synthesize(tmp_path, pipeline=FEATURES, stage="dev", version="v2")
    # Then only the scheduled function's dead-letter queue is created; the declared queues and
    # topics are the base stack's, named by their ARNs
    assert _names(synth, "AWS::SQS::Queue", "QueueName") == {"cascata-dev-windows-close-v2-dlq"}
    assert not synth.of_type("AWS::SNS::Topic")
    balances = synth.mapping("balances")
    assert balances["DestinationConfig"]["OnFailure"]["Destination"] == synth.arn(
        "sqs", "failed-balances"
    )
    granted = json.dumps(synth.policy_statements("balances"))
    assert synth.arn("sns", "balance-events") in granted
    assert synth.arn("sqs", "failed-balances") in granted
