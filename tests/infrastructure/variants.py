"""A variant of the declared pipeline that uses every declaration feature.

The reference payments pipeline declares no filters, tumbling windows, reserved concurrency,
sort keys, TTL, queues or topics; the stacks must still render them correctly, so the tests
also synthesize this variant (same processors, a few settings changed).
"""

from __future__ import annotations

from dataclasses import replace

from cascata.pipeline import PIPELINE, Binding, Processor, Queue, Table, Topic

PAYMENT_FILTER = '{"data": {"type": ["payment.made"], "version": [1]}}'


def _vary(processor: Processor) -> Processor:
    if processor.name == "validate":
        return replace(
            processor,
            source=replace(processor.source, filters=(PAYMENT_FILTER,), starting_position="LATEST"),
        )
    if processor.name == "balances":
        return replace(
            processor,
            reserved_concurrency=4,
            source=replace(processor.source, tumbling_window_s=60, on_failure="failed-balances"),
            bindings=(
                *processor.bindings,
                Binding(env="ALERTS_TOPIC", resource="alerts", access="write"),
                Binding(env="SESSIONS_TABLE", resource="sessions", access="read"),
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
    queues=(Queue(name="failed-balances", description="An SQS on-failure destination."),),
    topics=(Topic(name="alerts", description="A topic a processor publishes to."),),
    processors=tuple(_vary(p) for p in PIPELINE.processors),
)
assert not FEATURES.validate(), FEATURES.validate()
