"""A variant of the declared pipeline that uses the declaration features the reference omits.

The reference payments pipeline declares no filters, tumbling windows, TTL, queues or
non-bucket on-failure destinations, and runs its one scheduled function every minute; the
stacks must still render all of that correctly, so the tests also synthesize this variant
(same functions, a few settings changed). `MSK_ENDPOINTS` does the same for what the MSK
variant's network must reach.
"""

from __future__ import annotations

from dataclasses import replace

from cascata.pipeline import Binding, Processor, Queue, Table, Topic
from payments.pipeline import PIPELINE

PAYMENT_FILTER = '{"data": {"type": ["payment.made"], "version": [1]}}'
WINDOWS_CLOSE_EVERY_S = 300


def _vary(processor: Processor) -> Processor:
    if processor.name == "validate":
        (source,) = processor.sources
        return replace(
            processor,
            sources=(replace(source, filters=(PAYMENT_FILTER,), starting_position="LATEST"),),
        )
    if processor.name == "balances":
        (source,) = processor.sources
        return replace(
            processor,
            reserved_concurrency=4,
            sources=(replace(source, tumbling_window_s=60, on_failure="failed-balances"),),
            bindings=(
                *processor.bindings,
                Binding(env="BALANCE_EVENTS_TOPIC", resource="balance-events", access="write"),
                Binding(env="SESSIONS_TABLE", resource="sessions", access="read"),
            ),
        )
    if processor.name == "profiles":
        # Two sources with different settings and destinations: each mapping must get its own.
        first, second = processor.sources
        return replace(
            processor,
            sources=(
                first,
                replace(second, filters=(PAYMENT_FILTER,), on_failure="failed-profiles"),
            ),
        )
    return processor


FEATURES = replace(
    PIPELINE,
    tables=(
        *PIPELINE.tables,
        Table(
            name="sessions",
            description="Composite key and TTL, to exercise both.",
            partition_key="account_id",
            sort_key="window_start",
            ttl_attribute="expires_at",
        ),
    ),
    queues=(
        Queue(name="failed-balances", description="An SQS on-failure destination."),
        Queue(name="failed-profiles", description="Another, for a second source."),
    ),
    topics=(
        *PIPELINE.topics,
        Topic(name="balance-events", description="A topic a processor publishes to."),
    ),
    processors=tuple(_vary(p) for p in PIPELINE.processors),
    scheduled=tuple(replace(s, every_s=WINDOWS_CLOSE_EVERY_S) for s in PIPELINE.scheduled),
)
assert not FEATURES.validate(), FEATURES.validate()


def _needs_endpoints(processor: Processor) -> Processor:
    if processor.name == "fraud-detect":
        # A Kafka client (it produces alerts) that also publishes to SNS from the subnets
        return replace(
            processor,
            bindings=(
                *processor.bindings,
                Binding(env="NOTIFICATIONS_TOPIC", resource="notifications", access="write"),
            ),
        )
    if processor.name == "notify":
        # A Kafka mapping whose on-failure records go to SQS, from the cluster's VPC
        (source,) = processor.sources
        return replace(processor, sources=(replace(source, on_failure="failed-notify"),))
    return processor


MSK_ENDPOINTS = replace(
    PIPELINE,
    queues=(Queue(name="failed-notify", description="An SQS on-failure destination on Kafka."),),
    processors=tuple(_needs_endpoints(p) for p in PIPELINE.processors),
)
"""The reference pipeline with a Kafka client bound to an SNS topic and a Kafka mapping that
parks its failures in SQS: on MSK both need an interface endpoint in the cluster's VPC."""
assert not MSK_ENDPOINTS.validate(), MSK_ENDPOINTS.validate()
