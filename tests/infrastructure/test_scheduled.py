"""Scheduled functions: invoked at the declared rate, failures kept in an encrypted DLQ."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cascata.pipeline import ScheduledFunction

from .conftest import Synthesized
from .variants import WINDOWS_CLOSE_EVERY_S


def _rate(every_s: int) -> str:
    minutes = every_s // 60
    return f"rate({minutes} minute{'s' if minutes > 1 else ''})"


def _schedule_of(synth: Synthesized, scheduled: ScheduledFunction) -> dict[str, Any]:
    function_id, _ = synth.function(scheduled.name)
    found = [
        s["Properties"]
        for s in synth.of_type("AWS::Scheduler::Schedule").values()
        if s["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    ]
    assert len(found) == 1, f"{scheduled.name}: expected one schedule, got {found}"
    return found[0]


def _dlq_id(synth: Synthesized, scheduled: ScheduledFunction) -> str:
    return synth.logical_id("AWS::SQS::Queue", "QueueName", f"{synth.physical(scheduled.name)}-dlq")


@pytest.mark.parametrize("variant", ["dev", "prod", "msk", "features"])
def test_schedule_invokes_the_function_at_the_declared_rate_with_retries_and_a_dlq(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    assert len(synth.of_type("AWS::Scheduler::Schedule")) == len(synth.pipeline.scheduled)
    for scheduled in synth.pipeline.scheduled:
        # Given a declared scheduled function
        schedule = _schedule_of(synth, scheduled)
        # Then it runs at the declared rate, on time, enabled
        assert schedule["ScheduleExpression"] == _rate(scheduled.every_s)
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        assert schedule["State"] == "ENABLED"
        target = schedule["Target"]
        # ... Scheduler retries what it could not deliver, then parks it in the DLQ
        dlq = {"Fn::GetAtt": [_dlq_id(synth, scheduled), "Arn"]}
        assert target["DeadLetterConfig"] == {"Arn": dlq}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
        assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == max(60, scheduled.every_s)
        # ... and tells the function which tick this is
        payload = json.loads(target["Input"])
        assert payload["schedule"] == scheduled.name
        assert payload["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    if variant == "features":
        (scheduled,) = synth.pipeline.scheduled
        assert _schedule_of(synth, scheduled)["ScheduleExpression"] == _rate(WINDOWS_CLOSE_EVERY_S)
        assert _rate(WINDOWS_CLOSE_EVERY_S) == "rate(5 minutes)"


def test_declared_rate_is_one_minute_for_windows_close(dev: Synthesized) -> None:
    scheduled = next(s for s in dev.pipeline.scheduled if s.name == "windows-close")
    assert _schedule_of(dev, scheduled)["ScheduleExpression"] == "rate(1 minute)"


def test_function_failures_go_to_the_same_dlq_without_async_retries(dev: Synthesized) -> None:
    for scheduled in dev.pipeline.scheduled:
        function_id, _ = dev.function(scheduled.name)
        (config,) = [
            c["Properties"]
            for c in dev.of_type("AWS::Lambda::EventInvokeConfig").values()
            if c["Properties"]["FunctionName"] == {"Ref": function_id}
        ]
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": [_dlq_id(dev, scheduled), "Arn"]
        }
        # The next tick redoes the work: retrying an old tick only adds load
        assert config["MaximumRetryAttempts"] == 0
        assert config["MaximumEventAgeInSeconds"] == scheduled.every_s


def test_dlq_is_kms_encrypted_tls_only_and_kept_two_weeks(dev: Synthesized) -> None:
    (key_id,) = dev.of_type("AWS::KMS::Key")
    for scheduled in dev.pipeline.scheduled:
        queue_id = _dlq_id(dev, scheduled)
        props = dev.resources[queue_id]["Properties"]
        assert props["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
        assert props["MessageRetentionPeriod"] == 14 * 24 * 3600
        (policy,) = [
            p["Properties"]["PolicyDocument"]["Statement"]
            for p in dev.of_type("AWS::SQS::QueuePolicy").values()
            if p["Properties"]["Queues"] == [{"Ref": queue_id}]
        ]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy
        )


def test_scheduler_role_may_only_invoke_its_function_and_write_its_dlq(dev: Synthesized) -> None:
    (key_id,) = dev.of_type("AWS::KMS::Key")
    for scheduled in dev.pipeline.scheduled:
        schedule = _schedule_of(dev, scheduled)
        role_id = schedule["Target"]["RoleArn"]["Fn::GetAtt"][0]
        role = dev.resources[role_id]["Properties"]
        # Given the role Scheduler assumes, Then only Scheduler of this account may assume it
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": dev.config.account}}
        assert "ManagedPolicyArns" not in role
        # ... and it may invoke exactly this function and send to exactly this queue
        function_id, _ = dev.function(scheduled.name)
        statements = {
            json.dumps(s["Resource"], sort_keys=True): s for s in dev.role_statements(role_id)
        }
        invoke = statements.pop(json.dumps({"Fn::GetAtt": [function_id, "Arn"]}, sort_keys=True))
        assert invoke["Action"] == "lambda:InvokeFunction"
        send = statements.pop(
            json.dumps({"Fn::GetAtt": [_dlq_id(dev, scheduled), "Arn"]}, sort_keys=True)
        )
        assert "sqs:SendMessage" in send["Action"]
        assert not [a for a in send["Action"] if a.startswith(("sqs:Delete", "sqs:Receive"))]
        key = statements.pop(json.dumps({"Fn::GetAtt": [key_id, "Arn"]}, sort_keys=True))
        assert key["Condition"]["StringEquals"]["kms:ViaService"].startswith("sqs.")
        assert sorted(key["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
        assert statements == {}, "nothing else"
        # ... and the policy exists before the schedule (Scheduler checks it on create)
        (schedule_id,) = [
            k
            for k, s in dev.of_type("AWS::Scheduler::Schedule").items()
            if s["Properties"] is schedule
        ]
        assert role_id in dev.resources[schedule_id]["DependsOn"]
