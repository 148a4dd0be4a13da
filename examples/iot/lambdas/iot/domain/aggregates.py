"""aggregates: count, min, max and sum per device, metric and minute of event time, and an
alert when a minute's maximum goes above its metric's limit.

Each (device, `metric#minute`) is one item of `device-stats`, a tumbling window of one minute
that a reading joins by its event time, whenever it arrives. The state engine applies a
batch's readings per item once and its fences turn redeliveries away, so each reading counts
exactly once; sums are exact decimals.

A window's maximum only grows, so whether it ever exceeds the limit does not depend on the
order readings arrive in (producer retries reorder them): `threshold.exceeded` is emitted once
per window, by the reading that first takes the maximum above the limit, with an id derived
from the window alone. The engine emits it before it writes the window, so a crash in between
re-emits the same alert, which the alerts view recognises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from cascata_runtime.effects import Emission, Keyed, Outcome
from cascata_runtime.envelope import Envelope, Rejection, derive_event_id, format_time
from cascata_runtime.lineage import Lineage
from iot.domain.readings import Reading, readings_of

KEY = "device_id"
SORT_KEY = "window"
WINDOW = timedelta(minutes=1)
EXCEEDED = "threshold.exceeded"
LIMITS: Mapping[str, Decimal] = MappingProxyType({
    "temperature": Decimal(40), "humidity": Decimal(90), "co2": Decimal(1500),
})

StatsKey = tuple[str, str]


def window_of(reading: Reading) -> tuple[str, str, str]:
    """(`metric#start`, start, end) of the minute the reading belongs to."""
    at = reading.envelope.occurred_at
    start = at.replace(second=0, microsecond=0)
    first = format_time(start)
    return f"{reading.metric}#{first}", first, format_time(start + WINDOW)


@dataclass(frozen=True, slots=True)
class Stats:
    metric: str
    start: str
    end: str
    count: int = 0
    low: Decimal | None = None
    high: Decimal | None = None
    total: Decimal = Decimal(0)

    def add(self, value: Decimal) -> Stats:
        low = value if self.low is None else min(self.low, value)
        high = value if self.high is None else max(self.high, value)
        return Stats(self.metric, self.start, self.end, self.count + 1, low, high,
                     self.total + value)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"metric": self.metric, "start": self.start, "end": self.end,
                                "count": self.count, "sum": self.total}
        if self.low is not None and self.high is not None:
            item.update(min=self.low, max=self.high)
        return item

    @classmethod
    def from_item(cls, key: StatsKey, item: Mapping[str, Any] | None) -> Stats:
        metric, _, start = key[1].partition("#")
        if not item:
            return cls(metric, start, "")
        return cls(metric, str(item["start"]), str(item["end"]), int(item["count"]),
                   Decimal(item["min"]) if "min" in item else None,
                   Decimal(item["max"]) if "max" in item else None, Decimal(item["sum"]))


class StatsModel:
    """The device-stats view for the state engine; alerts go to `alerts_stream`."""

    def __init__(self, alerts_stream: str, limits: Mapping[str, Decimal] = LIMITS) -> None:
        self._stream = alerts_stream
        self._limits = limits

    def load(self, key: StatsKey, item: Mapping[str, Any] | None) -> Stats:
        return Stats.from_item(key, item)

    def dump(self, key: StatsKey, state: Stats) -> dict[str, Any]:
        return state.to_item()

    def apply(self, key: StatsKey, state: Stats,
              inputs: Sequence[Keyed[StatsKey, Reading]]) -> Outcome[Stats]:
        emissions: list[Emission] = []
        limit = self._limits.get(state.metric)
        for item in inputs:
            _, start, end = window_of(item.value)
            before = state.high
            state = Stats(state.metric, start, end, state.count, state.low, state.high,
                          state.total).add(item.value.value)
            if limit is not None and state.high is not None and state.high > limit and (
                    before is None or before <= limit):
                emissions.append(Emission(self._stream, exceeded(key, state, limit,
                                                                 item.value), item.index))
        return Outcome(state, tuple(emissions))


def exceeded(key: StatsKey, stats: Stats, limit: Decimal, reading: Reading) -> Envelope:
    """The alert of a window whose maximum went above `limit`: its id and data depend on the
    window only (not on which reading got there first)."""
    env = reading.envelope
    alert_id = derive_event_id(f"{key[0]}#{key[1]}", EXCEEDED)
    return Envelope(
        event_id=alert_id,
        type=EXCEEDED,
        version=1,
        key=key[0],
        occurred_at=env.occurred_at.replace(second=0, microsecond=0),
        data=MappingProxyType({"device_id": key[0], "metric": stats.metric,
                               "start": stats.start, "end": stats.end, "limit": str(limit)}),
        correlation_id=alert_id,
    )


def keyed_readings(events: Sequence[Envelope | Rejection | None], lineages: Sequence[Lineage]
                   ) -> tuple[list[Keyed[StatsKey, Reading]], list[tuple[int, Rejection]]]:
    found, rejected = readings_of(events)
    keyed = [Keyed((r.device_id, window_of(r)[0]), r, index, lineages[index])
             for index, r in found]
    return keyed, rejected
