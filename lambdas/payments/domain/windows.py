"""windows: event-time tumbling and hopping windows per account, stored as PANES.

What is aggregated. Every validated payment counts for BOTH of its accounts: in the payer's
windows as `out` and in the payee's windows as `in`, per currency (count, sum, min, max in
integer minor units). A payment belongs to every window whose [start, end) covers its
`occurred_at`: with the defaults one tumbling window (5 min) and two hopping windows (10 min
every 5 min).

Panes. The view does not store windows: it stores one item per (account, pane), a pane being
the tumbling step (`pane_s`, the smallest advance; every size and advance is a multiple of it).
A window is the merge of the panes it spans: a tumbling window is one pane, a default hopping
window two. So a payment touches one item per account, written at most once per batch
whatever the number of windows covering it. A pane's `totals` hold the payments that count in
EVERY window covering it; a payment that was late for the pane's earliest-closing windows but
on time for later ones goes to `later[<end>]` (counted in the windows ending at or after
`<end>`), which is rare and absent from ordinary items.

Time. Event time only. Each source shard has a watermark that is a function of the shard's
records, in shard order, and of nothing else:

- each record counts at its event time, but never later than its arrival time plus
  `max_skew_s` (a record dated in the future of its own arrival moves nothing beyond it);
- the shard's event-time watermark is the `watermark_rank`-th highest of those times seen so far
  (default 3rd): monotone, independent of how records are batched, and one absurd event (or
  rank - 1 of them) cannot move it; it trails the true maximum by two records, seconds on a
  busy shard;
- plus a `floor`, raised only by the schedule for a shard that went idle (see below).

A payment is LATE for a window when the watermark of its own shard, just before it, has
reached the window's `closes_at` (end + allowed lateness): Kafka Streams' stream-time rule,
independent of batching. Late (payment, account) pairs go to the side output as one
`payment.late` naming the windows missed; they never change a final result.

Final. The pipeline watermark is the minimum over every shard the source has (the shards
registered in the `#shards` partition and the peers they list) of the shard's watermark, with
only VERIFIED floors. A window is final once the pipeline watermark reaches its `closes_at`.
Readers (the query API, diff, audit, the demo) compute it from the shard items, with no clock:
nothing is rewritten when a window closes. Since every shard's watermark is at least the
pipeline watermark, any payment for a final window is late by its own shard's rule: a final
result can never change. Closing emits each final window's result (`window.closed`) to the
activity stream, driven by a cursor item; re-emitting after a crash yields the same id.

Idleness (the only processing-time rule). A shard with no batch for `idle_after_s` of the
functions' clock holds the pipeline back. The schedule then raises its floor: first as
PENDING (processors use it at once for lateness; readers and closers ignore it), then, once it
has checked that the shard's committed fence is at the shard's tip (no record after it: no
batch that read the old watermark can still apply a payment), as VERIFIED. The target is the
lowest watermark of the active shards, or the functions' clock minus `close_grace_s` when
every shard is idle. A payment arriving after that, older than the raised floor, is late
(`window_closed`). This is what closes the windows of a pipeline that went quiet, and it
depends on timing only for payments that arrive after a pipeline-wide pause.

Effectively once. Pane items are written through the state engine (`cascata_runtime.state`):
per-item lineage fences turn away redeliveries and re-emitted copies. The side output goes
through the same fences: every (payment, account) side is an input of its pane item, late or
not, and its `payment.late` is an output of the model, emitted only when the fences admit it.
This matters because a late decision depends on the record's position: a copy re-emitted
upstream after a crash arrives further down its shard, where the watermark may have passed
windows the original was on time for; judged on its own it would add a `payment.late` for a
payment the pane already counts. (A side late for every window of its pane therefore writes
its pane item too, with its fences and nothing counted: late sides are rare.) A shard item
carries the
committed prefix of its shard (fence and watermark up to the first record whose effects
failed), so a retry from the lowest failed record recomputes the same watermarks and the same
late/on-time decisions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeAlias

from cascata_runtime.effects import Emission, Keyed, Outcome
from cascata_runtime.envelope import (
    Envelope,
    Rejection,
    SourcePosition,
    derive_event_id,
    format_time,
    seconds_text,
)
from cascata_runtime.lineage import Lineage
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

BOOKKEEPING_PARTITION = "#shards"
"""The activity-view partition of the processor's bookkeeping: shard items (`shard#...`), the
close cursor and the due lists. Account ids never contain '#', so it cannot collide."""
SHARDS_PARTITION = BOOKKEEPING_PARTITION
SHARD_PREFIX = "shard#"
DUE_PREFIX = "due#"
CURSOR_KEY = "close-cursor"
PANE_PREFIX = "pane#"
PANE = "pane"
"""The `window` attribute of a pane item."""

US = 1_000_000
"""Microseconds per second: event times are compared as integer epoch microseconds."""
DAY_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPEC_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")

Totals: TypeAlias = Mapping[WindowDirection, Mapping[str, WindowTotals]]
PaneKey: TypeAlias = tuple[str, str]
"""(account_id, pane key)."""


def epoch_us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def iso_seconds(epoch_s: int) -> str:
    """Whole-second RFC 3339, always the same width, so strings sort like the instants."""
    return seconds_text(_EPOCH + timedelta(seconds=epoch_s)) + "Z"


def parse_seconds(value: str) -> int:
    parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(seconds=1)


def shard_tag(shard: str) -> str:
    """`shardId-000000000003` -> `3`; a Kafka partition (a number already) -> `p3`."""
    if shard.startswith("shardId-"):
        return shard[len("shardId-") :].lstrip("0") or "0"
    if shard.isdigit():
        return f"p{shard}"
    return shard


def _untag(value: str) -> tuple[str, ...]:
    """The inverse of the `peers` encoding: Kinesis shard ids have 12 digits, Kafka
    partitions are numbers."""
    return tuple(f"shardId-{int(t):012d}" if t.isdigit()
                 else t[1:] if t[:1] == "p" and t[1:].isdigit() else t
                 for t in value.split(",") if t)


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """One window instance: [start_s, end_s) in epoch seconds, of the spec called `name`."""

    name: str
    start_s: int
    end_s: int

    @property
    def key(self) -> str:
        """`<spec>#<start>`: the `window_key` of its `window.closed` result."""
        return f"{self.name}#{iso_seconds(self.start_s)}"


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window definition: tumbling when `advance_s == size_s`, hopping when smaller."""

    name: str
    size_s: int
    advance_s: int

    def __post_init__(self) -> None:
        if not _SPEC_NAME.match(self.name) or self.name == PANE:
            raise ValueError(f"window name {self.name!r}: 1-32 of a-z, 0-9, '-', from a letter "
                             f"(not {PANE!r})")
        if self.size_s < 1:
            raise ValueError(f"window {self.name}: size_s must be at least 1")
        if not 1 <= self.advance_s <= self.size_s:
            raise ValueError(f"window {self.name}: advance_s must be from 1 to size_s")

    @property
    def tumbling(self) -> bool:
        return self.advance_s == self.size_s

    def covering(self, t_s: int) -> tuple[Window, ...]:
        """Every window of this spec whose [start, end) holds the second `t_s`."""
        first = (t_s - self.size_s) // self.advance_s + 1
        last = t_s // self.advance_s
        return tuple(
            Window(self.name, k * self.advance_s, k * self.advance_s + self.size_s)
            for k in range(first, last + 1)
        )


