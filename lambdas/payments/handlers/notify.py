"""Lambda handler of `notify`: alerts stream -> one SNS message per fraud alert.

Per batch: one strongly consistent BatchGetItem of the alerts' items in `alerts-view`, then for
each distinct alert without `notified_at`: Publish, then a conditional UpdateItem recording
`notified_at` and the SNS message id (creating the item from the alert if fraud-detect's write
is not there). Why publish-then-record, and the duplicate it can leave behind in a crash
window, is explained in `payments.domain.notify`.

A failed Publish fails only that record (Lambda retries from the lowest failed record; alerts
already recorded are skipped on the retry). A failed recording write after a successful
Publish does not fail the record: the message is out, and failing the record would make the
retry send it a second time for certain; it is logged instead.

The topic's ARN is resolved by `payments.adapters.SnsPublisher` (it says how and why).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from cascata_runtime import adapters
from cascata_runtime.envelope import format_time
from cascata_runtime.handler import BatchFunction, ClientFactory, Handler, lambda_handler, lazy
from cascata_runtime.ports import ObjectStore
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, Effects, apply_effects, parse_records
from payments.adapters import AlertLedger, DynamoAlertLedger, Publisher, SnsPublisher, ViewKey
from payments.domain.notify import Notification, Recorded, plan, to_publish
from payments.settings import NotifySettings

PROCESSOR = "notify"
SETTINGS = NotifySettings


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Dependencies:
    quarantine_bucket: str
    publisher: Publisher
    ledger: AlertLedger
    objects: ObjectStore
    now: Callable[[], datetime] = _utcnow
    senders: int = 8


def dependencies(settings: NotifySettings, client: ClientFactory = adapters.client) -> Dependencies:
    return Dependencies(
        quarantine_bucket=settings.quarantine_bucket,
        publisher=SnsPublisher(client("sns"), client("sts"), settings.notifications_topic),
        ledger=DynamoAlertLedger(client("dynamodb"), settings.alerts_table),
        objects=adapters.S3ObjectStore(client("s3")),
    )


def process(deps: Dependencies) -> BatchFunction:
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=PROCESSOR)
    logger = Logger(service=PROCESSOR, child=True)

    def send(notification: Notification, recorded: Recorded | None) -> str | None:
        try:
            message_id = deps.publisher.publish(notification)
        except Exception as exc:  # noqa: BLE001 - fails this record only; retried
            return f"publish failed: {exc}"
        try:
            first = deps.ledger.mark_notified(
                notification,
                create=recorded is None or not recorded.exists,
                notified_at=format_time(deps.now()),
                message_id=message_id,
            )
            if not first:
                logger.warning("alert published by two invocations at once",
                               extra={"alert_id": notification.alert_id})
        except Exception as exc:  # noqa: BLE001 - the message is out: do not send it again
            logger.error("alert published but not recorded; a redelivery would repeat it",
                         extra={"alert_id": notification.alert_id, "error": str(exc)})
        return None

    def run(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        batch = plan(parse_records(records))
        failed: dict[int, str] = {}
        recorded: Mapping[ViewKey, Recorded] = {}
        pending: list[Notification] = []
        if batch.notifications:
            try:
                recorded = deps.ledger.recorded([n.key for n in batch.notifications])
            except Exception as exc:  # noqa: BLE001 - nothing known to be sent: all retried
                failed = {n.index: f"alerts view read failed: {exc}" for n in batch.notifications}
            else:
                pending, _already = to_publish(batch.notifications, recorded)
        with ThreadPoolExecutor(max_workers=deps.senders) as pool:
            outcomes = list(pool.map(lambda n: send(n, recorded.get(n.key)), pending))
        for notification, problem in zip(pending, outcomes, strict=True):
            if problem:
                failed[notification.index] = problem
        effects = Effects(quarantined=batch.rejected, failed=failed)
        return apply_effects(records, effects, sink=None, quarantine=quarantine)

    return run


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(NotifySettings.from_env())))
