"""windows: window assignment, lateness, the watermark rules, and effectively-once properties.

The pure domain is tested directly (boundaries, lateness, idleness, events). The properties run
the `windows` and `windows-close` handlers on in-memory ports with an injected clock: hypothesis
draws out-of-order payments (some sent twice by the producer), lays them on shards the way
Kinesis would, and delivers them in batches of random size with redeliveries, write and emit
failures followed by Lambda's retry from the lowest failed sequence number, and crashes after
the effects were applied. The final results must equal a reference computed directly from the
distinct on-time payments.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascata_runtime.envelope import Envelope, SourcePosition, parse_envelope
from cascata_runtime.ports import EmitFailure, OutRecord
from payments.domain.schemas import (
    PaymentLate,
    PaymentMade,
    WindowClosed,
    WindowTotals,
    parse_event,
)
from payments.domain.windows import (
    HOPPING as DEFAULT_HOPPING,
)
from payments.domain.windows import (
    TUMBLING as DEFAULT_TUMBLING,
)
from payments.domain.windows import (
    US,
    Contribution,
    LateHit,
    ShardState,
    Window,
    WindowConfig,
    WindowSpec,
    WindowState,
    apply_window,
    close_bound,
    closed_event,
    commit_shard,
    epoch_us,
    late_events,
    owns,
    plan_batch,
)
from payments.handlers import windows, windows_close
from tests.support.events import LambdaContext, kinesis_record, payment
from tests.support.fakes import MemoryObjects

CTX = LambdaContext("windows")
T0 = datetime(2020, 6, 25, 14, 0, tzinfo=UTC)
T0_S = int(T0.timestamp())
NOW = T0_S + 3600.0
"""The processors' wall clock in the properties: later than every event, constant."""
# One-minute tumbling and five-minute hopping windows every minute: finer and more overlapping
# than the defaults, so every rule shows on a few payments.
TUMBLING = WindowSpec("tumbling", size_s=60, advance_s=60)
HOPPING = WindowSpec("hopping", size_s=300, advance_s=60)
CONFIG = WindowConfig(windows=(TUMBLING, HOPPING))


