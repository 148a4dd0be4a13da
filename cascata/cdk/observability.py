"""Operations: the alarm topic every alarm notifies, and the pipeline's dashboard.

The dashboard reads top to bottom like the pipeline: what enters each stream, then per
processor how much it does, how far behind it is, what fails and what it quarantines, then the
scheduled functions and the HTTP API (requests, errors, latency per function), then what the
views cost to write.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from cascata.cdk.archive import StreamArchive
from cascata.cdk.http_api import ApiHandler, PipelineHttpApi
from cascata.cdk.naming import pin, stable_id
from cascata.cdk.replay import ArchiveReplay
from cascata.cdk.scheduled_task import ScheduledTask
from cascata.cdk.stream_processor import QUARANTINE_METRIC, QUARANTINE_NAMESPACE, StreamProcessor


class AlarmTopic(Construct):
    """An encrypted, TLS-only SNS topic for alarms, optionally with an e-mail subscriber."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        display_name: str,
        encryption_key: kms.IKey,
        email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarm_topic = sns.Topic(
            self,
            "Topic",
            display_name=display_name,
            master_key=encryption_key,
            enforce_ssl=True,
        )
        # Pinned: replacing the topic silently drops every confirmed subscription.
        pin(self.alarm_topic, stable_id("AlarmTopic"))
        # The TLS-only topic policy replaces SNS's default one, so CloudWatch (a service
        # principal, not an identity of this account) must be allowed explicitly.
        self.alarm_topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.alarm_topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        if email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(email))


