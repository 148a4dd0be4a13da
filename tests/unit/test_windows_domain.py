"""The pure pane domain of `windows`: panes and windows, watermarks, lateness, closing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from cascata_runtime.effects import Emission
from cascata_runtime.envelope import Envelope, SourcePosition, parse_envelope
from cascata_runtime.lineage import Lineage
from cascata_runtime.state import StateEngine
from payments.domain.windows import (
    US,
    CloseCursor,
    PaneKey,
    PaneModel,
    PaneState,
    ShardState,
    Window,
    WindowConfig,
    WindowSpec,
    advance_cursor,
    classify,
    commit_shard,
    count_of,
    due_items,
    due_windows,
    epoch_us,
    idle_raises,
    pane_key,
    parse_seconds,
    pipeline_watermark,
    plan_batch,
    read_watermark,
    take_due,
    verified,
    window_rows,
    window_totals,
)
from tests.support.events import payment

CONFIG = WindowConfig()
STREAM = "validated"
SHARD = "shardId-000000000000"


def t(hms: str) -> int:
    """Epoch seconds of 2020-06-25T<hms>Z."""
    return parse_seconds(f"2020-06-25T{hms}Z")


def us(hms: str) -> int:
    return t(hms) * US


def envelope(event_id: str, hms: str, **kwargs: Any) -> Envelope:
    parsed = parse_envelope(payment(event_id, occurred_at=f"2020-06-25T{hms}Z", **kwargs))
    assert isinstance(parsed, Envelope)
    return parsed


def pos(sequence: int) -> SourcePosition:
    return SourcePosition(STREAM, SHARD, str(sequence))


class MemoryPanes:
    """activity-view's pane items in memory, with the adapter's conditional write."""

    def __init__(self) -> None:
        self.items: dict[PaneKey, dict[str, Any]] = {}

    def get_many(self, keys: Sequence[PaneKey]) -> dict[PaneKey, dict[str, Any]]:
        return {k: dict(self.items[k]) for k in keys if k in self.items}

    def key_attributes(self, key: PaneKey) -> dict[str, Any]:
        return {"account_id": key[0], "window_key": key[1]}

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        key = (str(item["account_id"]), str(item["window_key"]))
        current = self.items.get(key)
        if (None if current is None else int(current["version"])) != expected_version:
            return False
        self.items[key] = dict(item)
        return True


def plan(events: Sequence[Envelope], shards: dict[str, ShardState] | None = None, *,
         start: int = 1, arrival: float = 0.0, shard: str = SHARD) -> Any:
    positions = [SourcePosition(STREAM, shard, str(start + n)) for n in range(len(events))]
    lineages = [Lineage(p, (), start) for p in positions]
    return plan_batch(CONFIG, positions, [arrival] * len(events), list(events), lineages,
                      shards or {})


# -- panes and windows -----------------------------------------------------------------------


def test_a_pane_is_the_smallest_advance_and_windows_are_merges_of_panes() -> None:
    # Given the defaults: tumbling 5 min, hopping 10 min every 5 min
    # Then the pane is 5 min; a tumbling window is one pane, a hopping window two
    assert CONFIG.pane_s == 300
    assert CONFIG.panes_of(Window("tumbling", t("14:05:00"), t("14:10:00"))) == (t("14:05:00"),)
    assert CONFIG.panes_of(Window("hopping", t("14:00:00"), t("14:10:00"))) == (
        t("14:00:00"), t("14:05:00"))
    # and the pane 14:05 is covered by three windows, ordered by when they close
    assert [w.key for w in CONFIG.windows_of_pane(t("14:05:00"))] == [
        "hopping#2020-06-25T14:00:00Z", "tumbling#2020-06-25T14:05:00Z",
        "hopping#2020-06-25T14:05:00Z",
    ]
    assert CONFIG.pane_closes_at_s(t("14:05:00")) == t("14:15:30")


def test_window_sizes_must_be_multiples_of_the_pane() -> None:
    with pytest.raises(ValueError, match="multiples"):
        WindowConfig(windows=(WindowSpec("a", 300, 300), WindowSpec("b", 420, 420)))


def test_a_pane_item_round_trips_and_stays_small() -> None:
    # Given a pane with on-time payments in two currencies both ways and one tail payment
    end = t("14:10:00")
    first = t("14:05:00") + 0
    pane = PaneState("alice", t("14:05:00"))
    for n in range(40):
        pane = pane.add(end, "out" if n % 2 else "in", "USD" if n % 3 else "EUR", 100 + n)
    pane = pane.add(t("14:15:00"), "out", "USD", 7)
    # When it is stored and read back
    item = pane.to_item(CONFIG)
    back = PaneState.from_item({**item, "account_id": "alice"}, CONFIG)
    # Then nothing is lost, the tail sits apart, and money is integers
    assert back == pane and first == pane.start_s
    assert item["payments"] == 40 and set(item["later"]) == {"2020-06-25T14:15:00Z"}
    assert item["expires_at"] == t("14:15:30") + 7 * 86_400
    assert len(repr(item)) < 1024


def test_a_window_sums_its_panes_with_integer_minor_units() -> None:
    # Given alice's panes 14:00 and 14:05, the second with a payment on time only for the
    # hopping window ending 14:15
    a = PaneState("alice", t("14:00:00")).add(t("14:05:00"), "out", "USD", 500)
    b = (PaneState("alice", t("14:05:00")).add(t("14:10:00"), "out", "USD", 300)
         .add(t("14:15:00"), "out", "USD", 900))
    panes = {a.start_s: a, b.start_s: b}
    hop = Window("hopping", t("14:00:00"), t("14:10:00"))
    later_hop = Window("hopping", t("14:05:00"), t("14:15:00"))
    # Then hopping 14:00-14:10 merges both panes but not the tail payment
    usd = window_totals(CONFIG, hop, panes)["out"]["USD"]
    assert (usd.count, usd.sum_minor, usd.min_minor, usd.max_minor) == (2, 800, 300, 500)
    # and hopping 14:05-14:15 counts it
    assert window_totals(CONFIG, later_hop, panes)["out"]["USD"].sum_minor == 1200


# -- watermarks ------------------------------------------------------------------------------


def test_one_absurd_event_does_not_move_the_watermark() -> None:
    # Given a shard with payments at 14:00, 14:01, 14:02 and one dated 2099
    shard = ShardState(STREAM, SHARD)
    for at in ("14:00:00", "14:01:00", "14:02:00"):
        shard = shard.saw(us(at), 3)
    shard = shard.saw(epoch_us(datetime(2099, 1, 1, tzinfo=UTC)), 3)
    # Then the watermark is the third highest: 14:01, not 2099
    assert shard.watermark_us(3) == us("14:01:00")


def test_an_event_counts_at_most_its_arrival_plus_the_skew() -> None:
    # Given events dated far after their arrival
    arrival = t("14:00:00")
    events = [envelope(f"p{n}", "23:00:00") for n in range(3)]
    result = plan(events, arrival=float(arrival))
    # Then the shard's watermark stops at arrival + 5 min
    [record] = {r.counts_us for r in result.records}
    assert record == (arrival + CONFIG.max_skew_s) * US


def test_the_watermark_does_not_depend_on_batching() -> None:
    # Given the same six payments in one batch or in three
    events = [envelope(f"p{n}", f"14:0{n}:00") for n in range(6)]
    whole = plan(events)
    one = commit_shard(CONFIG, whole.shards[f"{STREAM}/{SHARD}"], whole.records, (), now_s=0)
    shards: dict[str, ShardState] = {}
    for n in range(0, 6, 2):
        part = plan(events[n:n + 2], shards, start=1 + n)
        state = commit_shard(CONFIG, part.shards[f"{STREAM}/{SHARD}"], part.records, (),
                             now_s=0)
        assert state is not None
        shards = {state.key: state}
    # Then the committed watermark is the same
    assert one is not None
    assert one.watermark_us(3) == shards[f"{STREAM}/{SHARD}"].watermark_us(3) == us("14:03:00")


def test_a_failed_record_stops_the_committed_prefix() -> None:
    events = [envelope(f"p{n}", f"14:0{n}:00") for n in range(5)]
    result = plan(events)
    state = commit_shard(CONFIG, result.shards[f"{STREAM}/{SHARD}"], result.records, {3},
                         now_s=0)
    assert state is not None and state.fence == 3 and state.top == (
        us("14:02:00"), us("14:01:00"), us("14:00:00"))


def test_the_pipeline_watermark_waits_for_every_listed_shard() -> None:
    a = ShardState(STREAM, "a", top=(us("14:30:00"),) * 3, peers=("a", "b"))
    b = ShardState(STREAM, "b", top=(us("14:20:00"),) * 3)
    assert pipeline_watermark(CONFIG, [a]).watermark_us is None
    assert pipeline_watermark(CONFIG, [a, b]).watermark_us == us("14:20:00")
    # and a pending raise is not part of it, a verified one is
    raised = ShardState(STREAM, "b", pending_us=us("14:25:00"))
    assert pipeline_watermark(CONFIG, [a, raised]).watermark_us is None
    assert pipeline_watermark(CONFIG, [a, verified(raised)]) .watermark_us == us("14:25:00")
    assert pipeline_watermark(CONFIG, [a, verified(raised)]).closed_by == "schedule"


def test_readers_compute_the_watermark_from_stored_items() -> None:
    state = ShardState(STREAM, SHARD, fence=9, top=(us("14:10:00"),) * 3, version=2)
    assert read_watermark(CONFIG, [state.to_item(CONFIG)]).final(t("14:05:30"))
    assert not read_watermark(CONFIG, [state.to_item(CONFIG)]).final(t("14:10:30"))


# -- lateness --------------------------------------------------------------------------------


def test_a_payment_is_late_only_for_the_windows_its_shard_watermark_passed() -> None:
    # Given a shard at 14:10:40: windows ending 14:10 closed at 14:10:30
    start = t("14:05:00")
    class_end, hits = classify(CONFIG, start, us("14:10:40"), None)
    # Then a payment of pane 14:05 is late for hopping 14:00 and tumbling 14:05, and counts
    # only from the window ending 14:15
    assert class_end == t("14:15:00")
    assert [(h.window.key, h.cause) for h in hits] == [
        ("hopping#2020-06-25T14:00:00Z", "watermark_passed"),
        ("tumbling#2020-06-25T14:05:00Z", "watermark_passed"),
    ]
    # and an idle raise makes it late with its own cause
    assert classify(CONFIG, start, None, us("14:20:00"))[0] is None
    assert {h.cause for h in classify(CONFIG, start, None, us("14:20:00"))[1]} == {
        "window_closed"}


def test_a_batch_plans_one_input_per_account_and_late_events_for_the_rest() -> None:
    # Given a shard already at 14:20, and one new payment from 14:06
    shard = ShardState(STREAM, SHARD, fence=0, top=(us("14:20:00"),) * 3, version=1)
    result = plan([envelope("late", "14:06:00")], {f"{STREAM}/{SHARD}": shard})
    # Then each side is an input of its pane that counts in no class (its fences only), is
    # due-listed nowhere, and carries one payment.late naming 3 windows
    assert [(x.key[0], x.value.class_end) for x in result.inputs] == [
        ("alice", None), ("bob", None)]
    assert result.due == {}
    assert [(i, e.key, len(e.data["windows"])) for i, e in result.late] == [
        (0, "alice", 3), (0, "bob", 3)]
    assert result.late[0][1].data["direction"] == "out"


def test_an_on_time_payment_touches_one_pane_per_account_and_is_due_listed() -> None:
    result = plan([envelope("p1", "14:06:10"), envelope("p2", "14:07:00", payee="carol")])
    assert sorted({x.key for x in result.inputs}) == [
        ("alice", "pane#2020-06-25T14:05:00Z"), ("bob", "pane#2020-06-25T14:05:00Z"),
        ("carol", "pane#2020-06-25T14:05:00Z")]
    [item] = due_items(CONFIG, result)
    assert item["accounts"] == "alice,bob,carol"
    assert item["window_key"].startswith("due#2020-06-25T14:05:00Z#")


def test_the_model_emits_a_late_side_only_for_inputs_the_fences_admit() -> None:
    # Given p1 at 14:04:40 on time in its pane, then validate re-emitting p1 (same lineage) on
    # the same shard after three payments at 14:06: by then the windows ending 14:05 closed
    p1 = envelope("p1", "14:04:40", amount_minor=700)
    later = [envelope(f"q{n}", "14:06:00", payee="carol") for n in range(3)]
    events = [p1, *later, p1]
    origin = SourcePosition("raw", SHARD, "5")
    lineages = [Lineage(SourcePosition("raw", SHARD, str(5 + n)), (f"{STREAM}/{SHARD}",), 5)
                for n in range(4)] + [Lineage(origin, (f"{STREAM}/{SHARD}",), 5)]
    result = plan_batch(CONFIG, [pos(n + 1) for n in range(5)], [0.0] * 5, events, lineages, {})
    key = ("alice", pane_key(t("14:00:00")))
    mine = [x for x in result.inputs if x.key == key]
    # The copy, judged by its own position, is late for hopping 13:55 and tumbling 14:00
    first, copy = mine
    assert first.value.late is None and first.value.class_end == t("14:05:00")
    assert copy.value.late is not None and copy.value.class_end == t("14:10:00")
    # When the state engine runs the pane model over them (one item, fenced by lineage)
    store = MemoryPanes()
    model = PaneModel(CONFIG, "late-stream")
    sent: list[Emission] = []
    report = StateEngine(store, model, publish=lambda e: sent.extend(e) or {}).run(mine)
    # Then the copy is turned away whole: counted once, and no payment.late for it
    assert report.applied == 1 and report.duplicates == 1
    assert sent == []
    pane = PaneState.from_item(store.items[key], CONFIG)
    assert count_of(pane.for_window(Window("hopping", t("13:55:00"), t("14:05:00")))) == 1
    # and a copy in a later batch is turned away the same way
    again = StateEngine(store, model, publish=lambda e: sent.extend(e) or {}).run([copy])
    assert again.duplicates == 1 and sent == []


def test_the_model_emits_the_late_side_of_a_new_payment() -> None:
    shard = ShardState(STREAM, SHARD, fence=0, top=(us("14:20:00"),) * 3, version=1)
    result = plan([envelope("late", "14:06:00")], {f"{STREAM}/{SHARD}": shard})
    store = MemoryPanes()
    sent: list[Emission] = []
    report = StateEngine(store, PaneModel(CONFIG, "late-stream"),
                         publish=lambda e: sent.extend(e) or {}).run(result.inputs)
    assert report.failed == {}
    assert [(e.stream, e.envelope.key, e.cause) for e in sent] == [
        ("late-stream", "alice", 0), ("late-stream", "bob", 0)]
    # and its pane item holds only the fences: no totals, nothing counted
    item = store.items[("alice", pane_key(t("14:05:00")))]
    assert "totals" not in item and item["payments"] == 0 and item["fences"]


def test_the_model_applies_inputs_to_a_pane() -> None:
    result = plan([envelope("p1", "14:06:10", amount_minor=250)])
    model = PaneModel(CONFIG)
    key = ("alice", pane_key(t("14:05:00")))
    mine = [x for x in result.inputs if x.key == key]
    outcome = model.apply(key, model.load(key, None), mine)
    item = model.dump(key, outcome.state)
    assert item["totals"] == {"out": {"USD": {"count": 1, "sum_minor": 250, "min_minor": 250,
                                              "max_minor": 250}}}


# -- idleness and closing --------------------------------------------------------------------


def test_idle_shards_are_raised_to_the_active_ones_or_the_clock() -> None:
    now = float(t("15:00:00"))
    active = ShardState(STREAM, "a", top=(us("14:40:00"),) * 3, seen_at_s=now - 5)
    idle = ShardState(STREAM, "b", top=(us("14:10:00"),) * 3, seen_at_s=now - 600)
    assert [(s.key, s.pending_us) for s in idle_raises(CONFIG, [active, idle], now_s=now)] == [
        (f"{STREAM}/b", us("14:40:00"))]
    # when every shard is idle, the clock minus the grace
    raised = idle_raises(CONFIG, [idle], now_s=now)
    assert raised[0].pending_us == (t("15:00:00") - CONFIG.close_grace_s) * US


def test_closing_walks_windows_in_order_and_resumes_from_its_cursor() -> None:
    accounts = {t("14:00:00"): {"alice", "bob"}, t("14:05:00"): {"alice"}}
    cursor = CloseCursor()
    due = due_windows(CONFIG, cursor, t("14:15:30"), accounts)
    assert [(d.account, d.window.key) for d in due] == [
        ("alice", "hopping#2020-06-25T13:55:00Z"), ("alice", "tumbling#2020-06-25T14:00:00Z"),
        ("bob", "hopping#2020-06-25T13:55:00Z"), ("bob", "tumbling#2020-06-25T14:00:00Z"),
        ("alice", "hopping#2020-06-25T14:00:00Z"), ("alice", "tumbling#2020-06-25T14:05:00Z"),
        ("bob", "hopping#2020-06-25T14:00:00Z"),
        ("alice", "hopping#2020-06-25T14:05:00Z"),
    ]
    # When a pass takes only the first group, the cursor resumes after it, never splitting
    # an (closes_at, account) group
    taken = take_due(due, 1)
    assert len(taken) == 2
    moved = advance_cursor(cursor, taken, due, t("14:15:30"))
    rest = due_windows(CONFIG, moved, t("14:15:30"), accounts)
    assert rest == due[2:]
    done = advance_cursor(moved, rest, rest, t("14:15:30"))
    assert due_windows(CONFIG, done, t("14:15:30"), accounts) == []


def test_a_reader_tells_final_windows_from_open_ones() -> None:
    pane = PaneState("alice", t("14:05:00")).add(t("14:10:00"), "out", "USD", 300)
    mark = pipeline_watermark(CONFIG, [ShardState(STREAM, SHARD, top=(us("14:10:30"),) * 3)])
    rows = window_rows(CONFIG, "alice", [pane], mark)
    assert [(r["window_key"], r["status"]) for r in rows] == [
        ("hopping#2020-06-25T14:05:00Z", "open"), ("tumbling#2020-06-25T14:05:00Z", "final"),
        ("hopping#2020-06-25T14:00:00Z", "final")]