def at(seconds: float) -> str:
    """RFC 3339 for T0 + seconds (millisecond precision)."""
    us = T0_S * US + round(seconds * US)
    dt = datetime.fromtimestamp(us // US, UTC).replace(microsecond=us % US)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{dt.microsecond // 1000:03d}Z" if dt.microsecond else "Z")


def made(event_id: str, seconds: float, *, payer: str = "alice", payee: str = "bob",
         amount: int = 100, currency: str = "USD") -> PaymentMade:
    env = parse_envelope(payment(event_id, payer=payer, payee=payee, amount_minor=amount,
                                 currency=currency, occurred_at=at(seconds)))
    assert isinstance(env, Envelope)
    event = parse_event(env)
    assert isinstance(event, PaymentMade)
    return event


def envelopes(*payments: PaymentMade) -> list[Envelope | Any]:
    return [p.envelope for p in payments]


def positions(n: int, *, shard: str = "shardId-000000000000", start: int = 1
              ) -> list[SourcePosition]:
    return [SourcePosition("validated", shard, str(start + i)) for i in range(n)]


# -- window assignment -----------------------------------------------------------------------


def test_the_defaults_are_a_minute_tumbling_and_five_minutes_hopping_by_the_minute() -> None:
    assert WindowConfig().windows == (DEFAULT_TUMBLING, DEFAULT_HOPPING)
    assert WindowSpec("tumbling", 300, 300) == DEFAULT_TUMBLING
    assert WindowSpec("hopping", 600, 300) == DEFAULT_HOPPING
    assert CONFIG.allowed_lateness_s == 30
    assert TUMBLING.tumbling and not HOPPING.tumbling


@pytest.mark.parametrize(
    ("seconds", "start"),
    [(360.0, 360), (360.000001, 360), (419.999999, 360), (420.0, 420), (-0.000001, -60)],
)
def test_a_tumbling_window_holds_its_start_and_not_its_end(seconds: float, start: int) -> None:
    t_us = T0_S * US + round(seconds * US)
    [window] = TUMBLING.covering(t_us)
    assert (window.start_s - T0_S, window.end_s - T0_S) == (start, start + 60)


def test_a_hopping_instant_belongs_to_size_over_advance_windows() -> None:
    t_us = (T0_S + 390) * US  # 14:06:30
    covering = HOPPING.covering(t_us)
    assert [(w.start_s - T0_S) // 60 for w in covering] == [2, 3, 4, 5, 6]
    assert all(w.start_s * US <= t_us < w.end_s * US for w in covering)
    # exactly on a boundary the window starting there is in, the one ending there is out
    on_edge = HOPPING.covering((T0_S + 360) * US)
    assert [(w.start_s - T0_S) // 60 for w in on_edge] == [2, 3, 4, 5, 6]


def test_uneven_hopping_windows_still_cover_exactly_the_instants_inside_them() -> None:
    spec = WindowSpec("odd", size_s=100, advance_s=30)
    for t in range(T0_S * US, (T0_S + 200) * US, 7_000_001):
        covering = spec.covering(t)
        assert all(w.start_s * US <= t < w.end_s * US for w in covering)
        assert len(covering) in (3, 4)


@pytest.mark.parametrize(
    "kwargs",
    [{"name": "Bad Name", "size_s": 60, "advance_s": 60},
     {"name": "w", "size_s": 0, "advance_s": 1},
     {"name": "w", "size_s": 60, "advance_s": 61},
     {"name": "w", "size_s": 60, "advance_s": 0}],
)
def test_impossible_window_specs_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        WindowSpec(**kwargs)


def test_window_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        WindowConfig(windows=(TUMBLING, WindowSpec("tumbling", 120, 60)))


def test_window_keys_sort_by_spec_then_time() -> None:
    keys = [Window("tumbling", T0_S + s, T0_S + s + 60).key for s in (600, 0, 60)]
    assert sorted(keys) == [
        "tumbling#2020-06-25T14:00:00Z", "tumbling#2020-06-25T14:01:00Z",
        "tumbling#2020-06-25T14:10:00Z",
    ]


# -- lateness --------------------------------------------------------------------------------


def contribution(p: PaymentMade, *, watermark_s: float | None, sequence: int = 1,
                 index: int = 0, shard: str = "0") -> Contribution:
    wm = None if watermark_s is None else T0_S * US + round(watermark_s * US)
    return Contribution(index, p, p.payer, "out", shard, sequence, wm)


def tumbling_state(start: int) -> WindowState:
    return WindowState.fresh("alice", Window("tumbling", T0_S + start, T0_S + start + 60), CONFIG)


def test_a_payment_is_late_exactly_when_the_watermark_reached_end_plus_lateness() -> None:
    state = tumbling_state(360)  # [14:06, 14:07), closes at 14:07:30
    p = made("p", 370)
    on_time = apply_window(state, [contribution(p, watermark_s=449.999999)], recent_ids=48)
    assert on_time.applied == (0,) and not on_time.late
    late = apply_window(state, [contribution(p, watermark_s=450)], recent_ids=48)
    assert late.applied == () and not late.changed
    [hit] = late.late
    assert hit.cause == "watermark_passed" and hit.closes_at_s == T0_S + 450


def test_out_of_order_within_the_lateness_is_counted_and_after_it_is_late() -> None:
    # Given payments read in this order: 14:07:20, 14:06:50 (early enough), 14:07:40, 14:06:55
    ps = [made("a", 440), made("b", 410), made("c", 460), made("d", 415)]
    plan = plan_batch(CONFIG, positions(4), envelopes(*ps), {})
    key = ("alice", "tumbling#2020-06-25T14:06:00Z")
    state = WindowState.fresh("alice", plan.windows[key], CONFIG)
    result = apply_window(state, plan.contributions[key], recent_ids=48)
    # Then b (watermark 14:07:20 < 14:07:30) counts and d (watermark 14:07:40) is late
    assert result.applied == (1,)
    assert [h.contribution.payment.envelope.event_id for h in result.late] == ["d"]
    assert result.state.totals["out"]["USD"] == WindowTotals(1, 100, 100, 100)


def test_a_closed_window_turns_every_new_payment_away_as_late_but_knows_its_own() -> None:
    p, q = made("p", 370), made("q", 371)
    counted = apply_window(tumbling_state(360), [contribution(p, watermark_s=None)],
                           recent_ids=48).state
    final = counted.freeze(closed_by="schedule", watermark_us=None, now_s=NOW).finalize()
    again = apply_window(final, [contribution(p, watermark_s=None, sequence=9)], recent_ids=48)
    assert again.duplicates == (0,) and not again.late  # the same payment: not late, known
    other = apply_window(final, [contribution(q, watermark_s=None, sequence=9)], recent_ids=48)
    assert [h.cause for h in other.late] == ["window_closed"] and other.state is final


def test_redeliveries_and_duplicates_are_applied_once() -> None:
    p, q = made("p", 370, amount=5), made("q", 372, amount=7)
    first = apply_window(tumbling_state(360), [contribution(p, watermark_s=None, sequence=3)],
                         recent_ids=48)
    batch = [contribution(p, watermark_s=None, sequence=3, index=0),   # redelivered
             contribution(p, watermark_s=None, sequence=8, index=1),   # producer duplicate
             contribution(q, watermark_s=None, sequence=9, index=2)]
    second = apply_window(first.state, batch, recent_ids=48)
    assert (second.redelivered, second.duplicates, second.applied) == ((0,), (1,), (2,))
    assert second.state.totals["out"]["USD"] == WindowTotals(2, 12, 5, 7)
    assert second.state.fences == {"0": 9} and second.state.version == 2


def test_the_plan_starts_from_the_committed_watermark_and_skips_committed_records() -> None:
    stored = ShardState("validated", "shardId-000000000000", fence=2,
                        watermark_us=(T0_S + 460) * US, seen_at_s=NOW, version=3)
    ps = [made("a", 1), made("b", 2), made("c", 415)]
    plan = plan_batch(CONFIG, positions(3), envelopes(*ps), {stored.key: stored})
    assert plan.committed == (0, 1)
    key = ("alice", "tumbling#2020-06-25T14:06:00Z")
    [c] = plan.contributions[key]
    assert c.watermark_us == (T0_S + 460) * US  # so c is late, as it was before any retry


def test_the_shard_commits_up_to_the_first_failed_record_only() -> None:
    ps = [made("a", 100), made("b", 300), made("c", 200)]
    plan = plan_batch(CONFIG, positions(3, start=10), envelopes(*ps), {})
    state = plan.shards["validated/shardId-000000000000"]
    new = commit_shard(CONFIG, state, plan.records, failed={1}, now_s=NOW)
    assert new is not None
    assert (new.fence, new.watermark_us) == (10, (T0_S + 100) * US)
    whole = commit_shard(CONFIG, state, plan.records, failed=(), now_s=NOW)
    assert whole is not None and (whole.fence, whole.watermark_us) == (12, (T0_S + 300) * US)
    # nothing new and recently seen: no write at all
    assert commit_shard(CONFIG, whole, [], failed=(), now_s=NOW + 1) is None


def test_invalid_records_are_planned_for_quarantine_and_do_not_move_the_watermark() -> None:
    bad = parse_envelope(payment("x", amount_minor=0, occurred_at=at(900)))
    assert isinstance(bad, Envelope)
    plan = plan_batch(CONFIG, positions(2), [bad, made("ok", 10).envelope], {})
    assert [(i, r.code) for i, r in plan.rejected] == [(0, "amount_out_of_range")]
    assert plan.records[0].event_us is None
    [c] = plan.contributions[("alice", "tumbling#2020-06-25T14:00:00Z")]
    assert c.watermark_us is None


# -- closing ---------------------------------------------------------------------------------


def shard(n: int, watermark_s: float | None, seen_at: float) -> ShardState:
    wm = None if watermark_s is None else (T0_S + round(watermark_s)) * US
    return ShardState("validated", f"shardId-00000000000{n}", 5, wm, seen_at, 1)


def test_the_pipeline_watermark_is_the_minimum_over_active_shards() -> None:
    bound = close_bound(CONFIG, [shard(0, 500, NOW), shard(1, 450, NOW - 5)], now_s=NOW)
    assert bound.bound_us == (T0_S + 450) * US and bound.wall_us is None
    assert bound.allows(T0_S + 450) and not bound.allows(T0_S + 451)
    assert bound.closed_by(T0_S + 450) == "watermark"


def test_an_idle_shard_stops_holding_the_watermark_back() -> None:
    bound = close_bound(CONFIG, [shard(0, 900, NOW), shard(1, 10, NOW - 61)], now_s=NOW)
    assert bound.bound_us == (T0_S + 900) * US
    assert bound.active == ("validated/shardId-000000000000",)


def test_an_active_shard_without_a_watermark_closes_nothing() -> None:
    bound = close_bound(CONFIG, [shard(0, 900, NOW), shard(1, None, NOW)], now_s=NOW)
    assert bound.bound_us is None and not bound.allows(0)


def test_when_every_shard_is_idle_the_wall_clock_minus_the_grace_closes() -> None:
    later = T0_S + 10_000.0
    bound = close_bound(CONFIG, [shard(0, 400, NOW), shard(1, 300, NOW)], now_s=later)
    assert bound.bound_us == int((later - 60) * US)
    assert bound.closed_by(T0_S + 300) == "watermark"
    assert bound.closed_by(T0_S + 301) == "schedule"
    # with no shard at all, only the wall clock
    assert close_bound(CONFIG, [], now_s=later).bound_us == int((later - 60) * US)


def test_the_active_shards_share_the_closing_work_without_overlap() -> None:
    active = ("s/0", "s/1", "s/2")
    for account in (f"acct-{i}" for i in range(200)):
        assert sum(owns(account, k, active) for k in active) == 1
    assert owns("anyone", "s/9", active)  # a shard that is not active yet takes everything


def test_the_final_result_is_a_function_of_the_frozen_item() -> None:
    state = apply_window(
        tumbling_state(360),
        [contribution(made("p", 370, amount=250), watermark_s=None),
         contribution(made("q", 375, amount=50, currency="EUR"), watermark_s=None,
                      sequence=2, index=1)],
        recent_ids=48,
    ).state
    with pytest.raises(ValueError, match="not frozen"):
        closed_event(state)
    frozen = state.freeze(closed_by="watermark", watermark_us=(T0_S + 451) * US, now_s=NOW)
    assert frozen.freeze(closed_by="schedule", watermark_us=None, now_s=NOW + 9) is frozen
    event = closed_event(frozen)
    assert event == closed_event(frozen.finalize())
    assert event == closed_event(WindowState.from_item(copy.deepcopy(frozen.to_item())))
    parsed = parse_event(parse_envelope(json.loads(event.to_bytes())))  # type: ignore[arg-type]
    assert isinstance(parsed, WindowClosed)
    assert parsed.totals["out"]["USD"] == WindowTotals(1, 250, 250, 250)
    assert parsed.totals["out"]["EUR"] == WindowTotals(1, 50, 50, 50)
    assert (parsed.payments, parsed.closed_by, event.key) == (2, "watermark", "alice")
    assert event.occurred_at == datetime(2020, 6, 25, 14, 7, tzinfo=UTC)


def test_a_late_payment_names_every_window_it_missed_and_why() -> None:
    ps = [made("a", 460), made("late-one", 415, amount=99)]
    plan = plan_batch(CONFIG, positions(2), envelopes(*ps), {})
    hits: list[LateHit] = []
    for key, contributions in plan.contributions.items():
        state = WindowState.fresh(key[0], plan.windows[key], CONFIG)
        hits.extend(apply_window(state, contributions, recent_ids=48).late)
    [(i1, out), (i2, into)] = late_events(hits, CONFIG)
    assert (i1, i2) == (1, 1) and (out.key, into.key) == ("alice", "bob")
    parsed = parse_event(parse_envelope(json.loads(out.to_bytes())))  # type: ignore[arg-type]
    assert isinstance(parsed, PaymentLate)
    assert [w.window_key for w in parsed.windows] == [
        "hopping#2020-06-25T14:02:00Z", "tumbling#2020-06-25T14:06:00Z"]
    assert {w.cause for w in parsed.windows} == {"watermark_passed"}
    assert parsed.watermark == datetime(2020, 6, 25, 14, 7, 40, tzinfo=UTC)
    assert (parsed.direction, parsed.counterparty, parsed.amount.amount_minor) == ("out", "bob", 99)
    assert "14:07:30Z" in parsed.reason and "30 s allowed lateness" in parsed.reason
    # deterministic: derived from the payment id and the side, the same on every redelivery
    assert out.event_id == late_events(hits, CONFIG)[0][1].event_id != into.event_id
    assert out.correlation_id == "late-one"


def test_items_survive_a_round_trip_through_their_stored_form() -> None:
    state = apply_window(tumbling_state(360), [contribution(made("p", 370), watermark_s=None,
                                                            sequence=10**55)], recent_ids=48)
    item = state.state.to_item()
    assert item["fences"] == {"0": str(10**55)}  # 56 digits: more than a DynamoDB number holds
    assert WindowState.from_item(item) == state.state


# -- properties through the handlers ---------------------------------------------------------


class Crash(BaseException):
    """The function dies (timeout, out of memory) after some of its effects were applied."""


class MemoryWindowStore:
    """activity-view in memory: composite keys, version guards, the open-by-close index."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail_accounts: set[str] = set()
        self.crash_on_shard_write = False
        self.writes = 0
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[tuple[str, str]]) -> Mapping[tuple[str, str], Any]:
        with self._lock:
            return {k: copy.deepcopy(self.items[k]) for k in keys if k in self.items}

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        with self._lock:
            key = (str(item["account_id"]), str(item["window_key"]))
            if key[0] in self.fail_accounts:
                raise RuntimeError(f"injected write failure for {key[0]}")
            if key[0] == "#shards" and self.crash_on_shard_write:
                raise Crash
            self.writes += 1
            current = self.items.get(key)
            if (None if current is None else int(current["version"])) != expected_version:
                return False
            self.items[key] = copy.deepcopy(dict(item))
            return True

    def partition(self, account_id: str) -> list[Mapping[str, Any]]:
        with self._lock:
            return [copy.deepcopy(v) for k, v in sorted(self.items.items()) if k[0] == account_id]

    def due(self, status: str, closes_at_max: str | None, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            found = sorted(
                (v.get("closes_at", ""), k) for k, v in self.items.items()
                if v.get("status") == status
                and (closes_at_max is None or v["closes_at"] <= closes_at_max)
            )
            return [k for _, k in found[:limit]]


class FlakySink:
    """Streams in memory; emits to a failing partition key fail, as PutRecords entries do."""

    def __init__(self) -> None:
        self.records: dict[str, list[OutRecord]] = defaultdict(list)
        self.fail_keys: set[str] = set()

    def emit(self, stream: str, records: Sequence[OutRecord]) -> list[EmitFailure]:
        failures = [EmitFailure(r.tag, "injected") for r in records
                    if r.partition_key in self.fail_keys]
        bad = {f.tag for f in failures}
        self.records[stream].extend(r for r in records if r.tag not in bad)
        return failures

    def events(self, stream: str) -> list[dict[str, Any]]:
        return [json.loads(r.data) for r in self.records[stream]]


class Harness:
    def __init__(self) -> None:
        self.store = MemoryWindowStore()
        self.sink = FlakySink()
        self.handle = windows.make_handler(windows.Dependencies(
            activity_stream="activity", late_stream="activity-late", quarantine_bucket="q",
            store=self.store, sink=self.sink, objects=MemoryObjects(), now=lambda: NOW,
            config=CONFIG,
        ))

    def close_all(self, now: float = NOW + 86_400) -> dict[str, Any]:
        closer = windows_close.make_handler(windows_close.Dependencies(
            activity_stream="activity", store=self.store, sink=self.sink, now=lambda: now,
            config=CONFIG,
        ))
        summary: dict[str, Any] = closer({}, LambdaContext("windows-close"))
        return summary

    def finals(self) -> dict[tuple[str, str], dict[str, dict[str, tuple[int, int, int, int]]]]:
        out = {}
        for (account, wkey), item in self.store.items.items():
            if account == "#shards":
                continue
            assert item["status"] == "final", (account, wkey, item["status"])
            out[(account, wkey)] = {
                d: {c: (t["count"], t["sum_minor"], t["min_minor"], t["max_minor"])
                    for c, t in per.items()}
                for d, per in item["totals"].items()
            }
        return out


ACCOUNTS = ["alice", "bob", "carol", "dave"]


@st.composite
def out_of_order_payments(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Payments whose event times mostly advance, some delayed by up to 3 minutes (late or
    within the lateness), and producer duplicates sent again a little later."""
    n = draw(st.integers(1, 30))
    clock = 0.0
    out = []
    for i in range(n):
        clock += draw(st.floats(0, 40, allow_nan=False))
        delay = draw(st.sampled_from([0.0, 0.0, 0.0, 10.0, 45.0, 95.0, 180.0]))
        payer = draw(st.sampled_from(ACCOUNTS))
        payee = draw(st.sampled_from([a for a in ACCOUNTS if a != payer]))
        out.append(payment(f"p{i}", payer=payer, payee=payee,
                           amount_minor=draw(st.integers(1, 10**6)),
                           currency=draw(st.sampled_from(["USD", "EUR"])),
                           occurred_at=at(round(max(0.0, clock - delay), 3))))
    for d in draw(st.lists(st.integers(0, n - 1), max_size=6)):
        out.insert(min(len(out), d + draw(st.integers(1, 5))), out[d])
    return out


def lay_out(sent: list[dict[str, Any]], shards: int) -> dict[str, list[dict[str, Any]]]:
    """The validated stream as Lambda reads it: keyed by payer, in order per shard."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in sent:
        sid = f"shardId-00000000000{zlib.crc32(obj['key'].encode()) % shards}"
        out[sid].append(kinesis_record(obj, sequence=len(out[sid]) + 1, partition_key=obj["key"],
                                       shard=sid, stream="validated"))
    return out


def t_us(obj: Mapping[str, Any]) -> int:
    env = parse_envelope(obj)
    assert isinstance(env, Envelope)
    return epoch_us(env.occurred_at)


def sides(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(obj["data"]["payer"], "out"), (obj["data"]["payee"], "in")]


def reference(shards: Mapping[str, list[dict[str, Any]]]) -> tuple[
    dict[tuple[str, str], dict[str, dict[str, tuple[int, int, int, int]]]],
    dict[tuple[str, str], set[str]],
]:
    """Final results and late windows from the distinct payments, each judged once, at its
    first occurrence, against its shard's watermark just before it."""
    counted: dict[tuple[str, str], dict[str, dict[str, list[int]]]] = defaultdict(
        lambda: defaultdict(dict))
    late: dict[tuple[str, str], set[str]] = defaultdict(set)
    seen: set[str] = set()
    for records in shards.values():
        watermark: int | None = None
        for record in records:
            obj = json.loads(base64.b64decode(record["kinesis"]["data"]))
            t = t_us(obj)
            if obj["event_id"] not in seen:
                seen.add(obj["event_id"])
                for account, direction in sides(obj):
                    for w in CONFIG.windows_for(t):
                        if watermark is not None and CONFIG.closes_at_s(w) * US <= watermark:
                            late[(obj["event_id"], direction)].add(w.key)
                            continue
                        agg = counted[(account, w.key)][direction]
                        amount, cur = obj["data"]["amount_minor"], obj["data"]["currency"]
                        c, s, lo, hi = agg.get(cur, [0, 0, amount, amount])
                        agg[cur] = [c + 1, s + amount, min(lo, amount), max(hi, amount)]
            watermark = t if watermark is None else max(watermark, t)
    finals = {k: {d: {c: (v[0], v[1], v[2], v[3]) for c, v in per.items()}
                  for d, per in dirs.items()} for k, dirs in counted.items()}
    return finals, dict(late)


def deliver(h: Harness, records: list[dict[str, Any]], pos: int, schedule: st.DataObject,
            delivered: list[list[dict[str, Any]]]) -> int:
    """One delivery from `pos` with random faults; returns the next position to read."""
    size = schedule.draw(st.integers(1, 8), label="batch size")
    batch = records[pos : pos + size]
    h.store.fail_accounts = schedule.draw(st.sets(st.sampled_from(ACCOUNTS), max_size=1),
                                          label="failing writes")
    h.sink.fail_keys = schedule.draw(st.sets(st.sampled_from(ACCOUNTS), max_size=1),
                                     label="failing emits")
    h.store.crash_on_shard_write = schedule.draw(st.integers(0, 9), label="crash") == 9
    try:
        response = h.handle({"Records": batch}, CTX)
    except Crash:
        response = None  # Lambda retries the whole batch
    finally:
        h.store.fail_accounts, h.sink.fail_keys = set(), set()
        h.store.crash_on_shard_write = False
    delivered.append(batch)
    if response is None:
        return pos
    failed = [int(f["itemIdentifier"]) for f in response["batchItemFailures"]]
    if failed:
        # Lambda checkpoints before the lowest failure and retries from it
        lowest = min(failed)
        return next(i for i, r in enumerate(records)
                    if int(r["kinesis"]["sequenceNumber"]) == lowest)
    return pos + len(batch)


def redeliver_maybe(h: Harness, schedule: st.DataObject,
                    delivered: list[list[dict[str, Any]]]) -> None:
    redeliver: bool = bool(delivered) and schedule.draw(st.booleans(), label="redeliver")
    if redeliver:
        again = schedule.draw(st.sampled_from(delivered), label="which batch")
        assert h.handle({"Records": again}, CTX) == {"batchItemFailures": []}


def totals_of(closed: Mapping[str, Any]) -> dict[str, dict[str, tuple[int, int, int, int]]]:
    return {d: {c: (t["count"], t["sum_minor"], t["min_minor"], t["max_minor"])
                for c, t in per.items()} for d, per in closed["data"]["totals"].items()}


def unique_by_id(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for e in events:
        by_id.setdefault(e["event_id"], e)
    return by_id


@settings(max_examples=60, deadline=None)
@given(sent=out_of_order_payments(), schedule=st.data())
def test_final_results_equal_the_reference_whatever_the_redeliveries(
    sent: list[dict[str, Any]], schedule: st.DataObject
) -> None:
    # Given one shard: every payment's lateness is decided by one, deterministic watermark
    h = Harness()
    [records] = lay_out(sent, shards=1).values()
    pos = 0
    delivered: list[list[dict[str, Any]]] = []
    while pos < len(records):
        pos = deliver(h, records, pos, schedule, delivered)
        redeliver_maybe(h, schedule, delivered)
    # When every window is closed by the schedule once the stream went quiet
    h.close_all()
    # Then the final items equal the reference computed from the distinct on-time payments
    expected, expected_late = reference({"shardId-000000000000": records})
    assert h.finals() == expected
    # and each final result was emitted under one id, always with the same content
    closed = h.sink.events("activity")
    by_id = unique_by_id(closed)
    assert all(e == by_id[e["event_id"]] for e in closed)
    assert {(e["key"], e["data"]["window_key"]) for e in by_id.values()} == set(expected)
    for e in by_id.values():
        assert totals_of(e) == expected[(e["key"], e["data"]["window_key"])]
    # and every late payment is on the side output, with exactly the windows it missed
    late = unique_by_id(h.sink.events("activity-late"))
    got_late = {(e["data"]["payment_event_id"], e["data"]["direction"]):
                {w["window_key"] for w in e["data"]["windows"]} for e in late.values()}
    assert got_late == expected_late
    assert len(late) == len(got_late)  # one late event per payment and side


@settings(max_examples=40, deadline=None)
@given(sent=out_of_order_payments(), schedule=st.data())
def test_across_shards_every_payment_is_counted_once_or_reported_late(
    sent: list[dict[str, Any]], schedule: st.DataObject
) -> None:
    # Given two shards read in an arbitrary interleaving: a payee's windows hear from both,
    # so which payments are late depends on the interleaving, but none is lost or doubled
    h = Harness()
    laid = lay_out(sent, shards=2)
    cursors = dict.fromkeys(laid, 0)
    delivered: list[list[dict[str, Any]]] = []
    while any(cursors[s] < len(laid[s]) for s in laid):
        sid = schedule.draw(st.sampled_from(sorted(s for s in laid if cursors[s] < len(laid[s]))),
                            label="shard")
        cursors[sid] = deliver(h, laid[sid], cursors[sid], schedule, delivered)
        redeliver_maybe(h, schedule, delivered)
    h.close_all()
    finals = h.finals()
    late = unique_by_id(h.sink.events("activity-late"))
    # Then per window, direction and currency: counted + reported late == distinct payments
    missed: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for e in late.values():
        d = e["data"]
        for w in d["windows"]:
            agg = missed[(d["account"], w["window_key"], d["direction"], d["currency"])]
            agg[0] += 1
            agg[1] += d["amount_minor"]
    truth: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for obj in unique_by_id(sent).values():
        for account, direction in sides(obj):
            for w in CONFIG.windows_for(t_us(obj)):
                agg = truth[(account, w.key, direction, obj["data"]["currency"])]
                agg[0] += 1
                agg[1] += obj["data"]["amount_minor"]
    counted: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (account, wkey), per_direction in finals.items():
        for direction, per_currency in per_direction.items():
            for currency, (count, total, _lo, _hi) in per_currency.items():
                counted[(account, wkey, direction, currency)] = [count, total]
    for key, (count, total) in truth.items():
        assert [counted[key][0] + missed[key][0], counted[key][1] + missed[key][1]] == [
            count, total], key
    assert set(counted) | set(missed) <= set(truth)
    # and one final result per window, identical whenever it was emitted again, and equal to
    # the final item (which nothing changes once the result is out)
    closed = h.sink.events("activity")
    by_id = unique_by_id(closed)
    assert all(e == by_id[e["event_id"]] for e in closed)
    assert {(e["key"], e["data"]["window_key"]): totals_of(e) for e in by_id.values()} == finals


def test_the_reference_property_catches_a_double_count() -> None:
    # Guard: without the recent ids a producer duplicate at a new position counts twice, so
    # the property above really depends on them.
    p = made("p", 370)
    twice = [contribution(p, watermark_s=None, sequence=1, index=0),
             contribution(p, watermark_s=None, sequence=2, index=1)]
    kept = apply_window(tumbling_state(360), twice, recent_ids=48).state
    assert kept.totals["out"]["USD"].count == 1
    first = apply_window(tumbling_state(360), twice[:1], recent_ids=0).state
    forgot = apply_window(first, twice[1:], recent_ids=0).state
    assert forgot.totals["out"]["USD"].count == 2


def test_active_processors_share_the_closing_and_the_schedule_closes_the_rest() -> None:
    # Given two active shards whose watermarks both passed 14:07:30
    h = Harness()
    s0, s1 = "shardId-000000000000", "shardId-000000000001"
    accounts = [f"acct-{i}" for i in range(12)]

    def send(shard: str, seq: int, objs: list[dict[str, Any]]) -> None:
        records = [kinesis_record(o, sequence=seq + n, partition_key=o["key"], shard=shard,
                                  stream="validated") for n, o in enumerate(objs)]
        assert h.handle({"Records": records}, CTX) == {"batchItemFailures": []}

    send(s1, 1, [payment("far", payer="zed", payee="yan", occurred_at=at(600))])
    send(s0, 1, [payment(f"q{i}", payer=a, payee="zed", occurred_at=at(370))
                 for i, a in enumerate(accounts)])
    # When shard 0's next batch moves its watermark past the close too
    send(s0, 20, [payment("tick", payer="zed", payee="yan", occurred_at=at(600))])
    # Then its processor closed only the windows of the accounts it owns
    active = ("validated/" + s0, "validated/" + s1)
    mine = {a for a in accounts if owns(a, active[0], active)}
    assert 0 < len(mine) < len(accounts)
    tumbling = "tumbling#2020-06-25T14:06:00Z"
    status = {a: h.store.items[(a, tumbling)]["status"] for a in accounts}
    assert {a for a, s in status.items() if s == "final"} == mine
    # and the schedule, with both shards still active, closes the others by the watermark
    summary = h.close_all(now=NOW + 10)
    assert summary["watermark"] == "2020-06-25T14:10:00Z"
    assert all(h.store.items[(a, tumbling)]["status"] == "final" for a in accounts)
    assert h.store.items[("zed", "tumbling#2020-06-25T14:10:00Z")]["status"] == "open"


# -- shards not seen yet ---------------------------------------------------------------------

S0, S1 = "shardId-000000000000", "shardId-000000000001"


def registered(n: int, watermark_s: float | None, seen_at: float, *,
               since: float | None = None) -> ShardState:
    return replace(shard(n, watermark_s, seen_at), registered_at_s=seen_at if since is None
                   else since)


def test_an_expected_shard_never_seen_holds_the_close_back_until_it_is_idle() -> None:
    expected = ["validated/" + S0, "validated/" + S1]
    seen = [registered(0, 900, NOW)]
    bound = close_bound(CONFIG, seen, now_s=NOW, expected=expected)
    assert bound.bound_us is None and bound.waiting == ("validated/" + S1,)
    # even when every known shard is idle, the wall clock does not close for it either
    assert close_bound(CONFIG, [registered(0, 900, NOW - 30)], now_s=NOW + 29,
                       expected=expected).bound_us is None
    # idle_after_s after its stream's first registration, it stops blocking
    later = close_bound(CONFIG, [registered(0, 900, NOW + 60, since=NOW)], now_s=NOW + 60,
                        expected=expected)
    assert later.bound_us == (T0_S + 900) * US and later.waiting == ()
    # without expectations (Kafka, or no listing), today's rule
    assert close_bound(CONFIG, seen, now_s=NOW).bound_us == (T0_S + 900) * US


def test_the_peers_a_shard_item_stores_are_expected_by_every_closer() -> None:
    plan = plan_batch(CONFIG, positions(1), envelopes(made("a", 900)), {})
    state = plan.shards["validated/" + S0]
    new = commit_shard(CONFIG, state, plan.records, (), now_s=NOW, peers=[S1, S0])
    assert new is not None and new.peers == (S0, S1) and new.registered_at_s == NOW
    again = ShardState.from_item(new.to_item())
    assert again == new
    # `windows-close` passes no expectation: the stored peers are enough
    assert close_bound(CONFIG, [again], now_s=NOW + 1).waiting == ("validated/" + S1,)
    # a later commit keeps the first registration and, unlisted, the stored peers
    later = commit_shard(CONFIG, again, (), (), now_s=NOW + 100)
    assert later is not None and later.registered_at_s == NOW and later.peers == (S0, S1)


class FakeShardLister:
    """The source stream's shards, as `ListShards` would give them."""

    def __init__(self, shards: Sequence[str], *, closed: Sequence[str] = ()) -> None:
        self.shards = [windows.ListedShard(s, True) for s in shards]
        self.shards += [windows.ListedShard(s, False) for s in closed]
        self.calls: list[str] = []

    def list_shards(self, stream_arn: str) -> Sequence[windows.ListedShard]:
        self.calls.append(stream_arn)
        return self.shards


class TwoShards:
    """The processor on a two-shard stream with a settable clock, the schedule alongside."""

    def __init__(self, lister: Any) -> None:
        self.store = MemoryWindowStore()
        self.sink = FlakySink()
        self.now = NOW
        self.lister = lister
        self.handle = windows.make_handler(windows.Dependencies(
            activity_stream="activity", late_stream="activity-late", quarantine_bucket="q",
            store=self.store, sink=self.sink, objects=MemoryObjects(),
            now=lambda: self.now, config=CONFIG, shard_lister=lister,
        ))

    def send(self, shard_id: str, seq: int, objs: Sequence[Mapping[str, Any]]) -> None:
        records = [kinesis_record(o, sequence=seq + n, partition_key=str(o["key"]),
                                  shard=shard_id, stream="validated")
                   for n, o in enumerate(objs)]
        assert self.handle({"Records": records}, CTX) == {"batchItemFailures": []}

    def schedule(self) -> dict[str, Any]:
        closer = windows_close.make_handler(windows_close.Dependencies(
            activity_stream="activity", store=self.store, sink=self.sink,
            now=lambda: self.now, config=CONFIG,
        ))
        summary: dict[str, Any] = closer({}, LambdaContext("windows-close"))
        return summary

    def statuses(self) -> set[str]:
        return {v["status"] for k, v in self.store.items.items() if k[0] != "#shards"}


def minutes(prefix: str, count: int, *, payer: str, payee: str) -> list[dict[str, Any]]:
    """One payment every 30 s from T0, as a shard's first batch would hold them."""
    return [payment(f"{prefix}{i}", payer=payer, payee=payee, occurred_at=at(30 * i))
            for i in range(count)]


def test_the_first_shard_to_deliver_does_not_close_windows_the_other_still_feeds() -> None:
    # Given a two-shard stream whose shard 0 delivers six minutes of payments first
    h = TwoShards(FakeShardLister([S0, S1]))
    h.send(S0, 1, minutes("a", 13, payer="alice", payee="bob"))
    # Then no window closed, by the processor or by the schedule, while shard 1 is unseen
    assert h.statuses() == {"open"}
    h.now += 30
    assert h.schedule()["frozen"] == 0 and h.statuses() == {"open"}
    # When shard 1 delivers the same minutes for the same payee
    h.send(S1, 1, minutes("b", 13, payer="carol", payee="bob"))
    # Then nothing of shard 1 is late, and the windows both watermarks passed close (the
    # processor of shard 1 closes its share of the accounts, the schedule the rest)
    assert h.sink.events("activity-late") == []
    assert h.schedule()["watermark"] == "2020-06-25T14:06:00Z"
    closed = {e["key"] + " " + e["data"]["window_key"]: e for e in h.sink.events("activity")}
    bob = closed["bob tumbling#2020-06-25T14:00:00Z"]
    assert bob["data"]["totals"]["in"]["USD"]["count"] == 4  # two payments of each shard
    assert "open" in h.statuses()  # the last minutes wait for later payments
    assert h.lister.calls and h.lister.calls[0].endswith(":stream/validated")


def test_an_empty_shard_stops_holding_the_close_back_after_idle_after_s() -> None:
    # Given a two-shard stream whose shard 1 never gets a record
    h = TwoShards(FakeShardLister([S0, S1]))
    h.send(S0, 1, minutes("a", 13, payer="alice", payee="bob"))
    h.now += CONFIG.idle_after_s - 1
    h.send(S0, 20, [payment("tick", payer="alice", payee="bob", occurred_at=at(400))])
    assert h.statuses() == {"open"}
    # When idle_after_s has passed since shard 0 was first seen
    h.now += 1
    h.send(S0, 21, [payment("tock", payer="alice", payee="bob", occurred_at=at(401))])
    # Then shard 0's watermark alone closes, as for any idle shard
    closed = {e["data"]["window_key"] for e in h.sink.events("activity")}
    assert "tumbling#2020-06-25T14:00:00Z" in closed
    assert h.sink.events("activity-late") == []


def test_a_closed_shard_counts_only_if_it_was_registered() -> None:
    # Given a stream resharded from shard 9 (closed, never seen here) to shards 0 and 1
    h = TwoShards(FakeShardLister([S0, S1], closed=["shardId-000000000009"]))
    h.send(S0, 1, minutes("a", 3, payer="alice", payee="bob"))
    item = h.store.items[("#shards", "validated/" + S0)]
    assert item["peers"] == "0,1"
