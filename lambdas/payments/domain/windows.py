"""windows: event-time tumbling and hopping windows per account, with allowed lateness.

What is aggregated. Every validated payment counts for BOTH of its accounts: in the payer's
windows as `out` and in the payee's windows as `in`, per currency (count, sum, min, max in
integer minor units). A payment belongs to every window whose [start, end) covers its
`occurred_at`: one tumbling window and, with the defaults, five hopping windows.

Time. Event time only. Each source shard has a watermark: the highest event time of the valid
payments read from it (no subtracted delay; the allowed lateness is the slack). A window
`closes_at` its end plus the allowed lateness.

- A payment is LATE for a window when its own shard's watermark, just before it, has reached
  the window's `closes_at` (Kafka Streams' stream-time rule, so it does not depend on how
  records are batched), or when the window's final result was already emitted (closed by
  another shard's progress or by the schedule). Late payments go to the side output as one
  `payment.late` per (payment, account) naming the windows it missed and why; they never
  change a final result, and nothing is dropped.
- A window is CLOSED (its `window.closed` final result emitted, once) when the pipeline's
  watermark reaches its `closes_at`. Because a payee's windows receive payments from every
  shard, the pipeline watermark is the minimum over the shards that are active (Flink's rule,
  with idleness): a shard with no batch for `idle_after_s` of processing time stops holding
  it back. When every shard is idle the wall clock takes over: windows close once
  `now >= closes_at + close_grace_s`, which is what closes the windows of keys that went quiet.
  A consumer that is merely behind (catching up after an outage, a replay) keeps its shard
  active, so its windows close by event time and its payments are not made late by the clock.
- A shard the processors have not committed a batch from yet is not in `#shards`, so by the
  rule above it would not hold the watermark back, and the first shard to deliver (a batch can
  span minutes of event time) would close windows every other shard still has payments for.
  So `close_bound` also takes the shards the source is EXPECTED to have (for Kinesis, the
  processor lists the stream's open shards, plus closed ones already registered, and stores
  that list in its shard item, so `windows-close` knows it too): an expected shard never seen
  counts as behind, closing nothing by watermark or clock, until `idle_after_s` after the
  first shard of its stream was registered; then it is idle like any other (an empty shard
  must not block forever). For Kafka (MSK) sources there is no cheap listing of a topic's
  partitions from the event, so no shard is expected: a partition counts only once it has
  delivered, as before, and its first batch may find windows already closed.

Effectively once. A window item carries, like a balances item, a fence per source shard (the
highest sequence number applied from it) and the short ids of its last `recent_ids` payments,
all in the one version-guarded write per (account, window) per batch. A shard item carries the
committed prefix of its shard (fence and watermark up to the first record whose effects
failed), so a retry from the lowest failed record recomputes exactly the same watermarks and
the same late/on-time decisions. Closing is two steps: freeze (`open` -> `closing`, the
content can no longer change), emit, then `final`; a crash between them leaves a `closing`
item that any closer re-emits with the same id and the same content.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from cascata_runtime.envelope import (
    Envelope,
    Rejection,
    SourcePosition,
    derive_event_id,
    format_time,
)
from payments.domain.schemas import (
    ClosedBy,
    LateCause,
    PaymentLate,
    PaymentMade,
    WindowClosed,
    WindowDirection,
    WindowTotals,
    derived_envelope,
    sort_by_type,
)

Status: TypeAlias = Literal["open", "closing", "final"]
STATUSES: tuple[Status, ...] = ("open", "closing", "final")

SHARDS_PARTITION = "#shards"
"""The activity-view partition holding one item per source shard (its committed fence and
watermark). Account ids never contain '#', so it cannot collide with an account."""

US = 1_000_000
"""Microseconds per second: event times are compared as integer epoch microseconds."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPEC_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_SHORT_ID_BYTES = 8


