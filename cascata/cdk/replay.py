"""Rebuilding a version of the views on AWS: what a replay changes, and the archive replay.

`replay_pipeline` is the pipeline a version stack renders: `Pipeline.for_version` (the same
replayable processors writing the version's own tables and derived streams) with the event
source mappings a rebuild needs:

- a mapping on a stream of the version's own (a derived stream, or in archive mode a replay
  stream) starts at TRIM_HORIZON: the stream is new, everything on it belongs to the rebuild;
- a mapping on a shared origin stream (stream mode) starts at TRIM_HORIZON, or AT_TIMESTAMP
  when `-c replaySince` is given;
- no mapping has a maximum record age. Lambda checks a record's age before every attempt,
  the first included, so the declared hour would discard every record a replay reads from
  history (and every record a catching-up version lags behind on). Retries stay bounded by the
  declared attempts and bisect, so a poison record still reaches its on-failure destination.

`ArchiveReplay` (archive mode only) refills the version's replay streams from the archive: a
Step Functions state machine invokes the republish function until it answers `{"done": true}`.
Each invocation works within its 15-minute budget and keeps its checkpoint in the version's
item of the version registry, so a retried or restarted execution resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from cascata.cdk.access import nag_resource
from cascata.cdk.archive import ARCHIVE_KINDS
from cascata.cdk.config import AlarmThresholds, ReplayConfig, rfc3339
from cascata.cdk.function import AlarmSpec, FunctionRuntime, HelperFunction, PipelineFunction
from cascata.cdk.naming import pin, stable_id
from cascata.pipeline import EventSource, Pipeline, StartingPosition

REPUBLISH_HANDLER = "cascata_runtime.republish.handler"
REPUBLISH_TIMEOUT = Duration.minutes(15)
REPUBLISH_MEMORY_MB = 1024
"""Room for a few decompressed archive objects and their PutRecords batches."""

TASK_TIMEOUT = REPUBLISH_TIMEOUT.plus(Duration.minutes(1))
"""The state machine gives up on an invocation shortly after Lambda itself would."""


def replay_pipeline(base: Pipeline, replay: ReplayConfig) -> Pipeline:
    """The pipeline a version stack renders (see the module docstring)."""
    version = base.for_version(replay.version, replay_from=replay.replay_from)

    def start(source: EventSource) -> EventSource:
        position: StartingPosition = "TRIM_HORIZON"
        timestamp: float | None = None
        if not version.versioned(source.stream) and replay.since is not None:
            position, timestamp = "AT_TIMESTAMP", replay.since.timestamp()
        return replace(
            source,
            starting_position=position,
            starting_position_timestamp=timestamp,
            max_record_age_s=-1,
        )

    return replace(
        version,
        processors=tuple(
            replace(proc, sources=tuple(start(s) for s in proc.sources))
            for proc in version.processors
        ),
    )


class ArchiveReplay(Construct):
    """The republish function and the state machine that loops over it until it is done."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        replay: ReplayConfig,
        function_name: str,
        state_machine_name: str,
        archive_bucket: s3.IBucket,
        archive_bucket_name: str,
        versions_table: dynamodb.ITable,
        versions_table_name: str,
        replay_streams: Mapping[str, kinesis.IStream],
        replay_stream_names: Mapping[str, str],
        encryption_key: kms.IKey,
        runtime: FunctionRuntime,
        environment: Mapping[str, str],
        thresholds: AlarmThresholds,
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        variables = {
            **environment,
            "ARCHIVE_BUCKET": archive_bucket_name,
            "VERSIONS_TABLE": versions_table_name,
            "REPLAY_VERSION": replay.version,
            "REPLAY_STREAMS": json.dumps(dict(sorted(replay_stream_names.items()))),
        }
        if replay.since is not None:
            variables["REPLAY_SINCE"] = rfc3339(replay.since)
        if replay.until is not None:
            variables["REPLAY_UNTIL"] = rfc3339(replay.until)

        self.republish = PipelineFunction(
            self,
            "Republish",
            declared=HelperFunction(
                name="republish",
                handler=REPUBLISH_HANDLER,
                description=f"Republishes the archive into the replay streams of "
                f"{replay.version}, one time-boxed chunk per invocation.",
                memory_mb=REPUBLISH_MEMORY_MB,
                timeout_s=int(REPUBLISH_TIMEOUT.to_seconds()),
                # One chunk at a time: two would publish the same objects twice.
                reserved_concurrency=1,
            ),
            function_name=function_name,
            environment=variables,
            bindings={},
            runtime=runtime,
        )
        self.republish.acknowledge_checks(
            {
                "CKV_AWS_116": "Invoked only by the replay state machine, synchronously "
                "(lambda:invoke, RequestResponse): the execution retries a failed chunk and "
                "fails visibly, so a dead-letter queue (asynchronous invocations only) would "
                "never receive anything."
            }
        )
        fn = self.republish.pipeline_function
        # Exactly what republishing needs: list and read the archive's events/ and errors/,
        # put records to the replay streams, keep the checkpoint in the version's item.
        for statement in (
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[archive_bucket.bucket_arn]),
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[archive_bucket.arn_for_objects(f"{k}/*") for k in ARCHIVE_KINDS],
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[encryption_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                actions=["kinesis:PutRecords"],
                resources=[s.stream_arn for _, s in sorted(replay_streams.items())],
            ),
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey"],
                resources=[encryption_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"kinesis.{region}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[versions_table.table_arn],
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[encryption_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}},
            ),
        ):
            fn.add_to_role_policy(statement)
        self.republish.acknowledge_policy_findings()
        archive_arn = nag_resource(self, archive_bucket.bucket_arn)
        self.republish.acknowledge_wildcards(
            {
                f"{archive_arn}/{kind}/*": f"Republishing reads every archive object under "
                f"`{kind}/` (the function lists the prefix, then reads what it lists); no "
                "other prefix."
                for kind in ARCHIVE_KINDS
            }
        )

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            # Step Functions' vended logs: this prefix keeps the logs resource policy small.
            log_group_name=f"/aws/vendedlogs/states/{state_machine_name}",
            retention=runtime.log_retention,
            encryption_key=encryption_key,
            removal_policy=runtime.removal_policy,
        )
        pin(self.log_group, stable_id("LogGroup", "replay"))

        # The state machine's role is immutable to the tasks' helpers: they would add
        # `<function-arn>:*`. This policy is the whole grant.
        self.state_machine_role = iam.Role(
            self,
            "StateMachineRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}
            ),
            description=f"Step Functions {state_machine_name}: invoke the republish function",
        )
        policy = iam.Policy(
            self,
            "StateMachinePolicy",
            statements=[
                iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[fn.function_arn]),
                # CloudWatch Logs vended delivery and X-Ray have no resource-level permissions.
                iam.PolicyStatement(
                    actions=[
                        "logs:CreateLogDelivery",
                        "logs:DeleteLogDelivery",
                        "logs:DescribeLogGroups",
                        "logs:DescribeResourcePolicies",
                        "logs:GetLogDelivery",
                        "logs:ListLogDeliveries",
                        "logs:PutResourcePolicy",
                        "logs:UpdateLogDelivery",
                    ],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    actions=[
                        "xray:GetSamplingRules",
                        "xray:GetSamplingTargets",
                        "xray:PutTelemetryRecords",
                        "xray:PutTraceSegments",
                    ],
                    resources=["*"],
                ),
            ],
        )
        policy.attach_to_role(self.state_machine_role)
        Validations.of(policy).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Step Functions logging (CloudWatch Logs vended log delivery) and X-Ray "
                "tracing actions have no resource-level permissions; the Lambda grant is this "
                "one function's ARN.",
            )
        )

        invoke = tasks.LambdaInvoke(
            self,
            "RepublishChunk",
            lambda_function=fn,
            payload=sfn.TaskInput.from_object(
                {"execution": sfn.JsonPath.execution_id, "version": replay.version}
            ),
            payload_response_only=True,
            task_timeout=sfn.Timeout.duration(TASK_TIMEOUT),
            comment="One chunk of the archive within the function's time budget",
        )
        # Transient Lambda errors are retried by the task's own policy (added first); anything
        # else (throttled PutRecords beyond the function's own retries, a timeout) resumes from
        # the checkpoint a few times before the execution fails and pages.
        invoke.add_retry(
            errors=["States.ALL"],
            interval=Duration.seconds(30),
            max_attempts=3,
            backoff_rate=2,
        )
        done = sfn.Succeed(self, "Replayed", comment="The archive is republished")
        check = (
            sfn.Choice(self, "Done?")
            .when(sfn.Condition.boolean_equals("$.done", True), done)
            .otherwise(invoke)
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            comment=f"Republish the archive into the replay streams of {replay.version}",
            definition_body=sfn.DefinitionBody.from_chainable(invoke.next(check)),
            state_machine_type=sfn.StateMachineType.STANDARD,
            role=self.state_machine_role.without_policy_updates(),
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=True,
            removal_policy=runtime.removal_policy,
        )
        pin(self.state_machine, stable_id("StateMachine", "replay"))
        # Step Functions checks its role (logs delivery) when the state machine is created.
        self.state_machine.node.add_dependency(policy)

        period = Duration.minutes(thresholds.period_minutes)
        self.replay_alarms = self.republish.create_alarms(
            [
                *self.republish.function_alarms(
                    errors=thresholds.errors,
                    throttles=thresholds.throttles,
                    period=period,
                    throttled_means="two replay executions are running at once; stop one",
                ),
                AlarmSpec(
                    "ReplayFailedAlarm",
                    self.state_machine.metric_failed(period=period, statistic="Sum"),
                    0,
                    f"the archive replay of {replay.version} failed after its retries; the "
                    "checkpoint is kept, start a new execution to resume",
                ),
                AlarmSpec(
                    "ReplayTimedOutAlarm",
                    self.state_machine.metric_timed_out(period=period, statistic="Sum"),
                    0,
                    f"the archive replay of {replay.version} timed out; start a new execution "
                    "to resume from the checkpoint",
                ),
            ]
        )
