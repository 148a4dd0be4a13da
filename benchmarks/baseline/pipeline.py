"""The baseline's dataflow, declared with cascata's own declaration types so the bench can
provision, run and meter it exactly as it does cascata's pipeline.

Same topology and the same batch sizes as the declared pipeline (read from
`cascata.pipeline.PIPELINE` by processor and stream name, so they follow it), same input
streams and views; what differs is how each function does its work (see `app`). Tables carry
the indexes the documented design needs to serve the same queries: alerts by day, open windows
by close time. The idempotency table is Powertools' (`id` key, `expiration` TTL).
"""

from __future__ import annotations

from cascata.pipeline import (
    Binding,
    Bucket,
    EventSource,
    Index,
    Pipeline,
    Processor,
    ScheduledFunction,
    Stream,
    Table,
    Topic,
)
from payments.pipeline import PIPELINE

APP = "cascata-baseline"
DEFAULT_BATCH = 100


def batch_size(processor: str, stream: str, declared: Pipeline = PIPELINE) -> int:
    """The batch size cascata declares for the same processor and stream (both sides batch
    alike); Lambda's default when cascata has no such source."""
    for proc in declared.processors:
        if proc.name == processor:
            for src in proc.sources:
                if src.stream == stream:
                    return src.batch_size
    return DEFAULT_BATCH


def _source(processor: str, stream: str) -> EventSource:
    return EventSource(stream=stream, batch_size=batch_size(processor, stream))


def _common() -> tuple[Binding, ...]:
    return (Binding(env="IDEMPOTENCY_TABLE", resource="idempotency", access="read_write"),
            Binding(env="QUARANTINE_BUCKET", resource="quarantine", access="write"))


def _processor(name: str, sources: tuple[str, ...], *bindings: Binding) -> Processor:
    return Processor(
        name=name, handler=f"benchmarks.baseline.{name.replace('-', '_')}.handler",
        description=f"baseline {name}", sources=tuple(_source(name, s) for s in sources),
        bindings=(*bindings, *_common()),
    )


def _rw(env: str, resource: str) -> Binding:
    return Binding(env=env, resource=resource, access="read_write")


BASELINE_PIPELINE = Pipeline(
    app=APP,
    streams=(
        Stream(name="payments-raw", partition_key="payer", description="raw", origin=True),
        Stream(name="customers", partition_key="customer_id", description="crm", origin=True),
        Stream(name="payments-validated", partition_key="payer", description="validated"),
        Stream(name="ledger-entries", partition_key="account", description="postings"),
        Stream(name="activity", partition_key="account", description="closed windows"),
    ),
    tables=(
        Table(name="balances", description="balances", partition_key="account_id"),
        Table(name="profiles", description="profiles", partition_key="customer_id"),
        Table(name="alerts-view", description="alerts", partition_key="account_id",
              sort_key="alert_key",
              indexes=(Index(name="by-day", partition_key="day", sort_key="alert_key"),)),
        Table(name="fraud-state", description="rule state", partition_key="payer",
              role="state"),
        Table(name="activity-view", description="windows", partition_key="account_id",
              sort_key="window_key",
              indexes=(Index(name="open-by-close", partition_key="status",
                             sort_key="closes_at", projection="KEYS_ONLY"),)),
        Table(name="idempotency", description="Powertools idempotency records",
              partition_key="id", ttl_attribute="expiration", role="state"),
    ),
    buckets=(Bucket(name="quarantine", description="invalid events"),
             Bucket(name="failures", description="on-failure records")),
    queues=(),
    topics=(Topic(name="notifications", description="fraud alerts"),),
    processors=(
        _processor("validate", ("payments-raw",),
                   Binding(env="VALIDATED_STREAM", resource="payments-validated",
                           access="write")),
        _processor("postings", ("payments-validated",),
                   Binding(env="LEDGER_STREAM", resource="ledger-entries", access="write")),
        _processor("balances", ("ledger-entries",), _rw("BALANCES_TABLE", "balances")),
        _processor("fraud-detect", ("payments-validated",),
                   _rw("FRAUD_STATE_TABLE", "fraud-state"), _rw("ALERTS_TABLE", "alerts-view"),
                   Binding(env="PROFILES_TABLE", resource="profiles", access="read"),
                   Binding(env="NOTIFICATIONS_TOPIC", resource="notifications",
                           access="write")),
        _processor("windows", ("payments-validated",), _rw("ACTIVITY_TABLE", "activity-view")),
        _processor("profiles", ("customers", "payments-validated"),
                   _rw("PROFILES_TABLE", "profiles")),
    ),
    scheduled=(
        ScheduledFunction(
            name="windows-close", handler="benchmarks.baseline.windows_close.handler",
            description="baseline close of due windows", every_s=60,
            bindings=(_rw("ACTIVITY_TABLE", "activity-view"),
                      Binding(env="ACTIVITY_STREAM", resource="activity", access="write")),
        ),
    ),
)
