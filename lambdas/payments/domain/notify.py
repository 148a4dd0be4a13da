"""notify: one SNS message per fraud alert, "once per alert" under redelivery and duplicates.

The pure part: which records of a batch are alerts to notify (the rest is quarantined), the
message each one becomes (a subject, the alert event as the JSON body, message attributes for
subscription filter policies), and which alerts still need a message given what the alerts
view says.

How "once" holds. Every alert has one alerts-view item, keyed by the account and
`<occurred_at>#<alert id>`, so every copy of an alert (a redelivered record, a re-emitted
alert, a duplicate in the same batch) maps to the same item. The handler reads the items of a
batch's alerts (strongly consistent), publishes only those without `notified_at`, then records
`notified_at` and the SNS message id on the item with a conditional update (written only if
still absent). Copies in the same batch are published once.

The residual window, stated plainly: publish-then-record is at-least-once. If the function
dies, or the recording write fails, after SNS accepted the message and before `notified_at` is
stored, a later delivery of that alert publishes it again: one duplicate message. Two copies of
one alert processed at the same moment by two invocations (only possible if copies sit on two
shards, e.g. across a reshard) can also both publish. The alternative, claiming the item
before publishing, turns that window into a lost notification instead, and a fraud alert that
is never sent is the worse failure. A standard SNS topic is itself at-least-once towards its
subscribers, so they must tolerate a duplicate anyway; every message carries the alert id (in
the body and as the `alert_id` message attribute) for them to deduplicate on. A FIFO topic
with `MessageDeduplicationId = alert id` would close the window for five minutes, at the price
of a `.fifo` topic in the declaration and of the subscription protocols FIFO topics do not
support (e-mail, SMS).

An alert whose view item does not exist (notify ran before fraud-detect's write was visible,
or the item was lost) is still published once: the recording write creates the item from the
alert event itself, with the same attributes fraud-detect writes, plus `notified_at`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cascata_runtime.envelope import Envelope, Rejection
from payments.domain.fraud import alert_view_item, view_key
from payments.domain.schemas import FraudAlert, sort_by_type

SUBJECT_MAX = 99
"""SNS subjects must be under 100 characters of printable ASCII."""


@dataclass(frozen=True, slots=True)
class Notification:
    index: int
    """The input record this notification comes from."""
    alert: FraudAlert
    key: tuple[str, str]
    """(account_id, alert_key) of the alert's item in the alerts view."""
    subject: str
    message: str
    attributes: Mapping[str, str]

    @property
    def alert_id(self) -> str:
        return self.alert.envelope.event_id

    def view_item(self) -> dict[str, Any]:
        return alert_view_item(self.alert)


@dataclass(frozen=True, slots=True)
class Plan:
    notifications: tuple[Notification, ...]
    """The first copy of each distinct alert in the batch."""
    repeated: tuple[int, ...]
    """Records carrying an alert already planned earlier in the same batch."""
    rejected: tuple[tuple[int, Rejection], ...]


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the alerts view holds for an alert."""

    exists: bool
    notified: bool


def subject_for(alert: FraudAlert) -> str:
    text = f"Fraud alert: {alert.rule} ({alert.severity}) on account {alert.account}"
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return printable if len(printable) <= SUBJECT_MAX else printable[: SUBJECT_MAX - 3] + "..."


def message_for(alert: FraudAlert) -> str:
    """The body: the alert event, its `causation` being the alerts-stream record it was read
    from (the position notify acted on), everything else as fraud-detect emitted it."""
    return json.dumps(alert.envelope.to_json(), sort_keys=True, separators=(",", ":"))


def attributes_for(alert: FraudAlert) -> dict[str, str]:
    return {
        "alert_id": alert.envelope.event_id,
        "account": alert.account,
        "rule": alert.rule,
        "severity": alert.severity,
    }


def plan(events: Sequence[Envelope | Rejection]) -> Plan:
    alerts, rejected = sort_by_type(events, FraudAlert)
    notifications: list[Notification] = []
    repeated: list[int] = []
    planned: set[str] = set()
    for index, event in alerts:
        assert isinstance(event, FraudAlert)
        if event.envelope.event_id in planned:
            repeated.append(index)
            continue
        planned.add(event.envelope.event_id)
        notifications.append(
            Notification(
                index=index,
                alert=event,
                key=view_key(event),
                subject=subject_for(event),
                message=message_for(event),
                attributes=attributes_for(event),
            )
        )
    return Plan(tuple(notifications), tuple(repeated), tuple(rejected))


def to_publish(
    notifications: Sequence[Notification], recorded: Mapping[tuple[str, str], Recorded]
) -> tuple[list[Notification], list[Notification]]:
    """(still to publish, already notified) according to the alerts view."""
    pending: list[Notification] = []
    done: list[Notification] = []
    for n in notifications:
        state = recorded.get(n.key)
        (done if state is not None and state.notified else pending).append(n)
    return pending, done
