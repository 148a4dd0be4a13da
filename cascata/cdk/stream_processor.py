"""`StreamProcessor`: one declared processor rendered as a Lambda function and its mappings.

A processor is a `PipelineFunction` plus one event source mapping per declared `EventSource`,
each built from its declaration with its own on-failure destination that keeps the payload, and
the alarms an operator needs to know the processor is healthy: lag, errors, throttles,
on-failure records (per mapping) and deliveries, quarantine.

The first source's mapping keeps the id it had when processors had a single source
(`EventSourceMapping<Processor>`, construct `EventSourceMapping`); every further one is named
after its stream (`EventSourceMapping<Processor><Stream>`), so adding a source never replaces,
and never resets the read position of, an existing mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from cascata.cdk.bindings import BoundResource, on_failure_destination
from cascata.cdk.config import AlarmThresholds
from cascata.cdk.function import AlarmSpec, FunctionRuntime, PipelineFunction, VpcPlacement
from cascata.cdk.naming import pascal, pin, stable_id
from cascata.cdk.sources import StreamSource
from cascata.pipeline import EventSource, Processor

QUARANTINE_NAMESPACE = "Cascata"
QUARANTINE_METRIC = "Quarantined"
"""Emitted by the functions through Powertools Metrics, with dimension `service`."""

MAPPED_NOT_ASYNC = (
    "Invoked only by its event source mappings, synchronously: a function-level dead-letter "
    "queue applies to asynchronous invocations and would never receive anything. Records the "
    "function gives up on go to each mapping's on-failure destination (DestinationConfig), "
    "with their position in the stream."
)
BOUNDED_BY_MAPPINGS = (
    "Its concurrency is bounded by its event source mappings: Lambda runs at most one batch "
    "per shard times the parallelization factor (Kinesis), or one per provisioned poller "
    "(MSK), at a time. A lower reservation would only throttle the mappings and grow their "
    "lag; the processors that protect a downstream (notify) declare one."
)

__all__ = [
    "QUARANTINE_METRIC",
    "QUARANTINE_NAMESPACE",
    "AttachedSource",
    "StreamProcessor",
    "VpcPlacement",
]


@dataclass(frozen=True, slots=True)
class AttachedSource:
    """One declared source, the broker that carries its stream, and its on-failure resource."""

    settings: EventSource
    source: StreamSource
    on_failure: BoundResource
    consumer_group: str
    """Kafka consumer group of this mapping (unique per mapping); Kinesis ignores it."""


@dataclass(frozen=True, slots=True)
class ProcessorMapping:
    """A rendered event source mapping and the declared source it reads."""

    settings: EventSource
    mapping: lambda_.EventSourceMapping
    suffix: str
    """'' for the first source, the PascalCase stream name for the others (construct ids)."""


class StreamProcessor(PipelineFunction):
    """A declared processor: function, role, log group, event source mappings, alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        processor: Processor,
        function_name: str,
        environment: Mapping[str, str],
        sources: Sequence[AttachedSource],
        bindings: Mapping[str, BoundResource],
        runtime: FunctionRuntime,
        thresholds: AlarmThresholds,
        lag_threshold: int,
        placement: VpcPlacement | None = None,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            declared=processor,
            function_name=function_name,
            environment=environment,
            bindings=bindings,
            runtime=runtime,
            placement=placement,
            reserved_concurrency=reserved_concurrency,
        )
        if [s.settings for s in sources] != list(processor.sources):
            raise ValueError(f"{processor.name}: sources must be attached in declared order")
        self.processor = processor
        # Kept under their historical names: the dashboard and callers read these.
        self.processor_function = self.pipeline_function
        self.processor_role = self.function_role
        self.processor_log_group = self.function_log_group

        self.processor_mappings: list[ProcessorMapping] = []
        for position, attached in enumerate(sources):
            suffix = "" if position == 0 else pascal(attached.settings.stream)
            destination = on_failure_destination(
                attached.on_failure, grantee=self.processor_function, scope=self
            )
            self.note_granted(attached.on_failure)
            mapping = attached.source.attach(
                self,
                construct_id=f"EventSourceMapping{suffix}",
                function=self.processor_function,
                settings=attached.settings,
                on_failure=destination,
                consumer_group=attached.consumer_group,
            )
            pin(mapping, stable_id("EventSourceMapping", processor.name) + suffix)
            self.processor_mappings.append(
                ProcessorMapping(settings=attached.settings, mapping=mapping, suffix=suffix)
            )
        # The first mapping under its historical attribute name.
        self.processor_mapping = self.processor_mappings[0].mapping
        self.acknowledge_checks({"CKV_AWS_116": MAPPED_NOT_ASYNC})
        if self.reserved_concurrency is None:
            self.acknowledge_checks({"CKV_AWS_115": BOUNDED_BY_MAPPINGS})

        self.acknowledge_policy_findings()
        self.processor_alarms = self._alarms(
            source=sources[0].source, thresholds=thresholds, lag_threshold=lag_threshold
        )

    def _alarms(
        self,
        *,
        source: StreamSource,
        thresholds: AlarmThresholds,
        lag_threshold: int,
    ) -> dict[str, cloudwatch.Alarm]:
        fn = self.processor_function
        period = Duration.minutes(thresholds.period_minutes)
        name = self.processor.name
        # Lambda publishes the lag (IteratorAge, OffsetLag) per function: the oldest record
        # across all of its mappings, so one alarm covers every source.
        specs = [
            AlarmSpec(
                "LagAlarm",
                source.lag_metric(fn, period=period),
                lag_threshold,
                f"{name} is falling behind its source ({source.lag_unit}); records near the "
                "maximum record age will go to the on-failure destination",
                periods=3,
            ),
            *self.function_alarms(
                errors=thresholds.errors,
                throttles=thresholds.throttles,
                period=period,
                throttled_means="the mapping falls behind",
            ),
        ]
        # Records given up on are counted per mapping (ESM EventCount metrics): one per source.
        for rendered in self.processor_mappings:
            stream = rendered.settings.stream
            specs.append(
                AlarmSpec(
                    f"OnFailureRecordsAlarm{rendered.suffix}",
                    cloudwatch.Metric(
                        namespace="AWS/Lambda",
                        metric_name="OnFailureDestinationDeliveredEventCount",
                        dimensions_map={
                            "EventSourceMappingUUID": rendered.mapping.event_source_mapping_id
                        },
                        statistic="Sum",
                        period=period,
                    ),
                    0,
                    f"{name} gave up on records"
                    + (f" of {stream}" if rendered.suffix else "")
                    + " and parked them in its on-failure destination; inspect and replay them",
                )
            )
        specs += [
            AlarmSpec(
                "OnFailureDeliveryAlarm",
                fn.metric("DestinationDeliveryFailures", statistic="Sum", period=period),
                0,
                f"{name} could not write failed records to its on-failure destination: "
                "those records are lost unless replayed from the stream",
            ),
            AlarmSpec(
                "QuarantineAlarm",
                cloudwatch.Metric(
                    namespace=QUARANTINE_NAMESPACE,
                    metric_name=QUARANTINE_METRIC,
                    dimensions_map={"service": name},
                    statistic="Sum",
                    period=period,
                ),
                thresholds.quarantined,
                f"{name} is quarantining more invalid events than usual",
            ),
        ]
        return self.create_alarms(specs)
