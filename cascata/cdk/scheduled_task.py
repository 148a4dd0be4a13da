"""`ScheduledTask`: a declared `ScheduledFunction` run by EventBridge Scheduler.

The function (a `PipelineFunction`) is the target of a schedule at the declared rate, in a
schedule group of its own (Scheduler's metrics are per group), invoked through a role that may
invoke this one function and write this one dead-letter queue. A run that fails lands in that
queue whichever way it fails: Scheduler could not invoke the function (its own retry policy,
then the queue), or the function raised (Lambda's asynchronous invocation config sends the
failed event to the same queue). Lambda's asynchronous retries are off: the next tick, at most
one period later, redoes the work, and the function is written to be idempotent (closing an
already closed window is a no-op). Alarms: errors, throttles, dead-letter queue depth,
dead-letter delivery failures.
"""

from __future__ import annotations

from collections.abc import Mapping

import jsii
from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cascata.cdk.access import grant
from cascata.cdk.bindings import BoundResource
from cascata.cdk.config import AlarmThresholds
from cascata.cdk.function import AlarmSpec, FunctionRuntime, PipelineFunction, VpcPlacement
from cascata.cdk.naming import pin, stable_id
from cascata.pipeline import ResourceKind, ScheduledFunction

SCHEDULER_RETRY_ATTEMPTS = 3
"""Scheduler retries an invocation it could not deliver (throttled, Lambda unavailable)."""

DEAD_LETTER_RETENTION = Duration.days(14)
"""SQS's maximum: failed runs stay inspectable for two weeks."""


@jsii.implements(lambda_.IDestination)
class _QueueDestination:
    """An asynchronous-invocation destination whose permission is granted separately.

    `SqsDestination` grants `sqs:*Message*` plus `kms:ReEncrypt*`/`GenerateDataKey*` on the key;
    the function only needs to send to this queue (see `stacks.access`).
    """

    def __init__(self, queue_arn: str) -> None:
        self._queue_arn = queue_arn

    def bind(
        self,
        scope: Construct,
        fn: lambda_.IFunction,
        *,
        type: lambda_.DestinationType,
    ) -> lambda_.DestinationConfig:
        del scope, fn, type
        return lambda_.DestinationConfig(destination=self._queue_arn)