class PipelineDashboard(Construct):
    """One CloudWatch dashboard for the whole pipeline."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        streams: Sequence[kinesis.IStream],
        processors: Sequence[StreamProcessor],
        tables: Sequence[dynamodb.ITable],
        period: Duration,
        scheduled: Sequence[ScheduledTask] = (),
        http_api: PipelineHttpApi | None = None,
        api_handlers: Sequence[ApiHandler] = (),
        archives: Sequence[StreamArchive] = (),
        archive_replay: ArchiveReplay | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.pipeline_dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=dashboard_name, default_interval=Duration.hours(3)
        )
        # Pinned: a dashboard name is unique, a replacement would delete the new one.
        pin(self.pipeline_dashboard, stable_id("Dashboard"))
        if streams:
            self.pipeline_dashboard.add_widgets(
                cloudwatch.TextWidget(markdown="## Streams", width=24, height=1),
                cloudwatch.GraphWidget(
                    title="Incoming records",
                    left=[
                        s.metric_incoming_records(period=period, statistic="Sum") for s in streams
                    ],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="Write throttling (provisioned throughput exceeded)",
                    left=[
                        s.metric_write_provisioned_throughput_exceeded(
                            period=period, statistic="Sum"
                        )
                        for s in streams
                    ],
                    width=12,
                ),
            )
        for proc in processors:
            fn = proc.processor_function
            self.pipeline_dashboard.add_widgets(
                cloudwatch.TextWidget(markdown=f"## {proc.processor.name}", width=24, height=1),
                cloudwatch.GraphWidget(
                    title=f"{proc.processor.name}: invocations, errors, throttles",
                    left=[
                        fn.metric_invocations(period=period, statistic="Sum"),
                        fn.metric_errors(period=period, statistic="Sum"),
                        fn.metric_throttles(period=period, statistic="Sum"),
                    ],
                    width=6,
                ),
                cloudwatch.GraphWidget(
                    title=f"{proc.processor.name}: lag and duration",
                    left=[proc.processor_alarms["LagAlarm"].metric],
                    right=[fn.metric_duration(period=period, statistic="p99")],
                    width=6,
                ),
                cloudwatch.GraphWidget(
                    title=f"{proc.processor.name}: failed records",
                    left=[
                        *(
                            proc.processor_alarms[f"OnFailureRecordsAlarm{m.suffix}"].metric
                            for m in proc.processor_mappings
                        ),
                        proc.processor_alarms["OnFailureDeliveryAlarm"].metric,
                    ],
                    width=6,
                ),
                cloudwatch.GraphWidget(
                    title=f"{proc.processor.name}: quarantined and retried records",
                    left=[
                        cloudwatch.Metric(
                            namespace=QUARANTINE_NAMESPACE,
                            metric_name=name,
                            dimensions_map={"service": proc.processor.name},
                            statistic="Sum",
                            period=period,
                        )
                        # `Failed` counts records reported as batch item failures (retried).
                        for name in (QUARANTINE_METRIC, "Failed")
                    ],
                    width=6,
                ),
            )
        for task in scheduled:
            fn = task.pipeline_function
            name = task.scheduled.name
            self.pipeline_dashboard.add_widgets(
                cloudwatch.TextWidget(
                    markdown=f"## {name} (every {task.scheduled.every_s} s)", width=24, height=1
                ),
                cloudwatch.GraphWidget(
                    title=f"{name}: invocations, errors, throttles",
                    left=[
                        fn.metric_invocations(period=period, statistic="Sum"),
                        fn.metric_errors(period=period, statistic="Sum"),
                        fn.metric_throttles(period=period, statistic="Sum"),
                    ],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title=f"{name}: duration",
                    left=[fn.metric_duration(period=period, statistic="p99")],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title=f"{name}: failed runs (dead-letter queue)",
                    left=[task.dead_letter_metric],
                    width=8,
                ),
            )
        if http_api is not None:
            stage = http_api.http_stage
            self.pipeline_dashboard.add_widgets(
                cloudwatch.TextWidget(markdown="## HTTP API", width=24, height=1),
                cloudwatch.GraphWidget(
                    title="Requests, 4xx, 5xx",
                    left=[
                        stage.metric_count(period=period, statistic="Sum"),
                        stage.metric_client_error(period=period, statistic="Sum"),
                        stage.metric_server_error(period=period, statistic="Sum"),
                    ],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title="Latency p99 (total and integration)",
                    left=[
                        stage.metric_latency(period=period, statistic="p99"),
                        stage.metric_integration_latency(period=period, statistic="p99"),
                    ],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title="Functions: errors and throttles",
                    left=[
                        metric
                        for handler in api_handlers
                        for metric in (
                            handler.pipeline_function.metric_errors(period=period, statistic="Sum"),
                            handler.pipeline_function.metric_throttles(
                                period=period, statistic="Sum"
                            ),
                        )
                    ],
                    width=8,
                ),
            )
        if archives:
            self.pipeline_dashboard.add_widgets(
                cloudwatch.TextWidget(markdown="## Archive", width=24, height=1),
                cloudwatch.GraphWidget(
                    title="Archive freshness (age of the oldest undelivered record, s)",
                    left=[
                        a.metric("DeliveryToS3.DataFreshness", statistic="Maximum", period=period)
                        for a in archives
                    ],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title="Records archived",
                    left=[
                        a.metric("DeliveryToS3.Records", statistic="Sum", period=period)
                        for a in archives
                    ],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title="Transformation and delivery success (1 = all)",
                    left=[
                        a.metric(name, statistic="Minimum", period=period)
                        for a in archives
                        for name in ("ExecuteProcessing.Success", "DeliveryToS3.Success")
                    ],
                    width=8,
                ),
            )
        if archive_replay is not None:
            machine = archive_replay.state_machine
            republish = archive_replay.republish.pipeline_function
            self.pipeline_dashboard.add_widgets(
                cloudwatch.TextWidget(markdown="## Archive replay", width=24, height=1),
                cloudwatch.GraphWidget(
                    title="Replay executions: started, succeeded, failed",
                    left=[
                        machine.metric_started(period=period, statistic="Sum"),
                        machine.metric_succeeded(period=period, statistic="Sum"),
                        machine.metric_failed(period=period, statistic="Sum"),
                    ],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="republish: invocations, errors, duration",
                    left=[
                        republish.metric_invocations(period=period, statistic="Sum"),
                        republish.metric_errors(period=period, statistic="Sum"),
                    ],
                    right=[republish.metric_duration(period=period, statistic="Maximum")],
                    width=12,
                ),
            )
        if tables:
            self.pipeline_dashboard.add_widgets(
                cloudwatch.TextWidget(markdown="## Views", width=24, height=1),
                cloudwatch.GraphWidget(
                    title="Consumed write capacity (the dominant cost)",
                    left=[
                        t.metric_consumed_write_capacity_units(period=period, statistic="Sum")
                        for t in tables
                    ],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="Throttled requests",
                    left=[
                        t.metric("WriteThrottleEvents", period=period, statistic="Sum")
                        for t in tables
                    ],
                    width=12,
                ),
            )
