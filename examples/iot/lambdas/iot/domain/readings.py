"""Sensor readings: what a valid one is, and its normalised form. Pure: no AWS here.

A reading is a `sensor.reading` event keyed by its device, with `data` = `device_id`,
`metric`, `value` and `unit`. Values are exact decimals (a JSON number or a numeric string),
never binary floats: an aggregate of a thousand readings sums exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from cascata_runtime.effects import Effects, Emission
from cascata_runtime.envelope import Envelope, Rejection

READING = "sensor.reading"
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
MAX_DIGITS = 12


@dataclass(frozen=True, slots=True)
class Metric:
    unit: str
    low: Decimal
    high: Decimal
    """The physical range a working sensor reports; outside it, the reading is refused."""


METRICS: Mapping[str, Metric] = MappingProxyType({
    "temperature": Metric("C", Decimal(-60), Decimal(150)),
    "humidity": Metric("%", Decimal(0), Decimal(100)),
    "pressure": Metric("hPa", Decimal(300), Decimal(1100)),
    "co2": Metric("ppm", Decimal(0), Decimal(10000)),
})


@dataclass(frozen=True, slots=True)
class Reading:
    envelope: Envelope
    device_id: str
    metric: str
    value: Decimal
    unit: str

    def data(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "metric": self.metric,
                "value": str(self.value), "unit": self.unit}


def parse_reading(event: Envelope) -> Reading | Rejection:
    """The reading an event carries, or why it is not a valid one."""
    if event.type != READING:
        return Rejection("type", "unexpected_type", f"expected {READING}, got {event.type}")
    data = event.data
    device = data.get("device_id")
    if not isinstance(device, str) or not _DEVICE.match(device):
        return Rejection("data.device_id", "invalid_device",
                         "device_id must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    if device != event.key:
        return Rejection("key", "key_mismatch", "the event's key must be its device_id")
    metric = data.get("metric")
    spec = METRICS.get(metric) if isinstance(metric, str) else None
    if spec is None or not isinstance(metric, str):
        return Rejection("data.metric", "unknown_metric",
                         f"metric must be one of {', '.join(METRICS)}")
    unit = data.get("unit")
    if unit != spec.unit:
        return Rejection("data.unit", "wrong_unit", f"{metric} is reported in {spec.unit}")
    value = _decimal(data.get("value"))
    if value is None:
        return Rejection("data.value", "invalid_value",
                         f"value must be a finite number of at most {MAX_DIGITS} digits")
    if not spec.low <= value <= spec.high:
        return Rejection("data.value", "out_of_range",
                         f"{metric} must be within {spec.low}..{spec.high} {spec.unit}")
    return Reading(event, device, metric, value, unit)


def _decimal(raw: object) -> Decimal | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or len(value.as_tuple().digits) > MAX_DIGITS:
        return None
    return value.normalize() if value != 0 else Decimal(0)


def validate_batch(events: Sequence[Envelope | Rejection | None], *,
                   output_stream: str) -> Effects:
    """Valid readings on to `output_stream`, normalised; the others quarantined. A record the
    origin gate suppressed (a duplicate) is None and produces nothing."""
    found, rejected = readings_of(events)
    return Effects(emissions=tuple(Emission(output_stream, normalised(r), index)
                                   for index, r in found),
                   quarantined=tuple(rejected))


def normalised(reading: Reading) -> Envelope:
    """The same event (same id: it is the same fact) with canonical data."""
    env = reading.envelope
    return Envelope(event_id=env.event_id, type=env.type, version=env.version,
                    key=reading.device_id, occurred_at=env.occurred_at,
                    data=MappingProxyType(reading.data()), correlation_id=env.correlation_id,
                    causation=env.causation)


def readings_of(events: Sequence[Envelope | Rejection | None]
                ) -> tuple[list[tuple[int, Reading]], list[tuple[int, Rejection]]]:
    """The batch's readings, and everything else with the reason (quarantined): validate
    refuses what is not a valid reading; downstream, a record that is not one is refused
    the same way."""
    found: list[tuple[int, Reading]] = []
    rejected: list[tuple[int, Rejection]] = []
    for index, event in enumerate(events):
        if isinstance(event, Rejection):
            rejected.append((index, event))
        elif isinstance(event, Envelope):
            reading = parse_reading(event)
            if isinstance(reading, Rejection):
                rejected.append((index, reading))
            else:
                found.append((index, reading))
    return found, rejected
