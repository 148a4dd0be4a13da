"""alerts: each device's threshold alerts, as the `device-alerts` view keeps them.

One item per device: how many minutes each metric spent above its limit, and the most recent
of those minutes, newest first. The alerts come from `aggregates` (`threshold.exceeded`, one per
window, its id derived from the window), so whatever order they arrive in, and however often a
retry re-emits one, the view ends the same: an alert already in the item is not counted again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cascata_runtime.effects import Keyed, Outcome
from cascata_runtime.envelope import Envelope, Rejection
from cascata_runtime.lineage import Lineage
from iot.domain.aggregates import EXCEEDED

KEY = "device_id"
RECENT = 20
"""Alerts kept per device in the view (newest window first); the alerts stream has them all."""
SEEN = 500
"""Alert ids remembered per device to recognise a copy (far more than a retry can lag)."""


@dataclass(frozen=True, slots=True)
class DeviceAlerts:
    device_id: str
    minutes_above: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    recent: tuple[Mapping[str, Any], ...] = ()
    seen: tuple[str, ...] = ()

    def to_item(self) -> dict[str, Any]:
        return {"minutes_above": dict(self.minutes_above),
                "recent": [dict(a) for a in self.recent], "seen": list(self.seen)}

    @classmethod
    def from_item(cls, device_id: str, item: Mapping[str, Any] | None) -> DeviceAlerts:
        if not item:
            return cls(device_id)
        return cls(device_id,
                   MappingProxyType({k: int(v) for k, v in item["minutes_above"].items()}),
                   tuple(MappingProxyType(dict(a)) for a in item.get("recent", ())),
                   tuple(item.get("seen", ())))


class AlertsModel:
    """The device-alerts view for the state engine."""

    def load(self, key: str, item: Mapping[str, Any] | None) -> DeviceAlerts:
        return DeviceAlerts.from_item(key, item)

    def dump(self, key: str, state: DeviceAlerts) -> dict[str, Any]:
        return state.to_item()

    def apply(self, key: str, state: DeviceAlerts,
              inputs: Sequence[Keyed[str, Envelope]]) -> Outcome[DeviceAlerts]:
        minutes = dict(state.minutes_above)
        recent = list(state.recent)
        seen = list(state.seen)
        for item in inputs:
            alert = item.value
            if alert.event_id in seen:
                continue
            seen.append(alert.event_id)
            metric = str(alert.data["metric"])
            minutes[metric] = minutes.get(metric, 0) + 1
            recent.append(MappingProxyType({"alert_id": alert.event_id, **alert.data}))
        recent.sort(key=lambda a: (str(a["start"]), str(a["metric"])), reverse=True)
        return Outcome(DeviceAlerts(key, MappingProxyType(minutes), tuple(recent[:RECENT]),
                                    tuple(seen[-SEEN:])))


def keyed_alerts(events: Sequence[Envelope | Rejection | None], lineages: Sequence[Lineage]
                 ) -> tuple[list[Keyed[str, Envelope]], list[tuple[int, Rejection]]]:
    keyed: list[Keyed[str, Envelope]] = []
    rejected: list[tuple[int, Rejection]] = []
    for index, event in enumerate(events):
        if isinstance(event, Rejection):
            rejected.append((index, event))
        elif isinstance(event, Envelope):
            if event.type != EXCEEDED or not isinstance(event.data.get("metric"), str):
                rejected.append((index, Rejection("type", "unexpected_type",
                                                  f"expected {EXCEEDED}, got {event.type}")))
            else:
                keyed.append(Keyed(event.key, event, index, lineages[index]))
    return keyed, rejected
