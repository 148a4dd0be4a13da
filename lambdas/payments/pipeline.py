"""The payments pipeline, declared once as plain data: the application's single source of truth.

Raw payments are validated, turned into double-entry postings and materialized as balances;
fraud rules raise alerts that are notified once; event-time windows aggregate activity per
account; customer events and payments join into one profile; the query API serves the views
and the ingest API takes events over HTTP. The project's `[tool.cascata] pipeline` setting
names `PIPELINE`; nothing on Lambda imports this module (the asset leaves it out).
"""

from __future__ import annotations

from cascata.pipeline import (
    DEDUPE_TABLE_ENV,
    ApiFunction,
    Archive,
    Binding,
    Bucket,
    EventSource,
    Index,
    Pipeline,
    Processor,
    Route,
    ScheduledFunction,
    Stream,
    Table,
    Topic,
    Tunables,
)

APP_NAME = "cascata"
"""The prefix of every physical name (`cascata-<stage>-<resource>`)."""


def _quarantine() -> Binding:
    return Binding(env="QUARANTINE_BUCKET", resource="quarantine", access="write")


def _dedupe() -> Binding:
    return Binding(env=DEDUPE_TABLE_ENV, resource="dedupe", access="read_write")


def _reads(env: str, resource: str) -> Binding:
    return Binding(env=env, resource=resource, access="read")


