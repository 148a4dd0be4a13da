"""`PipelineFunction`: what every declared function is, whatever invokes it.

A stream processor, a scheduled function and an API function are the same thing underneath:
Python `LAMBDA_PYTHON` on arm64, the shared asset, the Powertools layer, environment variables
encrypted with the stage's key, JSON logs into its own encrypted log group with bounded
retention, X-Ray, and its own execution role holding only the grants its declared bindings
imply. The kinds differ only in what invokes them and in the
alarms that say they are healthy, which the subclasses add (`StreamProcessor`,
`ScheduledTask`, `ApiHandler`). The children are created directly in the subclass construct, so
the construct paths (and the generated ids of roles and alarms) are the same for every kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from cascata.cdk.access import nag_resource
from cascata.cdk.bindings import BoundResource, StoredResource
from cascata.cdk.naming import pin, stable_id
from cascata.cdk.scanners import VPC_NOT_NEEDED, acknowledge_checks
from cascata.pipeline import Binding

# Python logging level names (POWERTOOLS_LOG_LEVEL) -> Lambda's application log levels.
_APPLICATION_LOG_LEVEL = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
    "CRITICAL": lambda_.ApplicationLogLevel.FATAL,
}


LAMBDA_PYTHON = (3, 12)
"""The one Python the functions run on (Lambda runtime, Powertools layer and the Kafka client
layer derive from it); the project and its tests run on 3.11 to 3.13. 3.12 and not 3.11: the
Kafka layer's confluent-kafka wheel for arm64 needs glibc 2.28, which the Amazon Linux 2023
runtimes (python3.12 and later) have and python3.11's Amazon Linux 2 does not."""
LAMBDA_RUNTIME: lambda_.Runtime = getattr(
    lambda_.Runtime, "PYTHON_{}_{}".format(*LAMBDA_PYTHON))
LAMBDA_ARCH = lambda_.Architecture.ARM_64
"""The one architecture of the functions (and of their layers)."""
LAMBDA_ARCHITECTURE: str = LAMBDA_ARCH.name
"""Its name as Lambda and the Powertools parameters spell it (`arm64`)."""