TUMBLING = WindowSpec("tumbling", size_s=300, advance_s=300)
HOPPING = WindowSpec("hopping", size_s=600, advance_s=300)


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """The windows of the processor, how they close, and how long their items live."""

    windows: tuple[WindowSpec, ...] = (TUMBLING, HOPPING)
    allowed_lateness_s: int = 30
    close_grace_s: int = 60
    """When every shard is idle, the schedule raises them to the functions' clock minus this."""
    idle_after_s: int = 60
    """A shard with no batch for this long (functions' clock) is idle (see the module doc)."""
    max_skew_s: int = 300
    """A record counts for the watermark at most this long after its arrival time (the entry
    gate quarantines events further in the future; this keeps the watermark safe anyway)."""
    watermark_rank: int = 3
    """The shard watermark is the rank-th highest event time seen: rank - 1 outliers are
    harmless."""
    retention_s: int = 7 * DAY_S
    """Pane items and due lists expire this long after the pane's last window closes: the
    query API shows a week of windows, the source streams keep records at most 7 days (a
    redelivery never meets an expired pane), and a payment later than that is late anyway."""
    shard_retention_s: int = 30 * DAY_S
    """A shard item expires this long after its last batch (a shard closed by resharding)."""

    def __post_init__(self) -> None:
        names = [w.name for w in self.windows]
        if not names:
            raise ValueError("at least one window spec is needed")
        if len(set(names)) != len(names):
            raise ValueError(f"window names must be unique: {names}")
        if self.allowed_lateness_s < 0 or self.close_grace_s < 0 or self.max_skew_s < 0:
            raise ValueError("allowed_lateness_s, close_grace_s and max_skew_s must be >= 0")
        if self.idle_after_s < 1 or self.watermark_rank < 1:
            raise ValueError("idle_after_s and watermark_rank must be >= 1")
        if self.retention_s < DAY_S or self.shard_retention_s < DAY_S:
            raise ValueError("retention_s and shard_retention_s must be at least a day")
        pane = self.pane_s
        for w in self.windows:
            if w.size_s % pane or w.advance_s % pane:
                raise ValueError(f"window {w.name}: size and advance must be multiples of the "
                                 f"smallest advance ({pane} s), the pane")

    @property
    def pane_s(self) -> int:
        return min(w.advance_s for w in self.windows)

    @property
    def max_size_s(self) -> int:
        return max(w.size_s for w in self.windows)

    def windows_for(self, t_us: int) -> tuple[Window, ...]:
        return tuple(w for spec in self.windows for w in spec.covering(t_us // US))

    def closes_at_s(self, window: Window) -> int:
        return window.end_s + self.allowed_lateness_s

    def pane_start(self, t_us: int) -> int:
        return (t_us // US) // self.pane_s * self.pane_s

    def windows_of_pane(self, start_s: int) -> tuple[Window, ...]:
        """The windows covering pane `start_s`, by end then name."""
        return tuple(sorted(
            (w for spec in self.windows for w in spec.covering(start_s)),
            key=lambda w: (w.end_s, w.name, w.start_s),
        ))

    def pane_closes_at_s(self, start_s: int) -> int:
        """When the pane's last window closes: the item cannot change after it."""
        return max(self.closes_at_s(w) for w in self.windows_of_pane(start_s))

    def panes_of(self, window: Window) -> tuple[int, ...]:
        return tuple(range(window.start_s, window.end_s, self.pane_s))


def pane_key(start_s: int) -> str:
    return f"{PANE_PREFIX}{iso_seconds(start_s)}"


def pane_start_of(key: str) -> int:
    if not key.startswith(PANE_PREFIX):
        raise ValueError(f"not a pane key: {key!r}")
    return parse_seconds(key[len(PANE_PREFIX):])


# -- aggregates ------------------------------------------------------------------------------


def add_amount(totals: Totals, direction: WindowDirection, currency: str, amount: int) -> Totals:
    per = dict(totals.get(direction, {}))
    current = per.get(currency)
    per[currency] = WindowTotals.of(amount) if current is None else current.add(amount)
    out = dict(totals)
    out[direction] = MappingProxyType(per)
    return MappingProxyType(out)


def merge_totals(parts: Iterable[Totals]) -> Totals:
    out: dict[WindowDirection, dict[str, WindowTotals]] = {}
    for part in parts:
        for direction, per in part.items():
            mine = out.setdefault(direction, {})
            for currency, t in per.items():
                have = mine.get(currency)
                mine[currency] = t if have is None else WindowTotals(
                    have.count + t.count, have.sum_minor + t.sum_minor,
                    min(have.min_minor, t.min_minor), max(have.max_minor, t.max_minor),
                )
    return MappingProxyType({
        d: MappingProxyType(dict(sorted(per.items()))) for d, per in sorted(out.items())
    })


def count_of(totals: Totals) -> int:
    return sum(t.count for per in totals.values() for t in per.values())


def totals_item(totals: Totals) -> dict[str, Any]:
    return {d: {c: t.data() for c, t in per.items()} for d, per in totals.items()}


def totals_from_item(value: object) -> Totals:
    out: dict[WindowDirection, Mapping[str, WindowTotals]] = {}
    if not isinstance(value, Mapping):
        return MappingProxyType(out)
    for direction in ("out", "in"):
        per = value.get(direction)
        if isinstance(per, Mapping) and per:
            out[direction] = MappingProxyType({
                str(c): WindowTotals(int(t["count"]), int(t["sum_minor"]), int(t["min_minor"]),
                                     int(t["max_minor"]))
                for c, t in per.items()
            })
    return MappingProxyType(out)


# -- panes -----------------------------------------------------------------------------------


def _no_classes() -> Mapping[int, Totals]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PaneState:
    """One (account, pane) item of activity-view. `classes`: first window end a payment counts
    for -> the totals of those payments; the pane's first end is the ordinary class."""

    account: str
    start_s: int
    classes: Mapping[int, Totals] = field(default_factory=_no_classes)

    @property
    def key(self) -> PaneKey:
        return (self.account, pane_key(self.start_s))

    def for_window(self, window: Window) -> Totals:
        """What this pane brings to `window` (which must cover it)."""
        return merge_totals(t for end, t in sorted(self.classes.items()) if end <= window.end_s)

    def add(self, class_end: int, direction: WindowDirection, currency: str,
            amount: int) -> PaneState:
        classes = dict(self.classes)
        classes[class_end] = add_amount(classes.get(class_end, MappingProxyType({})),
                                        direction, currency, amount)
        return replace(self, classes=MappingProxyType(classes))

    @classmethod
    def from_item(cls, item: Mapping[str, Any], config: WindowConfig) -> PaneState:
        start = parse_seconds(str(item["window_start"]))
        first = config.windows_of_pane(start)[0].end_s
        classes: dict[int, Totals] = {}
        main = totals_from_item(item.get("totals"))
        if main:
            classes[first] = main
        for end, totals in (item.get("later") or {}).items():
            parsed = totals_from_item(totals)
            if parsed:
                classes[parse_seconds(str(end))] = parsed
        return cls(str(item["account_id"]), start, MappingProxyType(classes))

    def to_item(self, config: WindowConfig) -> dict[str, Any]:
        """Domain attributes (no key, version or fences): readable on their own. `totals` is
        left out when nothing is on time for every window (only `later` classes, or only the
        fences of late sides): an absent attribute, as the audit's bounds read it."""
        first = config.windows_of_pane(self.start_s)[0].end_s
        closes_at = config.pane_closes_at_s(self.start_s)
        main = self.classes.get(first, MappingProxyType({}))
        item: dict[str, Any] = {
            "window": PANE,
            "window_start": iso_seconds(self.start_s),
            "window_end": iso_seconds(self.start_s + config.pane_s),
            "closes_at": iso_seconds(closes_at),
            "payments": count_of(main),
            "expires_at": closes_at + config.retention_s,
        }
        if main:
            item["totals"] = totals_item(main)
        later = {iso_seconds(end): totals_item(t)
                 for end, t in sorted(self.classes.items()) if end != first}
        if later:
            item["later"] = later
        return item


@dataclass(frozen=True, slots=True)
class Contribution:
    """One side of one payment, for the pane of one account: the class it counts in and the
    `payment.late` of the windows it missed, as its shard's watermark judged this record."""

    payment: PaymentMade
    account: str
    direction: WindowDirection
    class_end: int | None
    """The end of the first window covering the pane that the payment is on time for; None
    when it is late for all of them (it counts nowhere)."""
    late: Envelope | None = None
    """The side output when it missed some windows, emitted only if the fences admit it."""


class PaneModel:
    """The state engine's model of activity-view: keyed by (account, pane key). Its outputs
    are the `payment.late` events of the sides it admits, on `late_stream`."""

    def __init__(self, config: WindowConfig, late_stream: str = "") -> None:
        self._config = config
        self._late_stream = late_stream

    def load(self, key: PaneKey, item: Mapping[str, Any] | None) -> PaneState:
        if item is None:
            return PaneState(key[0], pane_start_of(key[1]))
        return PaneState.from_item(item, self._config)

    def dump(self, key: PaneKey, state: PaneState) -> dict[str, Any]:
        return state.to_item(self._config)

    def apply(self, key: PaneKey, state: PaneState,
              inputs: Sequence[Keyed[PaneKey, Contribution]]) -> Outcome[PaneState]:
        late: list[Emission] = []
        for x in inputs:
            c = x.value
            if c.class_end is not None:
                amount = c.payment.amount
                state = state.add(c.class_end, c.direction, amount.currency,
                                  amount.amount_minor)
            if c.late is not None:
                late.append(Emission(self._late_stream, c.late, x.index))
        return Outcome(state, tuple(late))


# -- shards and watermarks -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardState:
    """What windows committed from one source shard: every record up to `fence` has all its
    effects applied; `top` holds the highest (skew-bounded) event times among them."""

    stream: str
    shard: str
    fence: int = -1
    top: tuple[int, ...] = ()
    """Descending, at most `watermark_rank` event times (epoch microseconds)."""
    floor_us: int | None = None
    """A verified raise by the schedule (see the module doc): counts for everyone."""
    pending_us: int | None = None
    """A raise not verified yet: counts for this shard's lateness only."""
    seen_at_s: float = 0.0
    """Functions' clock of the last batch from this shard: liveness, for idleness."""
    registered_at_s: float | None = None
    peers: tuple[str, ...] | None = None
    """The shard ids its stream had at the last commit; None: unknown (Kafka)."""
    version: int = 0

    @property
    def key(self) -> str:
        return f"{self.stream}/{self.shard}"

    @property
    def sort_key(self) -> str:
        return f"{SHARD_PREFIX}{self.key}"

    def own_us(self, rank: int) -> int | None:
        return self.top[rank - 1] if len(self.top) >= rank else None

    def watermark_us(self, rank: int) -> int | None:
        """The watermark readers and closers use: own progress and verified raises."""
        known = [w for w in (self.own_us(rank), self.floor_us) if w is not None]
        return max(known) if known else None

    def lateness_us(self, rank: int) -> tuple[int | None, int | None]:
        """(own watermark, raise) for this shard's late decisions: pending raises count."""
        raises = [w for w in (self.floor_us, self.pending_us) if w is not None]
        return self.own_us(rank), (max(raises) if raises else None)

    def saw(self, event_us: int, rank: int) -> ShardState:
        if len(self.top) >= rank and event_us <= self.top[-1]:
            return self
        top = tuple(sorted((*self.top, event_us), reverse=True)[:rank])
        return replace(self, top=top)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ShardState:
        def opt(name: str) -> int | None:
            value = item.get(name)
            return None if value is None else int(value)

        return cls(
            stream=str(item["stream"]),
            shard=str(item["shard"]),
            fence=int(item.get("fence", -1)),
            top=tuple(int(t) for t in item.get("top", [])),
            floor_us=opt("floor_us"),
            pending_us=opt("pending_us"),
            seen_at_s=float(item.get("seen_at_s", 0)),
            registered_at_s=(None if item.get("registered_at_s") is None
                             else float(item["registered_at_s"])),
            peers=None if item.get("peers") is None else _untag(str(item["peers"])),
            version=int(item.get("version", 0)),
        )

    def to_item(self, config: WindowConfig) -> dict[str, Any]:
        # Fences are strings: Kinesis sequence numbers have up to 56 digits, a number 38.
        item: dict[str, Any] = {
            "account_id": BOOKKEEPING_PARTITION,
            "window_key": self.sort_key,
            "stream": self.stream,
            "shard": self.shard,
            "fence": str(self.fence),
            "top": list(self.top),
            "seen_at_s": int(self.seen_at_s),
            "version": self.version,
            "expires_at": int(self.seen_at_s) + config.shard_retention_s,
        }
        watermark = self.watermark_us(config.watermark_rank)
        if watermark is not None:
            item["watermark"] = format_time(from_us(watermark))
        for name, value in (("floor_us", self.floor_us), ("pending_us", self.pending_us)):
            if value is not None:
                item[name] = value
        if self.registered_at_s is not None:
            item["registered_at_s"] = int(self.registered_at_s)
        if self.peers is not None:
            item["peers"] = ",".join(shard_tag(p) for p in self.peers)
        return item

    def merged(self, stored: ShardState) -> ShardState:
        """After a lost race on the item: the furthest progress of both, on `stored`'s version."""
        def hi(a: int | None, b: int | None) -> int | None:
            known = [v for v in (a, b) if v is not None]
            return max(known) if known else None

        rank = max(len(self.top), len(stored.top))
        return replace(
            stored,
            fence=max(self.fence, stored.fence),
            top=tuple(sorted(set(self.top) | set(stored.top), reverse=True)[:rank])
            if self.fence >= stored.fence else stored.top,
            floor_us=hi(self.floor_us, stored.floor_us),
            pending_us=hi(self.pending_us, stored.pending_us),
            seen_at_s=max(self.seen_at_s, stored.seen_at_s),
            registered_at_s=min(
                (r for r in (self.registered_at_s, stored.registered_at_s) if r is not None),
                default=None),
            peers=self.peers if self.peers is not None else stored.peers,
        )


def shard_counts(event_us: int, arrival_s: float, config: WindowConfig) -> int:
    """The time a record counts at for its shard's watermark: its event time, bounded by its
    arrival plus the declared skew (a record of 2099 moves nothing beyond its arrival)."""
    if arrival_s <= 0:  # no arrival time known (a test event): the event time alone
        return event_us
    return min(event_us, int((arrival_s + config.max_skew_s) * US))


@dataclass(frozen=True, slots=True)
class Watermark:
    """The pipeline watermark as every reader computes it from the shard items."""

    watermark_us: int | None
    """None: some shard of the source has no watermark yet (nothing is final)."""
    by_floor: bool = False
    """The minimum came from a schedule raise (the pipeline was idle)."""

    def final(self, closes_at_s: int) -> bool:
        return self.watermark_us is not None and closes_at_s * US <= self.watermark_us

    @property
    def closed_by(self) -> ClosedBy:
        return "schedule" if self.by_floor else "watermark"


def pipeline_watermark(
    config: WindowConfig, shards: Iterable[ShardState], expected: Iterable[str] = ()
) -> Watermark:
    """The minimum watermark over every shard the source has: the registered ones, the peers
    they list, and `expected` (keys `stream/shard`); a missing one means nothing is final."""
    states = {s.key: s for s in shards}
    wanted = set(states) | set(expected) | {
        f"{s.stream}/{p}" for s in states.values() if s.peers is not None for p in s.peers
    }
    if not states or wanted - set(states):
        return Watermark(None)
    rank = config.watermark_rank
    lowest: int | None = None
    by_floor = False
    for state in states.values():
        w = state.watermark_us(rank)
        if w is None:
            return Watermark(None)
        if lowest is None or w < lowest:
            own = state.own_us(rank)
            lowest, by_floor = w, own is None or own < w
    return Watermark(lowest, by_floor)


def read_watermark(config: WindowConfig, items: Iterable[Mapping[str, Any]]) -> Watermark:
    """`pipeline_watermark` from raw items of the bookkeeping partition (others ignored)."""
    return pipeline_watermark(config, [
        ShardState.from_item(i) for i in items
        if str(i.get("window_key", "")).startswith(SHARD_PREFIX)
    ])


# -- planning a batch ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LateHit:
    window: Window
    closes_at_s: int
    cause: LateCause


@dataclass(frozen=True, slots=True)
class Side:
    """One side of one payment with what its shard's watermark said just before it."""

    index: int
    payment: PaymentMade
    account: str
    direction: WindowDirection
    own_us: int | None
    raised_us: int | None


def classify(config: WindowConfig, start_s: int, own_us: int | None, raised_us: int | None
             ) -> tuple[int | None, tuple[LateHit, ...]]:
    """(the end of the first window of the pane the payment is on time for, or None; the
    windows it is late for). Windows close in end order, so the late ones come first."""
    hits: list[LateHit] = []
    for window in config.windows_of_pane(start_s):
        closes = config.closes_at_s(window)
        if own_us is not None and closes * US <= own_us:
            hits.append(LateHit(window, closes, "watermark_passed"))
        elif raised_us is not None and closes * US <= raised_us:
            hits.append(LateHit(window, closes, "window_closed"))
        else:
            return window.end_s, tuple(hits)
    return None, tuple(hits)


@dataclass(frozen=True, slots=True)
class RecordPlan:
    """An input record beyond its shard's committed fence, in shard order."""

    index: int
    shard_key: str
    sequence: int
    counts_us: int | None
    """What it counts at for the shard's watermark; None for a record that is quarantined."""


@dataclass(frozen=True, slots=True)
class BatchPlan:
    inputs: tuple[Keyed[PaneKey, Contribution], ...]
    """What the batch brings to pane items, in input order: every side of every payment,
    each with its class (None: late for all its pane's windows) and its `payment.late`."""
    due: Mapping[str, Mapping[int, tuple[str, ...]]]
    """Shard key -> pane start -> accounts touched (for the due lists)."""
    rejected: tuple[tuple[int, Rejection], ...]
    committed: tuple[int, ...]
    """Records at or below their shard's fence: all their effects are already applied."""
    records: tuple[RecordPlan, ...]
    shards: Mapping[str, ShardState]
    """The state of every shard in the batch (as stored, or fresh)."""

    @property
    def late(self) -> tuple[tuple[int, Envelope], ...]:
        """The `payment.late` events the inputs carry, with their input record: candidates
        only, the pane model emits those its fences admit."""
        return tuple((x.index, x.value.late) for x in self.inputs if x.value.late is not None)


def plan_batch(
    config: WindowConfig,
    positions: Sequence[SourcePosition],
    arrivals: Sequence[float],
    events: Sequence[Envelope | Rejection | None],
    lineages: Sequence[Lineage],
    shards: Mapping[str, ShardState],
    *,
    expected: Iterable[str] = (),
) -> BatchPlan:
    """Split a decoded batch into pane inputs (each carrying its late side output, if any)
    and quarantined records, each payment judged by its own shard's watermark just before it.
    Every side is an input, late or not, so the pane's fences turn away a copy's side output
    as well as its contribution."""
    payments, rejected = sort_by_type(events, PaymentMade)
    rejection_of = dict(rejected)
    payment_of = {i: p for i, p in payments if isinstance(p, PaymentMade)}
    states = dict(shards)
    listed = set(expected)
    for pos in positions:
        key = f"{pos.stream}/{pos.shard}"
        if key not in states:
            states[key] = _fresh_shard(config, pos.stream, pos.shard, shards, listed)
    running = dict(states)
    order = sorted(
        (f"{pos.stream}/{pos.shard}", int(pos.sequence), index)
        for index, pos in enumerate(positions)
    )
    rank = config.watermark_rank
    inputs: list[Keyed[PaneKey, Contribution]] = []
    due: dict[str, dict[int, set[str]]] = {}
    committed: list[int] = []
    records: list[RecordPlan] = []
    quarantined: list[tuple[int, Rejection]] = []
    for key, sequence, index in order:
        if sequence <= states[key].fence:
            committed.append(index)
            continue
        payment = payment_of.get(index)
        if payment is None:
            if index in rejection_of:
                quarantined.append((index, rejection_of[index]))
            records.append(RecordPlan(index, key, sequence, None))
            continue
        t_us = epoch_us(payment.envelope.occurred_at)
        start = config.pane_start(t_us)
        own, raised = running[key].lateness_us(rank)
        class_end, hits = classify(config, start, own, raised)
        sides: tuple[tuple[str, WindowDirection], ...] = (
            (payment.payer, "out"), (payment.payee, "in"))
        for account, direction in sides:
            late = (late_event(Side(index, payment, account, direction, own, raised), hits,
                               config) if hits else None)
            inputs.append(Keyed((account, pane_key(start)),
                                Contribution(payment, account, direction, class_end, late),
                                index, lineages[index]))
            if class_end is not None:
                due.setdefault(key, {}).setdefault(start, set()).add(account)
        counts = shard_counts(t_us, arrivals[index], config)
        running[key] = running[key].saw(counts, rank)
        records.append(RecordPlan(index, key, sequence, counts))
    return BatchPlan(
        inputs=tuple(inputs),
        due=MappingProxyType({
            k: MappingProxyType({s: tuple(sorted(a)) for s, a in sorted(v.items())})
            for k, v in due.items()
        }),
        rejected=tuple(sorted(quarantined)),
        committed=tuple(committed),
        records=tuple(records),
        shards=MappingProxyType(states),
    )


def _fresh_shard(config: WindowConfig, stream: str, shard: str,
                 known: Mapping[str, ShardState], listed: set[str]) -> ShardState:
    """A shard seen for the first time. If the source was known to have it (listed, or a peer
    of a registered shard), nothing was final without it and it starts from nothing. If not
    (a Kafka partition, a shard born of resharding since the last listing), windows may have
    closed already: it starts at the pipeline watermark, so it cannot change a final result."""
    key = f"{stream}/{shard}"
    peers = {f"{s.stream}/{p}" for s in known.values() if s.peers is not None for p in s.peers}
    if key in listed or key in peers or not known:
        return ShardState(stream, shard)
    others = pipeline_watermark(config, known.values()).watermark_us
    return ShardState(stream, shard, floor_us=others)


def commit_shard(
    config: WindowConfig,
    state: ShardState,
    records: Iterable[RecordPlan],
    failed: Iterable[int],
    *,
    now_s: float,
    peers: Sequence[str] | None = None,
) -> ShardState | None:
    """The shard's new committed prefix: up to the first record whose effects failed (Lambda
    retries from there, and must then see the same watermark). None when nothing is worth a
    write (no progress and the liveness stamp is still fresh)."""
    failures = set(failed)
    new = state
    for record in sorted((r for r in records if r.shard_key == state.key),
                         key=lambda r: r.sequence):
        if record.index in failures:
            break
        new = replace(new, fence=record.sequence)
        if record.counts_us is not None:
            new = new.saw(record.counts_us, config.watermark_rank)
    listed = state.peers if peers is None else tuple(sorted(set(peers)))
    progressed = (new.fence != state.fence or new.top != state.top or listed != state.peers
                  or state.registered_at_s is None or state.version == 0)
    if not progressed and now_s - state.seen_at_s < config.idle_after_s / 4:
        return None
    return replace(
        new, seen_at_s=max(now_s, state.seen_at_s), peers=listed, version=state.version + 1,
        registered_at_s=now_s if state.registered_at_s is None else state.registered_at_s,
    )


# -- idleness --------------------------------------------------------------------------------


def idle_raises(
    config: WindowConfig, shards: Iterable[ShardState], *, now_s: float,
    expected: Iterable[str] = (),
) -> list[ShardState]:
    """The shards the schedule raises now (with their new `pending_us`): every idle shard
    whose watermark is below the target. Expected shards never registered count as idle once
    `idle_after_s` passed since the first shard of their stream registered."""
    states = {s.key: s for s in shards}
    rank = config.watermark_rank
    first: dict[str, float] = {}
    for s in states.values():
        if s.registered_at_s is not None:
            first[s.stream] = min(first.get(s.stream, s.registered_at_s), s.registered_at_s)
    wanted = set(expected) | {
        f"{s.stream}/{p}" for s in states.values() if s.peers is not None for p in s.peers}
    for key in sorted(wanted - set(states)):
        stream, _, shard = key.rpartition("/")
        if stream in first and now_s - first[stream] >= config.idle_after_s:
            states[key] = ShardState(stream, shard, seen_at_s=0.0)
    active = [s for s in states.values() if now_s - s.seen_at_s < config.idle_after_s]
    idle = [s for s in states.values() if now_s - s.seen_at_s >= config.idle_after_s]
    if not idle:
        return []
    if active:
        marks = [s.watermark_us(rank) for s in active]
        if any(m is None for m in marks):
            return []
        target = min(m for m in marks if m is not None)
    else:
        target = int((now_s - config.close_grace_s) * US)
    out = []
    for s in sorted(idle, key=lambda s: s.key):
        current = max((w for w in (s.watermark_us(rank), s.pending_us) if w is not None),
                      default=None)
        if current is None or current < target:
            out.append(replace(s, pending_us=target))
    return out


def verified(state: ShardState) -> ShardState:
    """A pending raise made good, once the shard was found at its tip after it was written."""
    if state.pending_us is None:
        return state
    floor = state.pending_us if state.floor_us is None else max(state.floor_us, state.pending_us)
    return replace(state, floor_us=floor, pending_us=None)


# -- closing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CloseCursor:
    """Every window with `closes_at <= through_s` has had its result emitted; of those closing
    at `partial_s`, the accounts up to `partial_after` too."""

    through_s: int | None = None
    partial_s: int | None = None
    partial_after: str = ""
    version: int = 0

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> CloseCursor:
        if item is None:
            return cls()
        through = item.get("through_s")
        partial = item.get("partial_s")
        return cls(None if through is None else int(through),
                   None if partial is None else int(partial),
                   str(item.get("partial_after", "")), int(item.get("version", 0)))

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"account_id": BOOKKEEPING_PARTITION, "window_key": CURSOR_KEY,
                                "version": self.version}
        if self.through_s is not None:
            item["through_s"] = self.through_s
            item["through"] = iso_seconds(self.through_s)
        if self.partial_s is not None:
            item["partial_s"] = self.partial_s
            item["partial_after"] = self.partial_after
        return item


def due_key(start_s: int, shard_key: str, first_sequence: int, chunk: int) -> str:
    return f"{DUE_PREFIX}{iso_seconds(start_s)}#{shard_key}#{first_sequence}#{chunk}"


def due_items(config: WindowConfig, plan: BatchPlan, *, chunk_bytes: int = 300_000
              ) -> list[dict[str, Any]]:
    """The due lists of a batch: per shard and pane start, the accounts whose pane the batch
    touches, written before the panes so a closer can find every pane. Keyed by the batch's
    first record, so a retried batch rewrites the same items."""
    first: dict[str, int] = {}
    for r in plan.records:
        first[r.shard_key] = min(first.get(r.shard_key, r.sequence), r.sequence)
    out: list[dict[str, Any]] = []
    for shard_key, per_start in sorted(plan.due.items()):
        for start, accounts in per_start.items():
            chunks: list[list[str]] = [[]]
            size = 0
            for account in accounts:
                if size + len(account) + 1 > chunk_bytes and chunks[-1]:
                    chunks.append([])
                    size = 0
                chunks[-1].append(account)
                size += len(account) + 1
            for n, chunk in enumerate(chunks):
                out.append({
                    "account_id": BOOKKEEPING_PARTITION,
                    "window_key": due_key(start, shard_key, first.get(shard_key, 0), n),
                    "pane_start": iso_seconds(start),
                    "accounts": ",".join(chunk),
                    "expires_at": config.pane_closes_at_s(start) + config.retention_s,
                })
    return out


def due_accounts(items: Iterable[Mapping[str, Any]]) -> dict[int, set[str]]:
    """Pane start -> accounts, from due list items."""
    out: dict[int, set[str]] = {}
    for item in items:
        start = parse_seconds(str(item["pane_start"]))
        out.setdefault(start, set()).update(a for a in str(item["accounts"]).split(",") if a)
    return out


@dataclass(frozen=True, slots=True)
class DueWindow:
    account: str
    window: Window
    closes_at_s: int

    @property
    def group(self) -> tuple[int, str]:
        """The cursor moves over whole (closes_at, account) groups."""
        return (self.closes_at_s, self.account)


def due_windows(config: WindowConfig, cursor: CloseCursor, through_s: int,
                accounts: Mapping[int, set[str]]) -> list[DueWindow]:
    """Every (account, window) past the cursor, closing at or before `through_s`, that a pane
    of the account touches, in cursor order (closes_at, account, window)."""
    after = cursor.through_s
    found: dict[tuple[str, Window], DueWindow] = {}
    for start, who in accounts.items():
        for window in config.windows_of_pane(start):
            closes = config.closes_at_s(window)
            if closes > through_s or (after is not None and closes <= after):
                continue
            for account in who:
                if cursor.partial_s == closes and account <= cursor.partial_after:
                    continue
                found.setdefault((account, window), DueWindow(account, window, closes))
    return sorted(found.values(),
                  key=lambda d: (d.closes_at_s, d.account, d.window.end_s, d.window.name))


def take_due(due: Sequence[DueWindow], limit: int) -> list[DueWindow]:
    """A prefix of `due` of about `limit` windows ending on a group boundary (at least one
    whole group)."""
    if len(due) <= limit:
        return list(due)
    cut = max(1, limit)
    while cut < len(due) and due[cut].group == due[cut - 1].group:
        cut += 1
    return list(due[:cut])


def advance_cursor(cursor: CloseCursor, done: Sequence[DueWindow], due: Sequence[DueWindow],
                   through_s: int) -> CloseCursor:
    """The cursor after emitting `done`, a prefix of `due` made of whole groups."""
    if len(done) == len(due):
        return CloseCursor(through_s, None, "", cursor.version + 1)
    if not done:
        return cursor
    last = done[-1]
    return CloseCursor(last.closes_at_s - 1, last.closes_at_s, last.account,
                       cursor.version + 1)


def closed_event_id(account: str, window_key: str) -> str:
    return derive_event_id(account, f"window.closed/{window_key}")


def window_totals(config: WindowConfig, window: Window,
                  panes: Mapping[int, PaneState]) -> Totals:
    return merge_totals(panes[s].for_window(window) for s in config.panes_of(window)
                        if s in panes)


def closed_event(config: WindowConfig, account: str, window: Window, totals: Totals,
                 watermark: Watermark) -> Envelope:
    """The final result of one window: a function of its panes (and the watermark that closed
    it, for information), with an id from (account, window) only."""
    event_id = closed_event_id(account, window.key)
    end = datetime.fromtimestamp(window.end_s, UTC)
    result = WindowClosed(
        envelope=Envelope(
            event_id=event_id, type=WindowClosed.TYPE, version=WindowClosed.VERSION,
            key=account, occurred_at=end, data=MappingProxyType({}), correlation_id=event_id,
        ),
        account=account,
        window=window.name,
        window_key=window.key,
        start=datetime.fromtimestamp(window.start_s, UTC),
        end=end,
        closes_at=datetime.fromtimestamp(config.closes_at_s(window), UTC),
        totals=totals,
        payments=count_of(totals),
        closed_by=watermark.closed_by,
        watermark=None if watermark.watermark_us is None else from_us(watermark.watermark_us),
    )
    return replace(result.envelope, data=MappingProxyType(result.data()))


def late_event(side: Side, hits: Sequence[LateHit], config: WindowConfig) -> Envelope:
    """One `payment.late` per (payment, account side), naming every window it missed."""
    payment = side.payment
    ordered = sorted(hits, key=lambda h: h.window.key)
    watermark = max((w for w in (side.own_us, side.raised_us) if w is not None), default=None)
    missed = ", ".join(f"{h.window.key} ({_why(h)})" for h in ordered)
    shard_time = "unknown" if watermark is None else format_time(from_us(watermark))
    reason = (
        f"payment at {format_time(payment.envelope.occurred_at)} arrived after "
        f"{len(ordered)} of its windows closed (end + {config.allowed_lateness_s} s allowed "
        f"lateness): {missed}; the shard's watermark was {shard_time}"
    )
    counterparty = payment.payee if side.direction == "out" else payment.payer
    data: dict[str, Any] = {
        "account": side.account,
        "counterparty": counterparty,
        "direction": side.direction,
        "payment_event_id": payment.envelope.event_id,
        "amount_minor": payment.amount.amount_minor,
        "currency": payment.amount.currency,
        "windows": [
            {"window_key": h.window.key, "closes_at": iso_seconds(h.closes_at_s),
             "cause": h.cause}
            for h in ordered
        ],
        "watermark": shard_time if watermark is not None else None,
        "allowed_lateness_s": config.allowed_lateness_s,
        "reason": reason,
    }
    return derived_envelope(
        cause=payment.envelope,
        role=f"windows/late/{side.direction}",
        event_type=PaymentLate.TYPE,
        version=PaymentLate.VERSION,
        key=side.account,
        data=data,
    )


def _why(hit: LateHit) -> str:
    if hit.cause == "window_closed":
        return "the pipeline had gone idle past it"
    return f"closed at {iso_seconds(hit.closes_at_s)}"


# -- reading windows back --------------------------------------------------------------------


def window_rows(config: WindowConfig, account: str, panes: Sequence[PaneState],
                watermark: Watermark, *, complete_from_s: int | None = None
                ) -> list[dict[str, Any]]:
    """The windows an account's panes make, newest first, each `final` or `open` by the
    pipeline watermark. `complete_from_s`: panes before it were not read, so windows reaching
    before it are left out (None: every pane of the account was read)."""
    by_start = {p.start_s: p for p in panes}
    windows: set[Window] = set()
    for start in by_start:
        windows.update(config.windows_of_pane(start))
    rows = []
    for window in windows:
        if complete_from_s is not None and window.start_s < complete_from_s:
            continue
        totals = window_totals(config, window, by_start)
        if not totals:
            continue
        closes = config.closes_at_s(window)
        rows.append({
            "account_id": account,
            "window_key": window.key,
            "window": window.name,
            "window_start": iso_seconds(window.start_s),
            "window_end": iso_seconds(window.end_s),
            "closes_at": iso_seconds(closes),
            "status": "final" if watermark.final(closes) else "open",
            "totals": totals_item(totals),
            "payments": count_of(totals),
        })
    rows.sort(key=lambda r: (r["window_end"], r["window"]), reverse=True)
    return rows


__all__ = [
    "BOOKKEEPING_PARTITION",
    "HOPPING",
    "SHARDS_PARTITION",
    "TUMBLING",
    "BatchPlan",
    "CloseCursor",
    "Contribution",
    "DueWindow",
    "LateHit",
    "PaneModel",
    "PaneState",
    "ShardState",
    "Watermark",
    "Window",
    "WindowConfig",
    "WindowSpec",
    "advance_cursor",
    "classify",
    "closed_event",
    "closed_event_id",
    "commit_shard",
    "due_items",
    "due_windows",
    "idle_raises",
    "late_event",
    "pipeline_watermark",
    "plan_batch",
    "read_watermark",
    "take_due",
    "verified",
    "window_rows",
]
