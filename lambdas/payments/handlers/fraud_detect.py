"""Lambda handler of `fraud-detect`: payments-validated -> fraud alerts, effectively once.

Per batch: the tiers of the payers with a payment above the lowest tier limit (one eventually
consistent BatchGetItem on `profiles`; the others cannot raise `tier_limit`), then the state
engine (`cascata_runtime.state`) over `fraud-state`: one strongly consistent read of every
payer's rule state, the pure evaluation per payer (`payments.domain.fraud`), then the alerts
published (each alert's `alerts-view` item, an UpdateItem that leaves notify's mark alone, then
the `alerts` stream), and only then each changed payer's state, one conditional put on its
version. The state is written last on purpose: a crash or a failure before it leaves the state
as it was, so the retry evaluates the same payments against the same state and raises the same
alerts with the same ids, which the view and notify recognise. A payer whose alerts could not be
published has all its records failed and its state unwritten.

Cost per payer per batch: one strongly consistent read, one write of about 1 KB (more for a
payer with hundreds of known payees), and per alert one view write and one stream record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cascata_runtime import adapters
from cascata_runtime.effects import Effects
from cascata_runtime.handler import BatchFunction, ClientFactory, Handler, lambda_handler, lazy
from cascata_runtime.ports import ObjectStore, Sink
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, apply_effects, read_batch
from cascata_runtime.sinks import stream_sink
from cascata_runtime.state import KeyedStore, StateEngine
from payments.adapters import (
    AlertsView,
    DynamoAlertsView,
    DynamoProfileTiers,
    TierSource,
    alerts_publisher,
)
from payments.domain.fraud import (
    DEFAULT_RULES,
    STATE_KEY,
    FraudModel,
    FraudRules,
    keyed_payments,
    needs_tier,
    rules_from_json,
)
from payments.domain.schemas import PaymentMade
from payments.settings import FraudDetectSettings

PROCESSOR = "fraud-detect"
SETTINGS = FraudDetectSettings


@dataclass(frozen=True, slots=True)
class Dependencies:
    alerts_stream: str
    quarantine_bucket: str
    state: KeyedStore[str]
    tiers: TierSource
    view: AlertsView
    sink: Sink
    objects: ObjectStore
    rules: FraudRules = DEFAULT_RULES
    writers: int = 8


def dependencies(
    settings: FraudDetectSettings, client: ClientFactory = adapters.client
) -> Dependencies:
    dynamodb = client("dynamodb")
    return Dependencies(
        alerts_stream=settings.alerts_stream,
        quarantine_bucket=settings.quarantine_bucket,
        state=adapters.DynamoItemStore(dynamodb, settings.fraud_state_table, key=STATE_KEY),
        tiers=DynamoProfileTiers(dynamodb, settings.profiles_table),
        view=DynamoAlertsView(dynamodb, settings.alerts_table),
        sink=stream_sink(client),
        objects=adapters.S3ObjectStore(client("s3")),
        rules=rules_from_json(settings.fraud_rules),
    )


def process(deps: Dependencies) -> BatchFunction:
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=PROCESSOR)

    def run(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        batch = read_batch(records)
        keyed, rejected = keyed_payments(batch.events, batch.lineages)
        failed: dict[int, str] = {}
        tiers: Mapping[str, str] = {}
        by_payer: dict[str, list[PaymentMade]] = {}
        for item in keyed:
            by_payer.setdefault(item.key, []).append(item.value)
        wanted = [p for p, ps in by_payer.items() if needs_tier(ps, deps.rules)]
        try:
            tiers = deps.tiers.tiers(wanted) if wanted else {}
        except Exception as exc:  # noqa: BLE001 - nothing can be evaluated; all retried
            failed = {x.index: f"profile read failed: {exc}" for x in keyed}
            keyed = []
        now_s = int(max((r.arrival_epoch_s for r in records), default=0))
        model = FraudModel(deps.rules, tiers, deps.alerts_stream, now_s)
        engine = StateEngine(deps.state, model,
                             publish=alerts_publisher(deps.view, deps.sink, batch.stamper,
                                                      writers=deps.writers),
                             writers=deps.writers, what="fraud state")
        result = engine.run(keyed)
        failed.update(result.failed)
        report = apply_effects(
            records, Effects(quarantined=tuple(rejected), failed=failed),
            sink=None, quarantine=quarantine, batch=batch,
        )
        report.emitted.extend(result.emitted)
        report.duplicates += result.duplicates
        return report

    return run


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(FraudDetectSettings.from_env())))
