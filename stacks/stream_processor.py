"""`StreamProcessor`: one declared processor rendered as a Lambda function and its mapping.

A processor is a function (Python 3.11 on arm64, the shared `lambdas/` asset, the Powertools
layer, JSON logs into its own encrypted log group, X-Ray), its own execution role holding only
the declared grants, the event source mapping built from the declared `EventSource` with an
on-failure destination that keeps the payload, and the alarms an operator needs to know the
processor is healthy: lag, errors, throttles, on-failure records and deliveries, quarantine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from cascata.pipeline import Processor
from stacks.bindings import BoundResource, StoredResource, on_failure_destination
from stacks.config import AlarmThresholds
from stacks.naming import pin, stable_id
from stacks.sources import StreamSource

QUARANTINE_NAMESPACE = "Cascata"
QUARANTINE_METRIC = "Quarantined"
"""Emitted by the functions through Powertools Metrics, with dimension `service`."""

# Python logging level names (POWERTOOLS_LOG_LEVEL) -> Lambda's application log levels.
_APPLICATION_LOG_LEVEL = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
    "CRITICAL": lambda_.ApplicationLogLevel.FATAL,
}


@dataclass(frozen=True, slots=True)
class VpcPlacement:
    """Where functions run when the broker lives in a VPC (MSK)."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_groups: Sequence[ec2.ISecurityGroup]


class StreamProcessor(Construct):
    """A declared processor: function, role, log group, event source mapping, alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        processor: Processor,
        function_name: str,
        environment: Mapping[str, str],
        code: lambda_.Code,
        layers: Sequence[lambda_.ILayerVersion],
        source: StreamSource,
        bindings: Mapping[str, BoundResource],
        on_failure: BoundResource,
        encryption_key: kms.IKey,
        log_retention: logs.RetentionDays,
        log_level: str,
        removal_policy: RemovalPolicy,
        thresholds: AlarmThresholds,
        lag_threshold: int,
        alarm_topic: sns.ITopic,
        placement: VpcPlacement | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.processor = processor
        self.function_name = function_name

        self.processor_log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=log_retention,
            encryption_key=encryption_key,
            removal_policy=removal_policy,
        )
        pin(self.processor_log_group, stable_id("LogGroup", processor.name))

        # An explicit role without AWSLambdaBasicExecutionRole: logs go to this one log group.
        self.processor_role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {function_name}: declared bindings only",
        )
        self.processor_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.processor_log_group.log_group_arn],
            )
        )

        self.processor_function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=processor.description,
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.ARM_64,
            handler=processor.handler,
            code=code,
            layers=list(layers),
            memory_size=processor.memory_mb,
            timeout=Duration.seconds(processor.timeout_s),
            reserved_concurrent_executions=processor.reserved_concurrency,
            environment=dict(environment),
            role=self.processor_role,
            log_group=self.processor_log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            # Same level as POWERTOOLS_LOG_LEVEL, so Lambda's filter and Powertools agree.
            application_log_level_v2=_APPLICATION_LOG_LEVEL[log_level],
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=placement.vpc if placement else None,
            vpc_subnets=placement.subnets if placement else None,
            security_groups=list(placement.security_groups) if placement else None,
        )
        pin(self.processor_function, stable_id("Function", processor.name))

        granted = [bindings[b.resource] for b in processor.bindings] + [on_failure]
        for binding in processor.bindings:
            bindings[binding.resource].grant_access(
                self.processor_function, access=binding.access, scope=self
            )
        destination = on_failure_destination(
            on_failure, grantee=self.processor_function, scope=self
        )
        self.processor_mapping = source.attach(
            self,
            function=self.processor_function,
            settings=processor.source,
            on_failure=destination,
            consumer_group=function_name,
        )
        pin(self.processor_mapping, stable_id("EventSourceMapping", processor.name))

        self._acknowledge_findings(
            object_findings=sorted(
                {
                    finding
                    for resource in granted
                    if isinstance(resource, StoredResource)
                    and (finding := resource.object_arn_finding)
                }
            ),
        )
        self.processor_alarms = self._alarms(
            source=source,
            thresholds=thresholds,
            lag_threshold=lag_threshold,
            alarm_topic=alarm_topic,
        )

    def _alarms(
        self,
        *,
        source: StreamSource,
        thresholds: AlarmThresholds,
        lag_threshold: int,
        alarm_topic: sns.ITopic,
    ) -> dict[str, cloudwatch.Alarm]:
        fn = self.processor_function
        period = Duration.minutes(thresholds.period_minutes)
        name = self.processor.name
        mapping_id = self.processor_mapping.event_source_mapping_id
        specs: list[tuple[str, cloudwatch.Metric, int, int, str]] = [
            (
                "LagAlarm",
                source.lag_metric(fn, period=period),
                lag_threshold,
                3,
                f"{name} is falling behind its source ({source.lag_unit}); records near the "
                "maximum record age will go to the on-failure destination",
            ),
            (
                "ErrorsAlarm",
                fn.metric_errors(period=period, statistic="Sum"),
                thresholds.errors,
                1,
                f"{name} invocations are failing as a whole (not per record)",
            ),
            (
                "ThrottlesAlarm",
                fn.metric_throttles(period=period, statistic="Sum"),
                thresholds.throttles,
                1,
                f"{name} is throttled; the mapping falls behind",
            ),
            (
                "OnFailureRecordsAlarm",
                cloudwatch.Metric(
                    namespace="AWS/Lambda",
                    metric_name="OnFailureDestinationDeliveredEventCount",
                    dimensions_map={"EventSourceMappingUUID": mapping_id},
                    statistic="Sum",
                    period=period,
                ),
                0,
                1,
                f"{name} gave up on records and parked them in its on-failure destination; "
                "inspect and replay them",
            ),
            (
                "OnFailureDeliveryAlarm",
                fn.metric("DestinationDeliveryFailures", statistic="Sum", period=period),
                0,
                1,
                f"{name} could not write failed records to its on-failure destination: "
                "those records are lost unless replayed from the stream",
            ),
            (
                "QuarantineAlarm",
                cloudwatch.Metric(
                    namespace=QUARANTINE_NAMESPACE,
                    metric_name=QUARANTINE_METRIC,
                    dimensions_map={"service": name},
                    statistic="Sum",
                    period=period,
                ),
                thresholds.quarantined,
                1,
                f"{name} is quarantining more invalid events than usual",
            ),
        ]
        alarms: dict[str, cloudwatch.Alarm] = {}
        action = cloudwatch_actions.SnsAction(alarm_topic)
        for construct_id, metric, threshold, periods, description in specs:
            alarm = metric.create_alarm(
                self,
                construct_id,
                threshold=threshold,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            alarms[construct_id] = alarm
        return alarms

    def _acknowledge_findings(self, *, object_findings: Sequence[str]) -> None:
        Validations.of(self.processor_function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="Pinned to python3.11 on purpose: the project, its tests and the "
                "Powertools layer build all target 3.11; the runtime is bumped deliberately.",
            )
        )
        policy = self.processor_role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            Validations.of(policy).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="X-Ray PutTraceSegments/PutTelemetryRecords (added by Tracing.ACTIVE) "
                    "have no resource-level permissions.",
                )
            )
            for finding in object_findings:
                Validations.of(policy).acknowledge(
                    Acknowledgment(
                        id=finding,
                        reason="Object-level S3 actions (PutObject, GetObject) need the objects "
                        "of this one declared bucket, `<bucket-arn>/*`; no other bucket.",
                    )
                )
