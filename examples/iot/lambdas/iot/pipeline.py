"""The IoT telemetry pipeline, declared once as plain data.

    readings-raw --validate--> readings --aggregates--> device-stats   (1-minute tumbling)
                                                    --> alerts --alerting--> device-alerts
    GET /devices/{id}, GET /devices/{id}/stats  <-- query

Sensors send `sensor.reading` events; `validate` checks them (known metric, its unit, a finite
value within the sensor's physical range) and quarantines the rest with the reason;
`aggregates` keeps count, min, max and sum per device, metric and minute of event time, and
raises `threshold.exceeded` once for a minute whose maximum goes above its metric's limit;
`alerting` keeps each device's alerts for the query API.
"""

from __future__ import annotations

from cascata.pipeline import (
    DEDUPE_TABLE_ENV,
    ApiFunction,
    Binding,
    Bucket,
    EventSource,
    Pipeline,
    Processor,
    Route,
    Stream,
    Table,
)


def _quarantine() -> Binding:
    return Binding(env="QUARANTINE_BUCKET", resource="quarantine", access="write")


PIPELINE = Pipeline(
    app="iot",
    streams=(
        Stream(name="readings-raw", partition_key="device_id", origin=True,
               description="sensor.reading events as devices send them, unvalidated."),
        Stream(name="readings", partition_key="device_id",
               description="Readings that passed validation, values normalised."),
        Stream(name="alerts", partition_key="device_id",
               description="threshold.exceeded events, one per device, metric and minute."),
    ),
    tables=(
        Table(name="device-stats", partition_key="device_id", sort_key="window",
              description="Per device, metric and minute of event time: count, min, max, sum.",
              bookkeeping=("fences", "version")),
        Table(name="device-alerts", partition_key="device_id",
              description="Per device: minutes above the limit per metric, recent alerts.",
              bookkeeping=("fences", "version")),
        Table(name="dedupe", partition_key="id", ttl_attribute="expires_at", role="state",
              description="The duplicate gate of readings-raw: one marker per event id."),
        Table(name="versions", partition_key="version", role="control",
              description="The version registry: versions of the views rebuilt by replay, "
              "and the live pointer the query API follows."),
    ),
    buckets=(
        Bucket(name="quarantine", description="Invalid readings with the reason."),
        Bucket(name="failures", description="On-failure records of the event source mappings."),
    ),
    queues=(),
    topics=(),
    processors=(
        Processor(
            name="validate",
            handler="iot.handlers.validate.handler",
            description="Checks readings; valid ones on, invalid ones to the quarantine.",
            sources=(EventSource(stream="readings-raw", batch_size=500),),
            bindings=(
                Binding(env="READINGS_STREAM", resource="readings", access="write"),
                Binding(env=DEDUPE_TABLE_ENV, resource="dedupe", access="read_write"),
                _quarantine(),
            ),
        ),
        Processor(
            name="aggregates",
            handler="iot.handlers.aggregates.handler",
            description="1-minute tumbling aggregates per device and metric, effectively once; "
            "an alert for a minute whose maximum exceeds the limit.",
            sources=(EventSource(stream="readings", batch_size=500, batching_window_s=1),),
            bindings=(
                Binding(env="DEVICE_STATS_TABLE", resource="device-stats", access="read_write"),
                Binding(env="ALERTS_STREAM", resource="alerts", access="write"),
                _quarantine(),
            ),
        ),
        Processor(
            name="alerting",
            handler="iot.handlers.alerting.handler",
            description="Keeps each device's threshold alerts for the query API.",
            sources=(EventSource(stream="alerts", batch_size=100),),
            bindings=(
                Binding(env="DEVICE_ALERTS_TABLE", resource="device-alerts",
                        access="read_write"),
                _quarantine(),
            ),
        ),
    ),
    apis=(
        ApiFunction(
            name="query",
            handler="iot.handlers.query.handler",
            description="A device's alerts and its recent per-minute statistics over HTTP.",
            routes=(Route("GET", "/devices/{id}"), Route("GET", "/devices/{id}/stats")),
            bindings=(
                Binding(env="DEVICE_STATS_TABLE", resource="device-stats", access="read"),
                Binding(env="DEVICE_ALERTS_TABLE", resource="device-alerts", access="read"),
                Binding(env="VERSIONS_TABLE", resource="versions", access="read"),
            ),
        ),
    ),
)