def epoch_us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def iso_seconds(epoch_s: int) -> str:
    """Whole-second RFC 3339, always the same width, so strings sort like the instants (the
    `closes_at` index range query relies on it)."""
    return (_EPOCH + timedelta(seconds=epoch_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_seconds(value: str) -> int:
    parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(seconds=1)


def short_id(event_id: str) -> bytes:
    """64 bits of the payment id: collisions among one window's recent ids are negligible."""
    return hashlib.sha256(event_id.encode()).digest()[:_SHORT_ID_BYTES]


def shard_tag(shard: str) -> str:
    """`shardId-000000000003` -> `3`; Kafka partitions are numbers already."""
    if shard.startswith("shardId-"):
        return shard[len("shardId-") :].lstrip("0") or "0"
    return shard


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """One window instance: [start_s, end_s) in epoch seconds, of the spec called `name`."""

    name: str
    start_s: int
    end_s: int

    @property
    def key(self) -> str:
        """The view's sort key: `<spec>#<start>`, so an account's windows sort by spec, then
        time, and `begins_with(window_key, "tumbling#")` lists one spec."""
        return f"{self.name}#{iso_seconds(self.start_s)}"


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window definition: tumbling when `advance_s == size_s`, hopping when smaller."""

    name: str
    size_s: int
    advance_s: int

    def __post_init__(self) -> None:
        if not _SPEC_NAME.match(self.name):
            raise ValueError(f"window name {self.name!r}: 1-32 of a-z, 0-9, '-', from a letter")
        if self.size_s < 1:
            raise ValueError(f"window {self.name}: size_s must be at least 1")
        if not 1 <= self.advance_s <= self.size_s:
            raise ValueError(f"window {self.name}: advance_s must be from 1 to size_s")

    @property
    def tumbling(self) -> bool:
        return self.advance_s == self.size_s

    def covering(self, t_us: int) -> tuple[Window, ...]:
        """Every window of this spec whose [start, end) holds the instant `t_us`."""
        size_us, advance_us = self.size_s * US, self.advance_s * US
        first = (t_us - size_us) // advance_us + 1
        last = t_us // advance_us
        return tuple(
            Window(self.name, k * self.advance_s, k * self.advance_s + self.size_s)
            for k in range(first, last + 1)
        )


TUMBLING = WindowSpec("tumbling", size_s=300, advance_s=300)
HOPPING = WindowSpec("hopping", size_s=600, advance_s=300)


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """The windows of the processor and how they close (defaults: ksqlDB-like minutes)."""

    windows: tuple[WindowSpec, ...] = (TUMBLING, HOPPING)
    allowed_lateness_s: int = 30
    close_grace_s: int = 60
    """Wall-clock slack before the schedule closes a window when every shard is idle: one
    scheduler period, so a batch in flight when the schedule fires is not cut off."""
    idle_after_s: int = 60
    """A shard with no batch for this long (processing time) stops holding the watermark."""
    recent_ids: int = 48
    """Payment ids remembered per window item (8 bytes each) to turn away duplicates: 48 keep
    an item with two shard fences and a currency each way under 1 KB (one write unit), final
    or not. A duplicate is recognised while it is among the item's last 48 payments."""

    def __post_init__(self) -> None:
        names = [w.name for w in self.windows]
        if not names:
            raise ValueError("at least one window spec is needed")
        if len(set(names)) != len(names):
            raise ValueError(f"window names must be unique: {names}")
        if self.allowed_lateness_s < 0 or self.close_grace_s < 0:
            raise ValueError("allowed_lateness_s and close_grace_s must be >= 0")
        if self.idle_after_s < 1 or self.recent_ids < 0:
            raise ValueError("idle_after_s must be >= 1 and recent_ids >= 0")

    def windows_for(self, t_us: int) -> tuple[Window, ...]:
        return tuple(w for spec in self.windows for w in spec.covering(t_us))

    def closes_at_s(self, window: Window) -> int:
        return window.end_s + self.allowed_lateness_s


# -- state -----------------------------------------------------------------------------------


def _empty_totals() -> Mapping[WindowDirection, Mapping[str, WindowTotals]]:
    return MappingProxyType({})


def _empty_fences() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class WindowState:
    """One (account, window) item of activity-view."""

    account: str
    window: Window
    closes_at_s: int
    status: Status = "open"
    totals: Mapping[WindowDirection, Mapping[str, WindowTotals]] = field(
        default_factory=_empty_totals
    )
    payments: int = 0
    fences: Mapping[str, int] = field(default_factory=_empty_fences)
    recent: tuple[bytes, ...] = ()
    version: int = 0
    """0 means the item has never been stored."""
    closed_by: ClosedBy | None = None
    closed_at_s: int | None = None
    """Wall-clock second the window was frozen (recovery of an interrupted close waits on it)."""
    watermark_us: int | None = None
    """The pipeline watermark when the window was frozen."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.account, self.window.key)

    @classmethod
    def fresh(cls, account: str, window: Window, config: WindowConfig) -> WindowState:
        return cls(account, window, config.closes_at_s(window))

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> WindowState:
        raw_recent = item.get("recent", b"")
        recent = bytes(getattr(raw_recent, "value", raw_recent))
        totals: dict[WindowDirection, Mapping[str, WindowTotals]] = {}
        for direction in ("out", "in"):
            per_currency = item.get("totals", {}).get(direction)
            if per_currency:
                totals[direction] = MappingProxyType({
                    cur: WindowTotals(int(t["count"]), int(t["sum_minor"]), int(t["min_minor"]),
                                      int(t["max_minor"]))
                    for cur, t in per_currency.items()
                })
        status = item["status"]
        if status not in STATUSES:
            raise ValueError(f"unknown window status {status!r}")
        closed_by = item.get("closed_by")
        watermark = item.get("watermark_us")
        closed_at = item.get("closed_at")
        return cls(
            account=str(item["account_id"]),
            window=Window(
                str(item["window"]),
                parse_seconds(str(item["window_start"])),
                parse_seconds(str(item["window_end"])),
            ),
            closes_at_s=parse_seconds(str(item.get("closes_at") or item["window_closes_at"])),
            status=status,
            totals=MappingProxyType(totals),
            payments=int(item.get("payments", 0)),
            fences=MappingProxyType({k: int(v) for k, v in item.get("fences", {}).items()}),
            recent=tuple(
                recent[i : i + _SHORT_ID_BYTES] for i in range(0, len(recent), _SHORT_ID_BYTES)
            ),
            version=int(item.get("version", 0)),
            closed_by="schedule" if closed_by == "schedule" else (
                "watermark" if closed_by == "watermark" else None),
            closed_at_s=None if closed_at is None else parse_seconds(str(closed_at)),
            watermark_us=None if watermark is None else int(watermark),
        )

    def to_item(self) -> dict[str, Any]:
        # Fences are strings: Kinesis sequence numbers have up to 56 digits and a DynamoDB
        # number holds 38.
        item: dict[str, Any] = {
            "account_id": self.account,
            "window_key": self.window.key,
            "window": self.window.name,
            "window_start": iso_seconds(self.window.start_s),
            "window_end": iso_seconds(self.window.end_s),
            "status": self.status,
            "totals": {
                direction: {cur: t.data() for cur, t in per_currency.items()}
                for direction, per_currency in self.totals.items()
            },
            "payments": self.payments,
            "fences": {k: str(v) for k, v in self.fences.items()},
            "version": self.version,
        }
        # A final item leaves the open-by-close index (it has no `closes_at`, an index key):
        # finalizing costs one index delete, and the index holds only windows still to close.
        if self.status == "final":
            item["window_closes_at"] = iso_seconds(self.closes_at_s)
        else:
            item["closes_at"] = iso_seconds(self.closes_at_s)
        if self.recent:
            item["recent"] = b"".join(self.recent)
        if self.closed_by is not None:
            item["closed_by"] = self.closed_by
        if self.closed_at_s is not None:
            item["closed_at"] = iso_seconds(self.closed_at_s)
        if self.watermark_us is not None:
            item["watermark_us"] = self.watermark_us
        return item

    def freeze(self, *, closed_by: ClosedBy, watermark_us: int | None, now_s: float) -> WindowState:
        """`open` -> `closing`: the content is final from here on, the result not yet emitted."""
        if self.status != "open":
            return self
        return replace(
            self, status="closing", closed_by=closed_by, closed_at_s=int(now_s),
            watermark_us=watermark_us, version=self.version + 1,
        )

    def finalize(self) -> WindowState:
        """`closing` -> `final`: the result is on the activity stream."""
        if self.status != "closing":
            return self
        return replace(self, status="final", version=self.version + 1)


@dataclass(frozen=True, slots=True)
class ShardState:
    """What windows committed from one source shard: every record up to `fence` has all its
    effects applied, and `watermark_us` is the highest event time among them."""

    stream: str
    shard: str
    fence: int = -1
    watermark_us: int | None = None
    seen_at_s: float = 0.0
    """Wall clock of the last batch from this shard: liveness, for idleness."""
    version: int = 0
    registered_at_s: float | None = None
    """Wall clock of the first commit from this shard (None: not yet, or an item written
    before the field existed)."""
    peers: tuple[str, ...] | None = None
    """The shard ids its stream had at the last commit (see `close_bound`); None: unknown."""

    @property
    def key(self) -> str:
        return f"{self.stream}/{self.shard}"

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ShardState:
        watermark = item.get("watermark_us")
        return cls(
            stream=str(item["stream"]),
            shard=str(item["shard"]),
            fence=int(item["fence"]),
            watermark_us=None if watermark is None else int(watermark),
            seen_at_s=float(item["seen_at_s"]),
            version=int(item["version"]),
            registered_at_s=(
                None if item.get("registered_at_s") is None else float(item["registered_at_s"])
            ),
            peers=None if item.get("peers") is None else _untag(str(item["peers"])),
        )

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "account_id": SHARDS_PARTITION,
            "window_key": self.key,
            "stream": self.stream,
            "shard": self.shard,
            "fence": str(self.fence),
            "seen_at_s": int(self.seen_at_s),
            "version": self.version,
        }
        if self.watermark_us is not None:
            item["watermark_us"] = self.watermark_us
            item["watermark"] = format_time(from_us(self.watermark_us))
        if self.registered_at_s is not None:
            item["registered_at_s"] = int(self.registered_at_s)
        if self.peers is not None:
            # Tags, not shard ids: the item is written every batch, so it stays small.
            item["peers"] = ",".join(shard_tag(p) for p in self.peers)
        return item


def _untag(value: str) -> tuple[str, ...]:
    """The inverse of the `peers` encoding: Kinesis shard ids have 12 digits."""
    return tuple(f"shardId-{int(t):012d}" if t.isdigit() else t for t in value.split(",") if t)


# -- applying a batch ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contribution:
    """One side of one payment for one window of one account."""

    index: int
    payment: PaymentMade
    account: str
    direction: WindowDirection
    shard: str
    """The shard tag (see `shard_tag`)."""
    sequence: int
    watermark_us: int | None
    """The source shard's watermark just before this record."""


@dataclass(frozen=True, slots=True)
class LateHit:
    """A contribution that missed its window."""

    contribution: Contribution
    window: Window
    closes_at_s: int
    cause: LateCause


@dataclass(frozen=True, slots=True)
class WindowApplied:
    state: WindowState
    applied: tuple[int, ...]
    duplicates: tuple[int, ...]
    redelivered: tuple[int, ...]
    late: tuple[LateHit, ...]

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def apply_window(
    state: WindowState, contributions: Sequence[Contribution], *, recent_ids: int
) -> WindowApplied:
    """Apply one batch's contributions to one window item, each at most once."""
    totals = {d: dict(per) for d, per in state.totals.items()}
    fences = dict(state.fences)
    recent = list(state.recent)
    seen = set(recent)
    applied: list[int] = []
    duplicates: list[int] = []
    redelivered: list[int] = []
    late: list[LateHit] = []
    closes_at_us = state.closes_at_s * US
    for c in sorted(contributions, key=lambda c: (c.shard, c.sequence)):
        # The fence only moves over applied contributions. Late ones never sit below it: on
        # one shard the watermark only grows, so after the first late contribution every
        # later one is late too, and a closed window applies nothing.
        if c.sequence <= fences.get(c.shard, -1):
            redelivered.append(c.index)
            continue
        sid = short_id(c.payment.envelope.event_id)
        if sid in seen:
            duplicates.append(c.index)
            continue
        if state.status != "open":
            late.append(LateHit(c, state.window, state.closes_at_s, "window_closed"))
            continue
        if c.watermark_us is not None and closes_at_us <= c.watermark_us:
            late.append(LateHit(c, state.window, state.closes_at_s, "watermark_passed"))
            continue
        amount = c.payment.amount
        per_currency = totals.setdefault(c.direction, {})
        current = per_currency.get(amount.currency)
        per_currency[amount.currency] = (
            WindowTotals.of(amount.amount_minor) if current is None
            else current.add(amount.amount_minor)
        )
        fences[c.shard] = c.sequence
        seen.add(sid)
        recent.append(sid)
        applied.append(c.index)
    if not applied:
        return WindowApplied(state, (), tuple(duplicates), tuple(redelivered), tuple(late))
    new_state = replace(
        state,
        totals=MappingProxyType({d: MappingProxyType(per) for d, per in totals.items()}),
        payments=state.payments + len(applied),
        fences=MappingProxyType(fences),
        recent=tuple(recent[-recent_ids:]) if recent_ids > 0 else (),
        version=state.version + 1,
    )
    return WindowApplied(
        new_state, tuple(applied), tuple(duplicates), tuple(redelivered), tuple(late)
    )


@dataclass(frozen=True, slots=True)
class RecordPlan:
    """An input record beyond its shard's committed fence, in shard order."""

    index: int
    shard_key: str
    sequence: int
    event_us: int | None
    """The payment's event time; None for a record that is quarantined."""


@dataclass(frozen=True, slots=True)
class BatchPlan:
    contributions: Mapping[tuple[str, str], tuple[Contribution, ...]]
    """(account, window key) -> what the batch brings to that window item."""
    windows: Mapping[tuple[str, str], Window]
    rejected: tuple[tuple[int, Rejection], ...]
    committed: tuple[int, ...]
    """Records at or below their shard's fence: all their effects are already applied."""
    records: tuple[RecordPlan, ...]
    shards: Mapping[str, ShardState]
    """The state of every shard in the batch (as stored, or fresh)."""


def plan_batch(
    config: WindowConfig,
    positions: Sequence[SourcePosition],
    events: Sequence[Envelope | Rejection],
    shards: Mapping[str, ShardState],
) -> BatchPlan:
    """Split a decoded batch into per-window contributions, each with its shard's watermark
    just before it, and the records to quarantine."""
    payments, rejected = sort_by_type(events, PaymentMade)
    rejection_of = dict(rejected)
    payment_of = {i: p for i, p in payments if isinstance(p, PaymentMade)}
    states = dict(shards)
    order: list[tuple[str, int, int]] = []
    for index, pos in enumerate(positions):
        key = f"{pos.stream}/{pos.shard}"
        states.setdefault(key, ShardState(pos.stream, pos.shard))
        order.append((key, int(pos.sequence), index))
    contributions: dict[tuple[str, str], list[Contribution]] = {}
    windows: dict[tuple[str, str], Window] = {}
    committed: list[int] = []
    records: list[RecordPlan] = []
    quarantined: list[tuple[int, Rejection]] = []
    running = {key: state.watermark_us for key, state in states.items()}
    for key, sequence, index in sorted(order):
        if sequence <= states[key].fence:
            committed.append(index)
            continue
        payment = payment_of.get(index)
        if payment is None:
            quarantined.append((index, rejection_of[index]))
            records.append(RecordPlan(index, key, sequence, None))
            continue
        t_us = epoch_us(payment.envelope.occurred_at)
        before = running[key]
        tag = shard_tag(states[key].shard)
        sides: tuple[tuple[str, WindowDirection], ...] = (
            (payment.payer, "out"), (payment.payee, "in")
        )
        for account, direction in sides:
            for window in config.windows_for(t_us):
                wkey = (account, window.key)
                windows[wkey] = window
                contributions.setdefault(wkey, []).append(
                    Contribution(index, payment, account, direction, tag, sequence, before)
                )
        running[key] = t_us if before is None else max(before, t_us)
        records.append(RecordPlan(index, key, sequence, t_us))
    return BatchPlan(
        contributions=MappingProxyType({k: tuple(v) for k, v in contributions.items()}),
        windows=MappingProxyType(windows),
        rejected=tuple(sorted(quarantined)),
        committed=tuple(committed),
        records=tuple(records),
        shards=MappingProxyType(states),
    )


def commit_shard(
    config: WindowConfig,
    state: ShardState,
    records: Iterable[RecordPlan],
    failed: Iterable[int],
    *,
    now_s: float,
    peers: Iterable[str] | None = None,
) -> ShardState | None:
    """The shard's new committed prefix: up to the first record whose effects failed (Lambda
    retries from there, and must then see the same watermark). None when nothing is worth a
    write (no progress and the liveness stamp is still fresh). `peers`: the shard ids of its
    stream as listed now (None: unknown, the stored list is kept)."""
    failures = set(failed)
    fence, watermark = state.fence, state.watermark_us
    for record in sorted(
        (r for r in records if r.shard_key == state.key), key=lambda r: r.sequence
    ):
        if record.index in failures:
            break
        fence = record.sequence
        if record.event_us is not None:
            watermark = record.event_us if watermark is None else max(watermark, record.event_us)
    listed = state.peers if peers is None else tuple(sorted(set(peers)))
    progressed = (
        fence != state.fence or watermark != state.watermark_us or listed != state.peers
        or state.registered_at_s is None
    )
    if not progressed and now_s - state.seen_at_s < config.idle_after_s / 4:
        return None
    return replace(
        state, fence=max(fence, state.fence), watermark_us=watermark, seen_at_s=now_s,
        version=state.version + 1,
        registered_at_s=now_s if state.registered_at_s is None else state.registered_at_s,
        peers=listed,
    )


def merge_shard(mine: ShardState, stored: ShardState) -> ShardState:
    """After a lost race on a shard item: keep the furthest progress of both."""
    watermarks = [w for w in (mine.watermark_us, stored.watermark_us) if w is not None]
    return replace(
        stored,
        fence=max(mine.fence, stored.fence),
        watermark_us=max(watermarks) if watermarks else None,
        seen_at_s=max(mine.seen_at_s, stored.seen_at_s),
        version=stored.version + 1,
        registered_at_s=min(
            (r for r in (mine.registered_at_s, stored.registered_at_s) if r is not None),
            default=None,
        ),
        peers=mine.peers if mine.peers is not None else stored.peers,
    )


# -- closing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CloseBound:
    """Up to where windows may close: `closes_at <= bound`."""

    watermark_us: int | None
    """The pipeline watermark: min over active shards (None if one has none yet)."""
    wall_us: int | None
    """`now - close_grace_s`, only when every shard is idle."""
    active: tuple[str, ...] = ()
    """The active shards' keys, sorted (the processors share the closing work by them)."""
    waiting: tuple[str, ...] = ()
    """Expected shards never seen and not yet idle: while any, nothing closes."""

    @property
    def bound_us(self) -> int | None:
        known = [b for b in (self.watermark_us, self.wall_us) if b is not None]
        return max(known) if known else None

    def allows(self, closes_at_s: int) -> bool:
        bound = self.bound_us
        return bound is not None and closes_at_s * US <= bound

    def closed_by(self, closes_at_s: int) -> ClosedBy:
        if self.watermark_us is not None and closes_at_s * US <= self.watermark_us:
            return "watermark"
        return "schedule"


def close_bound(
    config: WindowConfig,
    shards: Iterable[ShardState],
    *,
    now_s: float,
    expected: Iterable[str] = (),
) -> CloseBound:
    """How far windows may close. `expected`: keys (`stream/shard`) of the shards the sources
    have, beyond those the shard items list as their peers. One of them not registered yet
    counts as behind until `idle_after_s` after its stream's first registered shard."""
    states = list(shards)
    active = sorted(
        (s for s in states if now_s - s.seen_at_s < config.idle_after_s), key=lambda s: s.key
    )
    keys = tuple(s.key for s in active)
    waiting = _waiting(config, states, expected, now_s=now_s)
    if waiting:
        return CloseBound(None, None, keys, waiting)
    if active:
        watermarks = [s.watermark_us for s in active]
        if any(w is None for w in watermarks):
            return CloseBound(None, None, keys)
        return CloseBound(min(w for w in watermarks if w is not None), None, keys)
    # Every shard is idle: nothing is flowing, the wall clock may close what is left. The
    # shards' last watermarks still close by event time whatever the wall clock says.
    known = [s.watermark_us for s in states if s.watermark_us is not None]
    wall = int((now_s - config.close_grace_s) * US)
    return CloseBound(min(known) if known else None, wall, ())


def _waiting(
    config: WindowConfig, states: Sequence[ShardState], expected: Iterable[str], *, now_s: float
) -> tuple[str, ...]:
    known = {s.key for s in states}
    wanted = set(expected) | {
        f"{s.stream}/{p}" for s in states if s.peers is not None for p in s.peers
    }
    first: dict[str, float] = {}
    for s in states:
        if s.registered_at_s is not None:
            first[s.stream] = min(first.get(s.stream, s.registered_at_s), s.registered_at_s)
    waiting = []
    for key in wanted - known:
        stream = key.rpartition("/")[0]
        # A stream none of whose shards is registered has no clock to wait on (the processor
        # registers its own shard before it closes anything, so this is not its case).
        if stream in first and now_s - first[stream] < config.idle_after_s:
            waiting.append(key)
    return tuple(sorted(waiting))


def owns(account: str, shard_key: str, active: Sequence[str]) -> bool:
    """Whether the processor of `shard_key` closes `account`'s windows: the active shards
    share the work by a hash of the account, so they do not race for the same items (a lost
    conditional write still costs a write unit). The schedule closes whatever is left."""
    if shard_key not in active:
        return True
    return zlib.crc32(account.encode()) % len(active) == active.index(shard_key)


def closed_event_id(account: str, window_key: str) -> str:
    return derive_event_id(account, f"window.closed/{window_key}")


def closed_event(state: WindowState) -> Envelope:
    """The final result of a frozen window: a function of the item alone, so every closer
    emits the very same event."""
    if state.status == "open" or state.closed_by is None:
        raise ValueError(f"window {state.key} is not frozen")
    event_id = closed_event_id(state.account, state.window.key)
    end = datetime.fromtimestamp(state.window.end_s, UTC)
    result = WindowClosed(
        envelope=Envelope(
            event_id=event_id,
            type=WindowClosed.TYPE,
            version=WindowClosed.VERSION,
            key=state.account,
            occurred_at=end,
            data=MappingProxyType({}),
            correlation_id=event_id,
        ),
        account=state.account,
        window=state.window.name,
        window_key=state.window.key,
        start=datetime.fromtimestamp(state.window.start_s, UTC),
        end=end,
        closes_at=datetime.fromtimestamp(state.closes_at_s, UTC),
        totals=state.totals,
        payments=state.payments,
        closed_by=state.closed_by,
        watermark=None if state.watermark_us is None else from_us(state.watermark_us),
    )
    return replace(result.envelope, data=MappingProxyType(result.data()))


def late_events(hits: Iterable[LateHit], config: WindowConfig) -> list[tuple[int, Envelope]]:
    """One `payment.late` per (input record, account side), naming every window it missed."""
    grouped: dict[tuple[int, str, str], list[LateHit]] = {}
    for hit in hits:
        c = hit.contribution
        grouped.setdefault((c.index, c.account, c.direction), []).append(hit)
    out: list[tuple[int, Envelope]] = []
    for key in sorted(grouped):
        out.append((key[0], late_event(grouped[key], config)))
    return out


def late_event(hits: Sequence[LateHit], config: WindowConfig) -> Envelope:
    first = hits[0].contribution
    payment = first.payment
    unique = {h.window.key: h for h in hits}
    ordered = [unique[k] for k in sorted(unique)]
    watermark = first.watermark_us
    missed = ", ".join(f"{h.window.key} ({_why(h)})" for h in ordered)
    shard_time = "unknown" if watermark is None else format_time(from_us(watermark))
    reason = (
        f"payment at {format_time(payment.envelope.occurred_at)} arrived after "
        f"{len(ordered)} of its windows closed (end + {config.allowed_lateness_s} s allowed "
        f"lateness): {missed}; the shard's watermark was {shard_time}"
    )
    counterparty = payment.payee if first.direction == "out" else payment.payer
    data: dict[str, Any] = {
        "account": first.account,
        "counterparty": counterparty,
        "direction": first.direction,
        "payment_event_id": payment.envelope.event_id,
        "amount_minor": payment.amount.amount_minor,
        "currency": payment.amount.currency,
        "windows": [
            {"window_key": h.window.key, "closes_at": iso_seconds(h.closes_at_s),
             "cause": h.cause}
            for h in ordered
        ],
        "watermark": None if watermark is None else format_time(from_us(watermark)),
        "allowed_lateness_s": config.allowed_lateness_s,
        "reason": reason,
    }
    return derived_envelope(
        cause=payment.envelope,
        role=f"windows/late/{first.direction}",
        event_type=PaymentLate.TYPE,
        version=PaymentLate.VERSION,
        key=first.account,
        data=data,
    )


def _why(hit: LateHit) -> str:
    if hit.cause == "window_closed":
        return "its final result was already emitted"
    return f"closed at {iso_seconds(hit.closes_at_s)}"


__all__ = [
    "HOPPING",
    "SHARDS_PARTITION",
    "TUMBLING",
    "BatchPlan",
    "CloseBound",
    "Contribution",
    "LateHit",
    "ShardState",
    "Window",
    "WindowApplied",
    "WindowConfig",
    "WindowSpec",
    "WindowState",
    "apply_window",
    "close_bound",
    "closed_event",
    "commit_shard",
    "late_events",
    "owns",
    "plan_batch",
]
