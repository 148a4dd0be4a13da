"""Lambda handler of `alerting`: alerts -> device-alerts, each alert counted once per device."""

from __future__ import annotations

from dataclasses import dataclass

from cascata_runtime import adapters
from cascata_runtime.handler import ClientFactory, Handler, keyed_view, lambda_handler, lazy
from cascata_runtime.ports import ObjectStore
from cascata_runtime.state import KeyedStore, StateEngine
from iot.domain.alerts import KEY, AlertsModel, keyed_alerts
from iot.settings import AlertingSettings

PROCESSOR = "alerting"
SETTINGS = AlertingSettings


@dataclass(frozen=True, slots=True)
class Dependencies:
    quarantine_bucket: str
    items: KeyedStore[str]
    objects: ObjectStore


def dependencies(settings: AlertingSettings, client: ClientFactory = adapters.client
                 ) -> Dependencies:
    return Dependencies(
        quarantine_bucket=settings.quarantine_bucket,
        items=adapters.DynamoItemStore(client("dynamodb"), settings.device_alerts_table,
                                       key=KEY),
        objects=adapters.S3ObjectStore(client("s3")),
    )


def make_handler(deps: Dependencies) -> Handler:
    engine = StateEngine(deps.items, AlertsModel(), what="device alerts")
    return lambda_handler(PROCESSOR, keyed_view(
        PROCESSOR, engine, lambda b: keyed_alerts(b.events, b.lineages),
        objects=deps.objects, quarantine_bucket=deps.quarantine_bucket))


handler = lazy(lambda: make_handler(dependencies(AlertingSettings.from_env())))
