"""Lambda handler of `aggregates`: readings -> device-stats, one item per device, metric and
minute, each reading applied exactly once by cascata's state engine; a minute's alert goes to
the alerts stream before the minute's item is written."""

from __future__ import annotations

from dataclasses import dataclass

from cascata_runtime import adapters
from cascata_runtime.handler import ClientFactory, Handler, keyed_view, lambda_handler, lazy
from cascata_runtime.ports import ObjectStore, Sink
from cascata_runtime.sinks import stream_sink
from cascata_runtime.state import KeyedStore, StateEngine
from iot.domain.aggregates import KEY, SORT_KEY, StatsKey, StatsModel, keyed_readings
from iot.settings import AggregatesSettings

PROCESSOR = "aggregates"
SETTINGS = AggregatesSettings


@dataclass(frozen=True, slots=True)
class Dependencies:
    alerts_stream: str
    quarantine_bucket: str
    items: KeyedStore[StatsKey]
    sink: Sink
    objects: ObjectStore


def dependencies(settings: AggregatesSettings, client: ClientFactory = adapters.client
                 ) -> Dependencies:
    return Dependencies(
        alerts_stream=settings.alerts_stream,
        quarantine_bucket=settings.quarantine_bucket,
        items=adapters.DynamoItemStore(client("dynamodb"), settings.device_stats_table,
                                       key=KEY, sort_key=SORT_KEY),
        # Kinesis PutRecords, or the Kafka producer when the pipeline runs on MSK.
        sink=stream_sink(client),
        objects=adapters.S3ObjectStore(client("s3")),
    )


def make_handler(deps: Dependencies) -> Handler:
    engine = StateEngine(deps.items, StatsModel(deps.alerts_stream), what="device stats")
    return lambda_handler(PROCESSOR, keyed_view(
        PROCESSOR, engine, lambda b: keyed_readings(b.events, b.lineages),
        objects=deps.objects, quarantine_bucket=deps.quarantine_bucket, sink=deps.sink))


handler = lazy(lambda: make_handler(dependencies(AggregatesSettings.from_env())))