class FunctionSpec(Protocol):
    """What a function is made from: every declared kind (`cascata.pipeline.Function`) has
    these, and so do the stacks' own helper functions (`HelperFunction`)."""

    @property
    def name(self) -> str: ...
    @property
    def handler(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def memory_mb(self) -> int: ...
    @property
    def timeout_s(self) -> int: ...
    @property
    def reserved_concurrency(self) -> int | None: ...
    @property
    def bindings(self) -> tuple[Binding, ...]: ...


@dataclass(frozen=True, slots=True)
class HelperFunction:
    """A function the stacks add around the declared pipeline (the archive's record
    transformation, the archive replay's republisher): same asset, runtime and logging as a
    declared function, its grants made by the construct that owns it, not by bindings."""

    name: str
    handler: str
    description: str
    memory_mb: int = 512
    timeout_s: int = 60
    reserved_concurrency: int | None = None
    bindings: tuple[Binding, ...] = ()


VPC_NETWORK_WRITES = (
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:UnassignPrivateIpAddresses",
)
VPC_NETWORK_READS = ("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets")
VPC_NETWORK_ACTIONS = (*VPC_NETWORK_WRITES, *VPC_NETWORK_READS)
"""What Lambda does with a VPC function's role to manage its network interfaces (the actions of
AWSLambdaVPCAccessExecutionRole without its logs:* on every log group). CDK only attaches that
policy to the roles it creates itself; ours are explicit, and Lambda refuses to create a VPC
function whose role cannot create network interfaces."""


@dataclass(frozen=True, slots=True)
class VpcPlacement:
    """Where functions run when the broker lives in a VPC (MSK)."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_groups: Sequence[ec2.ISecurityGroup]


@dataclass(frozen=True, slots=True)
class FunctionRuntime:
    """What every function of a stage shares: code, layers, key, logging, removal, alarms."""

    code: lambda_.Code
    layers: Sequence[lambda_.ILayerVersion]
    encryption_key: kms.IKey
    log_retention: logs.RetentionDays
    log_level: str
    removal_policy: RemovalPolicy
    alarm_topic: sns.ITopic


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """One alarm: a metric, when it fires, and what it means to the person paged."""

    construct_id: str
    metric: cloudwatch.IMetric
    threshold: float
    description: str
    periods: int = 1
    comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
    """Most signals fire above a count; success ratios (Firehose) fire below 1."""


def create_alarms(
    scope: Construct, specs: Sequence[AlarmSpec], *, alarm_topic: sns.ITopic
) -> dict[str, cloudwatch.Alarm]:
    """Alarms that notify the alarm topic when they fire and when they recover."""
    alarms: dict[str, cloudwatch.Alarm] = {}
    action = cloudwatch_actions.SnsAction(alarm_topic)
    for spec in specs:
        alarm = cloudwatch.Alarm(
            scope,
            spec.construct_id,
            metric=spec.metric,
            threshold=spec.threshold,
            evaluation_periods=spec.periods,
            datapoints_to_alarm=spec.periods,
            comparison_operator=spec.comparison,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=spec.description,
        )
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        alarms[spec.construct_id] = alarm
    return alarms


class PipelineFunction(Construct):
    """A declared function: log group, role, function and the grants of its bindings."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        declared: FunctionSpec,
        function_name: str,
        environment: Mapping[str, str],
        bindings: Mapping[str, BoundResource],
        runtime: FunctionRuntime,
        placement: VpcPlacement | None = None,
        reserved_concurrency: int | None = None,
    ) -> None:
        """`reserved_concurrency`, when given, is the stage's reservation for this function
        (`StageConfig.reserved_concurrency`); otherwise the declared one applies."""
        super().__init__(scope, construct_id)
        self.declared = declared
        self.function_name = function_name
        self.runtime = runtime
        self.reserved_concurrency = (
            reserved_concurrency
            if reserved_concurrency is not None
            else declared.reserved_concurrency
        )
        self._object_findings: set[str] = set()

        self.function_log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=runtime.log_retention,
            encryption_key=runtime.encryption_key,
            removal_policy=runtime.removal_policy,
        )
        pin(self.function_log_group, stable_id("LogGroup", declared.name))

        # An explicit role without AWSLambdaBasicExecutionRole: logs go to this one log group.
        self.function_role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {function_name}: declared bindings only",
        )
        self.function_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.function_log_group.log_group_arn],
            )
        )

        self.pipeline_function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=declared.description,
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCH,
            handler=declared.handler,
            code=runtime.code,
            layers=list(runtime.layers),
            memory_size=declared.memory_mb,
            timeout=Duration.seconds(declared.timeout_s),
            reserved_concurrent_executions=self.reserved_concurrency,
            environment=dict(environment),
            # Bindings name resources, not secrets, but the stage's key keeps them as
            # protected as the data they point at (Lambda's own key otherwise).
            environment_encryption=runtime.encryption_key,
            role=self.function_role,
            log_group=self.function_log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            # Same level as POWERTOOLS_LOG_LEVEL, so Lambda's filter and Powertools agree.
            application_log_level_v2=_APPLICATION_LOG_LEVEL[runtime.log_level],
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=placement.vpc if placement else None,
            vpc_subnets=placement.subnets if placement else None,
            security_groups=list(placement.security_groups) if placement else None,
        )
        pin(self.pipeline_function, stable_id("Function", declared.name))
        if placement is not None:
            self._grant_network_interfaces()

        for binding in declared.bindings:
            resource = bindings[binding.resource]
            resource.grant_access(self.pipeline_function, access=binding.access, scope=self)
            self.note_granted(resource)
        Validations.of(self.pipeline_function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason=f"Pinned to {LAMBDA_RUNTIME.name} on purpose (LAMBDA_PYTHON): the "
                "functions and the Powertools layer build target it; the runtime is bumped "
                "deliberately, in one place.",
            )
        )
        if placement is None:
            self.acknowledge_checks({"CKV_AWS_117": VPC_NOT_NEEDED})

    def _grant_network_interfaces(self) -> None:
        """The ENI actions of a function in a VPC: the Describe* ones work only on "*"; the
        others on this account's and region's EC2 resources, the form the Lambda developer
        guide gives for them (the interfaces' ids are Lambda's to choose, at run time)."""
        stack = Stack.of(self)
        in_account = f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:*/*"
        self.function_role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(VPC_NETWORK_READS), resources=["*"])
        )
        self.function_role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(VPC_NETWORK_WRITES), resources=[in_account])
        )
        self.acknowledge_wildcards({
            nag_resource(self, in_account): "Lambda creates, re-addresses and deletes this "
            "function's network interfaces in the subnets of its placement with these actions; "
            "the interfaces' ids are chosen by Lambda at run time, so the resource is this "
            "account's and region's EC2 resources (the form the Lambda developer guide gives).",
        })

    def acknowledge_checks(self, reasons: Mapping[str, str]) -> None:
        """Acknowledge checkov checks (id -> reason) on the function, in the template."""
        acknowledge_checks(self.pipeline_function, reasons)

    def note_granted(self, resource: BoundResource) -> None:
        """Remember a bucket granted at object level, to acknowledge its `bucket/*` finding."""
        if isinstance(resource, StoredResource) and (finding := resource.object_arn_finding(self)):
            self._object_findings.add(finding)

    def acknowledge_policy_findings(self) -> None:
        """Acknowledge, on the role's policy, the findings its exact grants still raise.

        Called once every grant is made: the policy only exists after the first statement.
        """
        policy = self.function_role.node.try_find_child("DefaultPolicy")
        if policy is None:
            return
        Validations.of(policy).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray PutTraceSegments/PutTelemetryRecords (added by Tracing.ACTIVE) "
                "have no resource-level permissions, nor do ec2:DescribeNetworkInterfaces and "
                "ec2:DescribeSubnets, which Lambda needs for a function in a VPC.",
            )
        )
        for finding in sorted(self._object_findings):
            Validations.of(policy).acknowledge(
                Acknowledgment(
                    id=finding,
                    reason="Object-level S3 actions (PutObject, GetObject) need the objects "
                    "of this one declared bucket, `<bucket-arn>/*`; no other bucket.",
                )
            )

    def acknowledge_wildcards(self, reasons: Mapping[str, str]) -> None:
        """Acknowledge the IAM5 finding of each wildcard resource (as cdk-nag prints it) on the
        role's policy, each with its own reason. Called once the grants are made."""
        policy = self.function_role.node.try_find_child("DefaultPolicy")
        if policy is None or not reasons:
            return
        Validations.of(policy).acknowledge(
            *(
                Acknowledgment(id=f"AwsSolutions-IAM5[Resource::{resource}]", reason=reason)
                for resource, reason in sorted(reasons.items())
            )
        )

    def function_alarms(
        self, *, errors: int, throttles: int, period: Duration, throttled_means: str
    ) -> list[AlarmSpec]:
        """Whole invocations failing and throttling: the two signals every kind shares."""
        fn = self.pipeline_function
        name = self.declared.name
        return [
            AlarmSpec(
                "ErrorsAlarm",
                fn.metric_errors(period=period, statistic="Sum"),
                errors,
                f"{name} invocations are failing as a whole (not per record)",
            ),
            AlarmSpec(
                "ThrottlesAlarm",
                fn.metric_throttles(period=period, statistic="Sum"),
                throttles,
                f"{name} is throttled; {throttled_means}",
            ),
        ]

    def create_alarms(self, specs: Sequence[AlarmSpec]) -> dict[str, cloudwatch.Alarm]:
        """Alarms that notify the alarm topic when they fire and when they recover."""
        return create_alarms(self, specs, alarm_topic=self.runtime.alarm_topic)