class ScheduledTask(PipelineFunction):
    """A declared scheduled function: function, schedule, invoker role, dead-letter queue."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        scheduled: ScheduledFunction,
        function_name: str,
        environment: Mapping[str, str],
        bindings: Mapping[str, BoundResource],
        runtime: FunctionRuntime,
        thresholds: AlarmThresholds,
        reserved_concurrency: int | None = None,
        placement: VpcPlacement | None = None,
    ) -> None:
        """`placement`: the broker's VPC, for a function that reaches Kafka (broker=msk)."""
        super().__init__(
            scope,
            construct_id,
            declared=scheduled,
            function_name=function_name,
            environment=environment,
            bindings=bindings,
            runtime=runtime,
            reserved_concurrency=reserved_concurrency,
            placement=placement,
        )
        self.scheduled = scheduled
        key = runtime.encryption_key
        account = Stack.of(self).account

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{function_name}-dlq",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
            removal_policy=runtime.removal_policy,
        )
        pin(self.dead_letter_queue, stable_id("Queue", f"{scheduled.name}-dlq"))
        Validations.of(self.dead_letter_queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself a dead-letter queue: of the EventBridge Scheduler "
                "target and of the function's asynchronous invocations, which cdk-nag does not "
                "recognise (it only sees SQS redrive policies).",
            )
        )

        # Function errors: no asynchronous retry (the next tick redoes the work), straight to
        # the queue, with the request and the error, for as long as one period.
        grant(
            self.pipeline_function,
            kind=ResourceKind.QUEUE,
            access="write",
            resource_arn=self.dead_letter_queue.queue_arn,
            key=key,
            scope=self,
        )
        self.pipeline_function.configure_async_invoke(
            retry_attempts=0,
            max_event_age=Duration.seconds(scheduled.every_s),
            on_failure=_QueueDestination(self.dead_letter_queue.queue_arn),
        )
        self.acknowledge_checks(
            {
                "CKV_AWS_116": f"Asynchronous failures go to {function_name}-dlq through the "
                "function's on-failure destination (AWS::Lambda::EventInvokeConfig), which "
                "keeps the request and the error, unlike a DeadLetterConfig; the check only "
                "looks for the latter. Scheduler's undeliverable invocations go to the same "
                "queue."
            }
        )
        if self.reserved_concurrency is None:
            self.acknowledge_checks(
                {
                    "CKV_AWS_115": f"Invoked only by its schedule, once every "
                    f"{scheduled.every_s} s, with asynchronous retries off: at most a few "
                    "runs overlap, so a reservation would protect no downstream."
                }
            )

        # Scheduler's execution role: invoke this function, write this queue, nothing else.
        # aws:SourceAccount keeps another account's schedule from using it (confused deputy).
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": account}}
            ),
            description=f"EventBridge Scheduler invoking {function_name} every "
            f"{scheduled.every_s} s",
        )
        self.scheduler_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[self.pipeline_function.function_arn],
            )
        )
        grant(
            self.scheduler_role,
            kind=ResourceKind.QUEUE,
            access="write",
            resource_arn=self.dead_letter_queue.queue_arn,
            key=key,
            scope=self,
        )
        # A group of its own, so that Scheduler's metrics (per group) are this task's alone.
        self.schedule_group = scheduler.ScheduleGroup(
            self, "ScheduleGroup", removal_policy=runtime.removal_policy
        )
        self.function_schedule = scheduler.Schedule(
            self,
            "Schedule",
            schedule=scheduler.ScheduleExpression.rate(Duration.seconds(scheduled.every_s)),
            schedule_group=self.schedule_group,
            description=scheduled.description,
            target=targets.LambdaInvoke(
                self.pipeline_function,
                # Immutable: the policy above is the whole grant. The target's own helpers
                # would add `<function-arn>:*` and `kms:ReEncrypt*`/`GenerateDataKey*`.
                role=self.scheduler_role.without_policy_updates(),
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=SCHEDULER_RETRY_ATTEMPTS,
                # An invocation older than one period is superseded by the next tick.
                max_event_age=Duration.seconds(max(60, scheduled.every_s)),
                input=scheduler.ScheduleTargetInput.from_object(
                    {
                        "schedule": scheduled.name,
                        "scheduled_time": scheduler.ContextAttribute.scheduled_time,
                        "execution_id": scheduler.ContextAttribute.execution_id,
                        "attempt": scheduler.ContextAttribute.attempt_number,
                    }
                ),
            ),
        )
        # The schedule checks its role when it is created: the policy must exist by then.
        self.function_schedule.node.add_dependency(self.scheduler_role)

        self.acknowledge_policy_findings()
        period = Duration.minutes(thresholds.period_minutes)
        name = scheduled.name
        self.task_alarms = self.create_alarms(
            [
                *self.function_alarms(
                    errors=thresholds.errors,
                    throttles=thresholds.throttles,
                    period=period,
                    throttled_means="runs are delayed or dropped to the dead-letter queue",
                ),
                AlarmSpec(
                    "DeadLetterQueueAlarm",
                    self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                        period=period, statistic="Maximum"
                    ),
                    0,
                    f"runs of {name} failed and were parked in {function_name}-dlq; read the "
                    "messages for the error, fix, then purge the queue",
                ),
                AlarmSpec(
                    "DeadLetterDeliveryAlarm",
                    self.schedule_group.metric_failed_to_be_sent_to_dlq(
                        period=period, statistic="Sum"
                    ),
                    0,
                    f"EventBridge Scheduler could not write failed runs of {name} to "
                    f"{function_name}-dlq: those runs left no trace",
                ),
            ]
        )

    @property
    def dead_letter_metric(self) -> cloudwatch.IMetric:
        return self.task_alarms["DeadLetterQueueAlarm"].metric
