"""The gate of an origin stream: event-time bounds and exact duplicate suppression.

Producers retry, and a retry is the same event (same `event_id`) at a new position. Every
processor reading an origin stream passes its batch through this gate before its core sees it:

- **Event time is bounded where it enters.** An event dated more than the stream's declared
  `max_future_skew_s` after its arrival, or before its declared earliest time, is quarantined
  with the reason; one event dated 2099 can therefore never drag a watermark, a window or a
  velocity rule into the future.
- **A duplicate is suppressed exactly within the stream's dedupe horizon** (arrival time,
  default one hour), however many events its key saw in between. Each event id claims one
  marker item, `<stream>#<event_id>`, holding the position of its first arrival and `until`,
  that arrival plus the horizon (DynamoDB's TTL deletes it some time after). The claim is one
  conditional put: it succeeds for the first arrival, for a redelivery of that same record (same
  position: the processor crashed or failed after claiming), and once `until` has passed by the
  arriving record's own arrival time (deterministic under replay, and independent of when TTL
  actually deletes, which the adapter keeps at least a horizon of wall-clock time away);
  it fails for a copy at another position. Copies inside one batch are resolved first, the
  lowest position winning, so live and replay keep the same one. A position is a record's
  shard and sequence number, and for a user record of a KPL aggregate its index in the
  aggregate (`marker_position`): a copy inside one aggregate, or a producer's retry of the
  whole aggregate, is a copy at another position, and a redelivered aggregate claims again
  exactly the markers it held.

Arrival time is the origin stream's: on a version's replay stream refilled from the archive
(policy `replayed`), the original arrival time each record carries (`cascata_runtime.records`),
not the time it was republished, so bounds and the horizon are judged as they were live.

This is Flink's deduplication with state TTL, keyed by event id: one small write per origin
event, paid once for the pipeline, not per view; everything downstream is exact through the
lineage fences (`cascata_runtime.lineage`), which cost no extra write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from cascata_runtime.envelope import (
    Envelope,
    Rejection,
    SourcePosition,
    format_time,
    parse_time,
)

DEFAULT_HORIZON_S = 3600
DEFAULT_FUTURE_SKEW_S = 300
DEFAULT_EARLIEST = "2000-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    dedupe_horizon_s: int = DEFAULT_HORIZON_S
    max_future_skew_s: int = DEFAULT_FUTURE_SKEW_S
    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    replayed: bool = False
    """A version's replay stream, refilled from the archive: its records are replay wrappers
    carrying the producer's bytes and their original arrival time, which is believed here and
    nowhere else (`cascata_runtime.records.replayed_input`)."""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "dedupe_horizon_s": self.dedupe_horizon_s,
            "max_future_skew_s": self.max_future_skew_s,
            "earliest": format_time(self.earliest),
        }
        if self.replayed:
            out["replayed"] = True
        return out


def parse_origins(text: str) -> dict[str, OriginPolicy]:
    """`{"<physical stream>": {"dedupe_horizon_s": ..., ...}}` from the environment."""
    if not text:
        return {}
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("the origin streams setting is not a JSON object")
    out = {}
    for stream, spec in raw.items():
        if not isinstance(spec, dict):
            raise ValueError(f"origin stream {stream!r}: its policy is not an object")
        earliest = parse_time(spec.get("earliest", DEFAULT_EARLIEST), "earliest")
        if isinstance(earliest, Rejection):
            raise ValueError(f"origin stream {stream!r}: {earliest.reason}")
        replayed = spec.get("replayed", False)
        if not isinstance(replayed, bool):
            raise ValueError(f"origin stream {stream!r}: replayed must be true or false")
        out[str(stream)] = OriginPolicy(
            dedupe_horizon_s=int(spec.get("dedupe_horizon_s", DEFAULT_HORIZON_S)),
            max_future_skew_s=int(spec.get("max_future_skew_s", DEFAULT_FUTURE_SKEW_S)),
            earliest=earliest,
            replayed=replayed,
        )
    return out


def marker_position(position: SourcePosition) -> str:
    """How a marker names the position that claimed it: `<shard>:<sequence>`, and
    `:<subsequence>` after it for a user record of a KPL aggregate."""
    text = f"{position.shard}:{position.sequence}"
    return text if position.subsequence is None else f"{text}:{position.subsequence}"


class Markers(Protocol):
    def claim(self, marker: str, position: str, expires_at: int, now: int) -> bool:
        """Claim `marker` for `position` until `expires_at` (epoch seconds). True when it is
        this position's (new, the same position again, or expired at `now`); False when
        another position holds it."""
        ...


@dataclass(slots=True)
class Gated:
    events: list[Envelope | Rejection | None]
    """The batch with every suppressed copy as None and out-of-bounds events as rejections."""
    duplicates: int = 0
    failed: dict[int, str] = field(default_factory=dict)


def bounds_problem(envelope: Envelope, arrival_s: float, policy: OriginPolicy) -> Rejection | None:
    occurred = envelope.occurred_at
    if occurred < policy.earliest:
        return Rejection(
            "occurred_at", "event_time_too_early",
            f"occurred_at {format_time(occurred)} is before this stream's earliest event time "
            f"{format_time(policy.earliest)}",
        )
    if arrival_s > 0:
        skew = occurred.timestamp() - arrival_s
        if skew > policy.max_future_skew_s:
            return Rejection(
                "occurred_at", "event_time_in_future",
                f"occurred_at {format_time(occurred)} is {int(skew)} s after the event arrived; "
                f"at most {policy.max_future_skew_s} s is allowed",
            )
    return None


def gate(
    events: Sequence[Envelope | Rejection],
    *,
    streams: Sequence[str],
    positions: Sequence[str],
    arrivals: Sequence[float],
    policies: Mapping[str, OriginPolicy],
    markers: Markers | None,
    writers: int = 8,
) -> Gated:
    """Apply the origin gate to the records of origin streams; others pass unchanged.
    `events` are in position order (a shard's records by sequence number, an aggregate's user
    records by subsequence), so the first copy of an event in a batch is its lowest."""
    out: list[Envelope | Rejection | None] = list(events)
    first: dict[tuple[str, str], int] = {}
    claims: list[int] = []
    duplicates = 0
    for index, event in enumerate(events):
        policy = policies.get(streams[index])
        if policy is None or not isinstance(event, Envelope):
            continue
        problem = bounds_problem(event, arrivals[index], policy)
        if problem is not None:
            out[index] = problem
            continue
        ident = (streams[index], event.event_id)
        if ident in first:
            out[index] = None
            duplicates += 1
            continue
        first[ident] = index
        claims.append(index)
    failed: dict[int, str] = {}
    if markers is not None and claims:

        def claim(index: int) -> bool | str:
            event = events[index]
            assert isinstance(event, Envelope)
            stream = streams[index]
            policy = policies[stream]
            now = int(arrivals[index])
            try:
                return markers.claim(f"{stream}#{event.event_id}", positions[index],
                                     now + policy.dedupe_horizon_s, now)
            except Exception as exc:  # noqa: BLE001 - the record is retried
                return f"duplicate marker not written: {exc}"

        with ThreadPoolExecutor(max_workers=max(1, min(writers, len(claims)))) as pool:
            for index, result in zip(claims, pool.map(claim, claims), strict=True):
                if result is True:
                    continue
                if result is False:
                    out[index] = None
                    duplicates += 1
                else:
                    failed[index] = str(result)
    return Gated(out, duplicates, failed)
