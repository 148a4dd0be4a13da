"""The event envelope every stream carries, parsed at the edge into a frozen value.

An envelope is `event_id`, `type`, `version`, `key`, `occurred_at`, `data`, plus lineage
(`correlation_id`, `causation`). Parsing never raises on bad input: it returns a `Rejection`
naming the field and what was wrong, so the caller can quarantine the record with that reason.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cascata_runtime.policy import parse_json
from cascata_runtime.rejection import Rejection as Rejection  # re-exported: its home for callers

if TYPE_CHECKING:
    from cascata_runtime.lineage import Lineage

_EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_RFC3339_UTC = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|\+00:00)$"
)
_NAMESPACE = uuid.UUID("5f1c8a9e-2b7d-4c3e-9a61-0d4e8b7f3c21")


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a record was read: stream (or topic), shard (or partition) and sequence (offset),
    and for a user record of a KPL aggregate its place in the aggregate (`subsequence`): the
    user records of one aggregate share its sequence number."""

    stream: str
    shard: str
    sequence: str
    subsequence: int | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"stream": self.stream, "shard": self.shard, "sequence": self.sequence}
        if self.subsequence is not None:
            out["subsequence"] = str(self.subsequence)
        return out


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    type: str
    version: int
    key: str
    occurred_at: datetime
    data: Mapping[str, Any]
    correlation_id: str
    causation: SourcePosition | None = None
    lineage: Lineage | None = None
    """Set on derived streams by the processor that emitted the event
    (`cascata_runtime.lineage`); ignored on origin streams."""

    def with_lineage(self, lineage: Lineage | None) -> Envelope:
        return replace(self, lineage=lineage)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "type": self.type,
            "version": self.version,
            "key": self.key,
            "occurred_at": format_time(self.occurred_at),
            "data": _thaw(self.data),
            "correlation_id": self.correlation_id,
        }
        if self.causation is not None:
            out["causation"] = self.causation.as_dict()
        if self.lineage is not None:
            out["lineage"] = self.lineage.as_dict()
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode()


def derive_event_id(cause_event_id: str, role: str) -> str:
    """A deterministic id for an event derived from `cause_event_id` in a given `role`.

    Re-running a processor over the same input yields the same ids, which is what lets every
    downstream view recognise a re-emitted event as one it has already applied.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{cause_event_id}\x1f{role}"))


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, milliseconds only when present."""
    value = value.astimezone(UTC)
    base = seconds_text(value)
    if value.microsecond:
        return f"{base}.{value.microsecond // 1000:03d}Z"
    return base + "Z"


def date_text(value: datetime) -> str:
    """`YYYY-MM-DD` of a UTC instant, the year always four digits."""
    # Not strftime("%Y"): it does not pad years before 1000 on every platform, and a time it
    # writes as "1-01-01" is one parse_time refuses.
    value = value.astimezone(UTC)
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def seconds_text(value: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS` of a UTC instant (no zone, no fraction), fixed width."""
    value = value.astimezone(UTC)
    return f"{date_text(value)}T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"


def parse_time(value: object, field: str) -> datetime | Rejection:
    if not isinstance(value, str):
        return Rejection(field, "invalid_time", f"{field} must be an RFC 3339 UTC string")
    match = _RFC3339_UTC.match(value)
    if not match:
        return Rejection(
            field,
            "invalid_time",
            f"{field} must be RFC 3339 in UTC like 2020-06-25T14:06:00Z, got {value[:40]!r}",
        )
    year, month, day, hour, minute, second, fraction, _ = match.groups()
    micros = int((fraction or ".0")[1:7].ljust(6, "0"))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, UTC
        )
    except ValueError as exc:
        return Rejection(field, "invalid_time", f"{field} is not a real instant: {exc}")


def decode_json(raw: bytes) -> Mapping[str, Any] | Rejection:
    """Bytes from the wire to a JSON object within the input policy
    (`cascata_runtime.policy`), or why not."""
    value = parse_json(raw)
    if isinstance(value, Rejection):
        return value
    if not isinstance(value, dict):
        return Rejection("$", "not_object", f"event must be a JSON object, got {_kind(value)}")
    return value


def parse_envelope(
    obj: Mapping[str, Any], causation: SourcePosition | None = None
) -> Envelope | Rejection:
    """Check the envelope's shape; the `data` is checked later by the schema of its type."""
    event_id = obj.get("event_id")
    if not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
        return Rejection(
            "event_id",
            "invalid_event_id" if "event_id" in obj else "missing",
            "event_id must be 1-128 characters of A-Z a-z 0-9 . _ : - "
            + ("(missing)" if "event_id" not in obj else f"(got {_short(event_id)})"),
        )
    etype = obj.get("type")
    if not isinstance(etype, str) or not _TYPE.match(etype) or len(etype) > 64:
        return Rejection(
            "type",
            "invalid_type" if "type" in obj else "missing",
            f"type must be a dotted lower-case name like payment.made (got {_short(etype)})",
        )
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 1000:
        return Rejection(
            "version",
            "invalid_version" if "version" in obj else "missing",
            f"version must be a positive integer (got {_short(version)})",
        )
    key = obj.get("key")
    if not isinstance(key, str) or not 1 <= len(key) <= 256:
        return Rejection(
            "key",
            "invalid_key" if "key" in obj else "missing",
            f"key must be a string of 1-256 characters (got {_short(key)})",
        )
    if "occurred_at" not in obj:
        return Rejection("occurred_at", "missing", "occurred_at is required")
    occurred = parse_time(obj.get("occurred_at"), "occurred_at")
    if isinstance(occurred, Rejection):
        return occurred
    data = obj.get("data")
    if not isinstance(data, dict):
        return Rejection(
            "data",
            "invalid_data" if "data" in obj else "missing",
            f"data must be a JSON object (got {_kind(data)})",
        )
    correlation = obj.get("correlation_id", event_id)
    if not isinstance(correlation, str) or not _EVENT_ID.match(correlation):
        return Rejection(
            "correlation_id",
            "invalid_correlation_id",
            f"correlation_id must look like an event id (got {_short(correlation)})",
        )
    from cascata_runtime.lineage import parse_lineage

    return Envelope(
        event_id=event_id,
        type=etype,
        version=version,
        key=key,
        occurred_at=occurred,
        data=_freeze(data),
        correlation_id=correlation,
        causation=causation,
        lineage=parse_lineage(obj.get("lineage")),
    )


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _short(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