PIPELINE = Pipeline(
    app=APP_NAME,
    streams=(
        Stream(
            name="payments-raw",
            partition_key="payer",
            description="Payments as producers send them, unvalidated.",
            origin=True,
        ),
        Stream(
            name="payments-validated",
            partition_key="payer",
            description="Payments that passed schema and business checks, normalised.",
        ),
        Stream(
            name="ledger-entries",
            partition_key="account",
            description="Double-entry postings, one debit and one credit per payment, "
            "re-keyed by account.",
        ),
        Stream(
            name="customers",
            partition_key="customer_id",
            description="customer.registered and customer.updated events from the CRM.",
            origin=True,
            # About one customer event per hundred payments, for `cascata plan`.
            share_of_rate=0.01,
        ),
        Stream(
            name="alerts",
            partition_key="account",
            description="fraud.alert events raised by fraud-detect.",
        ),
        Stream(
            name="activity",
            partition_key="account",
            description="Final results of event-time windows per account (window.closed).",
        ),
        Stream(
            name="activity-late",
            partition_key="account",
            description="Side output: payments that arrived after their windows closed, "
            "with the reason.",
        ),
    ),
    tables=(
        Table(
            name="balances",
            description="Balance per account and currency, materialized from ledger-entries.",
            partition_key="account_id",
            bookkeeping=("fences", "version"),
        ),
        Table(
            name="profiles",
            description="Unified customer profile: registration data and payment activity.",
            partition_key="customer_id",
            bookkeeping=("fences", "version", "field_times"),
        ),
        Table(
            name="alerts-view",
            description="Fraud alerts per account, newest first; by day for time queries.",
            partition_key="account_id",
            sort_key="alert_key",
            indexes=(Index(name="by-day", partition_key="day", sort_key="alert_key"),),
            # Notification receipts belong to the version that notified (replays never do).
            bookkeeping=("notified_at", "notification_id"),
        ),
        Table(
            name="fraud-state",
            description="fraud-detect's rule state per payer: recent payments and payees.",
            partition_key="payer",
            ttl_attribute="expires_at",
            role="state",
        ),
        Table(
            name="activity-view",
            description="Event-time window aggregates per account, one item per 5-minute "
            "pane (a window is the merge of its panes); final once the watermark in the "
            "#shards items passes its closes_at.",
            partition_key="account_id",
            sort_key="window_key",
            # Panes expire 7 days after their last window closed (payments.domain.windows).
            ttl_attribute="expires_at",
            bookkeeping=("fences", "version", "expires_at"),
            # Shard watermarks, the close cursor and the due lists.
            internal_partitions=("#shards",),
        ),
        Table(
            name="dedupe",
            description="The duplicate gate of the origin streams: one marker per event id, "
            "holding its first arrival's position, expiring after the dedupe horizon.",
            partition_key="id",
            ttl_attribute="expires_at",
            role="state",
        ),
        Table(
            name="versions",
            description="The version registry: each version of the views (how it was built, "
            "its replay checkpoint) and the live pointer readers follow.",
            partition_key="version",
            role="control",
        ),
    ),
    buckets=(
        Bucket(
            name="archive",
            description="Every raw event for good (history beyond stream retention), "
            "partitioned by event date and hour: the source of replays and of the audit.",
        ),
        Bucket(
            name="quarantine",
            description="Invalid events: the original record, the reason, the source position.",
        ),
        Bucket(
            name="failures",
            description="On-failure records of event source mappings, with the failed payload.",
        ),
    ),
    queues=(),
    topics=(
        Topic(
            name="notifications",
            description="One message per fraud alert, for people and paging systems.",
        ),
    ),
    processors=(
        Processor(
            name="validate",
            handler="payments.handlers.validate.handler",
            cost_model="payments.tooling.cost_models:validate",
            description="Schema and business checks; valid payments on, invalid to quarantine.",
            sources=(EventSource(stream="payments-raw", batch_size=200),),
            bindings=(
                Binding(env="VALIDATED_STREAM", resource="payments-validated", access="write"),
                _dedupe(),
                _quarantine(),
            ),
        ),
        Processor(
            name="postings",
            handler="payments.handlers.postings.handler",
            cost_model="payments.tooling.cost_models:postings",
            description="Double entry: a debit for the payer and a credit for the payee, "
            "re-keyed by account.",
            sources=(EventSource(stream="payments-validated", batch_size=200),),
            bindings=(
                Binding(env="LEDGER_STREAM", resource="ledger-entries", access="write"),
                _quarantine(),
            ),
        ),
        Processor(
            name="balances",
            handler="payments.handlers.balances.handler",
            cost_model="payments.tooling.cost_models:balances",
            description="Materializes the balance of every account, effectively once.",
            sources=(
                EventSource(
                    stream="ledger-entries", batch_size=500, batching_window_s=1,
                    parallelization_factor=2,
                ),
            ),
            bindings=(
                Binding(env="BALANCES_TABLE", resource="balances", access="read_write"),
                _quarantine(),
            ),
        ),
        Processor(
            name="fraud-detect",
            handler="payments.handlers.fraud_detect.handler",
            cost_model="payments.tooling.cost_models:fraud_detect",
            description="Rules over validated payments (tier limit, velocity, new payee); "
            "raises fraud.alert events and keeps the alerts view.",
            sources=(EventSource(stream="payments-validated", batch_size=200),),
            # A version may change the rules: `replay --set fraud-detect.<rule>=<value>`.
            tunables=Tunables(variable="FRAUD_RULES",
                              check="payments.domain.fraud:check_overrides"),
            bindings=(
                Binding(env="ALERTS_STREAM", resource="alerts", access="write"),
                Binding(env="ALERTS_TABLE", resource="alerts-view", access="read_write"),
                Binding(env="FRAUD_STATE_TABLE", resource="fraud-state", access="read_write"),
                _reads("PROFILES_TABLE", "profiles"),
                _quarantine(),
            ),
        ),
        Processor(
            name="windows",
            handler="payments.handlers.windows.handler",
            cost_model="payments.tooling.cost_models:windows",
            description="Event-time tumbling and hopping windows per account with allowed "
            "lateness; late payments to a side output.",
            sources=(EventSource(stream="payments-validated", batch_size=500,
                                 batching_window_s=1),),
            bindings=(
                Binding(env="ACTIVITY_TABLE", resource="activity-view", access="read_write"),
                Binding(env="ACTIVITY_STREAM", resource="activity", access="write"),
                Binding(env="LATE_STREAM", resource="activity-late", access="write"),
                _quarantine(),
            ),
        ),
        Processor(
            name="profiles",
            handler="payments.handlers.profiles.handler",
            cost_model="payments.tooling.cost_models:profiles",
            description="Unified customer profile from customer events and payment activity, "
            "whichever arrives first.",
            sources=(
                EventSource(stream="customers", batch_size=100),
                EventSource(stream="payments-validated", batch_size=500, batching_window_s=1),
            ),
            bindings=(
                Binding(env="PROFILES_TABLE", resource="profiles", access="read_write"),
                _dedupe(),
                _quarantine(),
            ),
        ),
        Processor(
            name="notify",
            handler="payments.handlers.notify.handler",
            cost_model="payments.tooling.cost_models:notify",
            description="Publishes each fraud alert to the notifications topic, once.",
            sources=(EventSource(stream="alerts", batch_size=50),),
            bindings=(
                Binding(env="NOTIFICATIONS_TOPIC", resource="notifications", access="write"),
                Binding(env="ALERTS_TABLE", resource="alerts-view", access="read_write"),
                _quarantine(),
            ),
            reserved_concurrency=5,
            replayable=False,
        ),
    ),
    scheduled=(
        ScheduledFunction(
            name="windows-close",
            handler="payments.handlers.windows_close.handler",
            description="Closes windows past their end plus allowed lateness, also for keys "
            "that went quiet, and emits their final results.",
            every_s=60,
            bindings=(
                Binding(env="ACTIVITY_TABLE", resource="activity-view", access="read_write"),
                Binding(env="ACTIVITY_STREAM", resource="activity", access="write"),
                # Read only to check that an idle shard is at its tip (payments.handlers.
                # windows_close) before its raised watermark closes windows.
                Binding(env="VALIDATED_STREAM", resource="payments-validated", access="read"),
            ),
        ),
    ),
    apis=(
        ApiFunction(
            name="query",
            handler="payments.handlers.query.handler",
            description="The serving layer: balances, profiles, windows and alerts over HTTP.",
            routes=(
                Route("GET", "/accounts/{id}"),
                Route("GET", "/accounts/{id}/alerts"),
                Route("GET", "/alerts"),
            ),
            bindings=(
                _reads("BALANCES_TABLE", "balances"),
                _reads("PROFILES_TABLE", "profiles"),
                _reads("ACTIVITY_TABLE", "activity-view"),
                _reads("ALERTS_TABLE", "alerts-view"),
                _reads("VERSIONS_TABLE", "versions"),
            ),
        ),
        ApiFunction(
            name="ingest",
            handler="payments.handlers.ingest.handler",
            description="POST /events: up to 500 envelopes per request, validated for shape, "
            "written to the raw stream with per-event status.",
            routes=(Route("POST", "/events"),),
            bindings=(Binding(env="RAW_STREAM", resource="payments-raw", access="write"),),
            throttle_rps=50,
            throttle_burst=100,
        ),
    ),
    archives=(
        Archive(stream="payments-raw", bucket="archive"),
        Archive(stream="customers", bucket="archive"),
    ),
)
