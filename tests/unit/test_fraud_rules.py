"""fraud-detect's rules and state, pure; and a property over the handler on in-memory ports.

The property: whatever the batching, redeliveries of earlier batches, duplicates at new
positions, failed state writes and failed alert emissions (each followed by Lambda's retry
from the lowest failed record), the distinct alerts raised are exactly those of a reference
that applies each distinct payment once, computed directly from the rules' definitions.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascata_runtime.envelope import (
    Envelope,
    SourcePosition,
    derive_event_id,
    format_time,
    parse_envelope,
)
from payments.domain.fraud import (
    DEFAULT_RULES,
    FraudRules,
    PayerState,
    PaymentAt,
    alert_key,
    alert_view_item,
    evaluate,
    exceeds,
    group_payments,
    needs_tier,
)
from payments.domain.iso import CURRENCY_EXPONENTS
from payments.domain.schemas import Money, PaymentMade, parse_event
from payments.handlers import fraud_detect
from tests.support.events import LambdaContext, kinesis_record, payment
from tests.support.fakes import MemoryItems, MemoryObjects, MemorySink

BASE = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
SHARD = "shardId-000000000000"


def at(seconds: float) -> str:
    return format_time(BASE + timedelta(seconds=seconds))


def pay(
    event_id: str,
    *,
    t: float = 0,
    payer: str = "alice",
    payee: str = "bob",
    amount: int = 100,
    currency: str = "USD",
    seq: int = 1,
    shard: str = SHARD,
    index: int = 0,
) -> PaymentAt:
    env = parse_envelope(
        payment(event_id, payer=payer, payee=payee, amount_minor=amount, currency=currency,
                occurred_at=at(t)),
        causation=SourcePosition("payments-validated", shard, str(seq)),
    )
    assert isinstance(env, Envelope)
    event = parse_event(env)
    assert isinstance(event, PaymentMade)
    return PaymentAt(event, shard, seq, index)


def series(payments: list[PaymentAt]) -> list[PaymentAt]:
    """Give each payment its own position, in list order."""
    return [PaymentAt(p.payment, p.shard, n + 1, n) for n, p in enumerate(payments)]


def rules_of(result: Any) -> list[tuple[str, str]]:
    return [(r.alert.payment_event_id, r.alert.rule) for r in result.alerts]


def one_by_one(payments: list[PaymentAt], *, tier: str | None = None,
               rules: FraudRules = DEFAULT_RULES, state: PayerState | None = None) -> Any:
    """Evaluate each payment in its own batch; returns (state, alerts)."""
    state = state or PayerState("alice")
    alerts = []
    for p in payments:
        result = evaluate(state, [p], tier=tier, rules=rules)
        state = result.state
        alerts.extend(rules_of(result))
    return state, alerts


# --- tier_limit ---------------------------------------------------------------------------------


def test_an_amount_at_the_basic_limit_passes_and_one_minor_unit_more_alerts() -> None:
    # Given a payer without a profile (basic)
    result = evaluate(PayerState("alice"), series([
        pay("at", payee="bob", amount=100_000), pay("above", payee="bob", amount=100_001),
    ]), tier=None)
    # Then only the amount above 1,000.00 USD alerts, and the evidence says why
    tier_alerts = [r.alert for r in result.alerts if r.alert.rule == "tier_limit"]
    assert [a.payment_event_id for a in tier_alerts] == ["above"]
    evidence = tier_alerts[0].evidence
    assert evidence["tier"] == "basic" and evidence["tier_source"] == "default"
    assert evidence["limit_minor"] == 100_000 and evidence["amount_minor"] == 100_001
    assert tier_alerts[0].severity == "high"


@pytest.mark.parametrize(("tier", "amount", "alerts"), [
    ("plus", 500_000, False), ("plus", 500_001, True),
    ("premium", 2_000_000, False), ("premium", 2_000_001, True),
    ("gold", 100_001, True),  # an unknown tier counts as basic
])
def test_the_limit_follows_the_profile_tier(tier: str, amount: int, alerts: bool) -> None:
    result = evaluate(PayerState("alice"), [pay("p", amount=amount, payee="bob")], tier=tier)
    raised = [r.alert for r in result.alerts if r.alert.rule == "tier_limit"]
    assert bool(raised) is alerts
    if tier == "gold":
        assert raised[0].evidence["tier_source"] == "default"


@pytest.mark.parametrize(("currency", "limit_minor"), [("JPY", 150_000), ("KWD", 1_000_000),
                                                       ("EUR", 100_000)])
def test_limits_compare_in_major_units_of_each_currency(currency: str, limit_minor: int) -> None:
    # Given the basic limit of 1,000 major units: 1,000.000 KWD, 1,000.00 EUR, and JPY with
    # its weight of 150 JPY per reference unit: 150,000 JPY
    ok = evaluate(PayerState("alice"), [pay("ok", amount=limit_minor, currency=currency)],
                  tier="basic")
    over = evaluate(PayerState("alice"), [pay("over", amount=limit_minor + 1, currency=currency)],
                    tier="basic")
    assert "tier_limit" not in [r.alert.rule for r in ok.alerts]
    [alert] = [r.alert for r in over.alerts if r.alert.rule == "tier_limit"]
    assert alert.evidence["limit_minor"] == limit_minor and alert.evidence["currency"] == currency


def test_exceeds_is_exact_integer_arithmetic() -> None:
    assert not exceeds(Money(10**12, "JPY"), 10**14)
    assert exceeds(Money(10**12 + 1, "JPY"), 10**14)
    assert exceeds(Money(1, "KWD"), 0) and not exceeds(Money(10, "KWD"), 1)


def test_the_tier_is_needed_only_above_the_lowest_limit() -> None:
    assert not needs_tier([pay("a", amount=100_000), pay("b", amount=149_999, currency="JPY")])
    assert needs_tier([pay("a", amount=100), pay("b", amount=150_001, currency="JPY")])


# --- velocity -----------------------------------------------------------------------------------


def test_the_sixth_payment_within_sixty_seconds_alerts_and_so_does_the_seventh() -> None:
    payments = series([pay(f"p{i}", t=i * 10, payee="bob") for i in range(7)])
    result = evaluate(PayerState("alice"), payments, tier=None)
    velocity = [r.alert for r in result.alerts if r.alert.rule == "velocity"]
    # p0..p5 span 50 s: six payments; p6 at 60 s no longer counts p0 (the interval is (t-60, t])
    assert [a.payment_event_id for a in velocity] == ["p5", "p6"]
    assert velocity[0].evidence["count"] == 6 and velocity[1].evidence["count"] == 6
    assert velocity[0].severity == "medium"


def test_a_steady_rate_under_the_limit_never_alerts() -> None:
    payments = series([pay(f"p{i}", t=i * 12, payee="bob") for i in range(30)])
    _, alerts = one_by_one(payments)
    assert [a for a in alerts if a[1] == "velocity"] == []


def test_batching_does_not_change_in_order_results() -> None:
    payments = series([pay(f"p{i}", t=i * 7, payee=f"x{i % 3}", amount=60_000)
                       for i in range(15)])
    together = evaluate(PayerState("alice"), payments, tier=None)
    state, alerts = one_by_one(payments)
    assert rules_of(together) == alerts
    assert together.state.times == state.times and together.state.payees == state.payees


# --- new_payee ----------------------------------------------------------------------------------


def test_a_large_first_payment_to_a_new_payee_alerts_once() -> None:
    payments = series([
        pay("first", t=0, payee="carol", amount=50_001),
        pay("again", t=100, payee="carol", amount=90_000),
        pay("small", t=200, payee="dave", amount=50_000),
        pay("large", t=300, payee="dave", amount=90_000),
    ])
    _, alerts = one_by_one(payments)
    assert [a for a in alerts if a[1] == "new_payee"] == [("first", "new_payee")]


def test_known_payees_are_capped_least_recently_paid_first() -> None:
    rules = FraudRules(known_payees_cap=2)
    payments = series([
        pay("a1", t=0, payee="a"), pay("b1", t=100, payee="b"),
        pay("a2", t=200, payee="a"),   # a is now the most recent
        pay("c1", t=300, payee="c"),   # evicts b, the least recently paid
        pay("a3", t=400, payee="a", amount=60_000),
        pay("b2", t=500, payee="b", amount=60_000),
    ])
    state, alerts = one_by_one(payments, rules=rules)
    assert [a for a in alerts if a[1] == "new_payee"] == [("b2", "new_payee")]
    assert len(state.payees) == 2


# --- effectively once ---------------------------------------------------------------------------


def test_a_redelivered_batch_changes_nothing_and_raises_nothing() -> None:
    batch = series([pay(f"p{i}", t=i, payee="bob", amount=60_000 if i == 0 else 100)
                    for i in range(6)])
    first = evaluate(PayerState("alice"), batch, tier=None)
    assert len(first.alerts) == 2  # new payee on p0, velocity on p5
    again = evaluate(first.state, batch, tier=None)
    assert again.state is first.state and again.alerts == ()
    assert sorted(again.redelivered) == list(range(6))


def test_a_duplicate_at_a_new_position_counts_nowhere() -> None:
    # Given five payments, then p4 sent again by the producer, then a sixth distinct one
    batch = series([pay(f"p{i}", t=i, payee="bob") for i in range(5)]
                   + [pay("p4", t=4, payee="bob"), pay("p5", t=5, payee="bob")])
    result = evaluate(PayerState("alice"), batch, tier=None)
    # Then the duplicate is not a sixth payment: only p5 makes six
    assert [r.alert.payment_event_id for r in result.alerts if r.alert.rule == "velocity"] == [
        "p5"]
    assert result.duplicates == (5,) and result.state.payments == 6


def test_duplicates_inside_the_velocity_horizon_are_known_beyond_the_recent_ids() -> None:
    rules = FraudRules(recent_ids=1)
    payments = series([pay(f"p{i}", t=i, payee="bob") for i in range(4)] + [pay("p0", t=0)])
    state, _ = one_by_one(payments[:4], rules=rules)
    assert len(state.recent) == 1
    late_copy = evaluate(state, [payments[4]], tier=None, rules=rules)
    assert late_copy.duplicates == (4,) and late_copy.state.payments == 4


def test_the_first_kafka_offset_is_not_taken_for_a_redelivery() -> None:
    result = evaluate(PayerState("alice"), [pay("p", seq=0, shard="0")], tier=None)
    assert result.applied == (0,) and result.state.fences == {"0": 0}


def test_a_redelivery_check_is_per_shard() -> None:
    first = evaluate(PayerState("alice"), [pay("p1", seq=9, shard="shardId-000000000001")],
                     tier=None)
    # after a reshard the payer's payments come from a child shard with lower sequences
    moved = evaluate(first.state, [pay("p2", seq=3, shard="shardId-000000000004")], tier=None)
    assert moved.applied == (0,) and moved.state.fences == {"1": 9, "4": 3}


# --- order --------------------------------------------------------------------------------------


def test_a_batch_is_evaluated_in_event_time_order() -> None:
    # Given a large payment to carol at 09:00:02 that arrives before a small one at 09:00:01
    shuffled = series([pay("large", t=2, payee="carol", amount=90_000),
                       pay("small", t=1, payee="carol", amount=100)])
    # When both are in one batch, the small one comes first in event time: carol is known
    together = evaluate(PayerState("alice"), shuffled, tier=None)
    assert [r.alert.rule for r in together.alerts] == []
    # Across two batches the order is the arrival order: the large one is a new payee
    _, apart = one_by_one(shuffled)
    assert apart == [("large", "new_payee")]


def test_a_late_payment_counts_in_its_own_interval_and_for_later_ones() -> None:
    # Given payments at 0..40 s and one at 100 s (the newest event time)
    state, _ = one_by_one(series(
        [pay(f"p{i}", t=i * 10, payee="bob") for i in range(5)] + [pay("new", t=100)]))
    # When a payment from 45 s arrives late (55 s behind the newest, within the lateness)
    late = evaluate(state, [pay("late", t=45, seq=50, index=0)], tier=None)
    # Then it is counted over (-15 s, 45 s]: six payments, an alert on the late payment
    [alert] = [r.alert for r in late.alerts if r.alert.rule == "velocity"]
    assert alert.payment_event_id == "late" and alert.evidence["count"] == 6
    # and it stays in the state, so it counts for the next payment too
    assert any(s.at_ms == state.newest_ms - 55_000 for s in late.state.times)


def test_a_payment_later_than_the_lateness_is_counted_over_what_is_kept() -> None:
    state, _ = one_by_one(series(
        [pay(f"p{i}", t=i * 10, payee="bob") for i in range(5)] + [pay("new", t=300)]))
    # 0..40 s are older than 300 - (60 + 60): forgotten, so the late payment cannot see them
    assert [s.at_ms for s in state.times] == [state.newest_ms]
    late = evaluate(state, [pay("late", t=45, seq=50)], tier=None)
    assert [r.alert.rule for r in late.alerts] == []  # undercounts, never overcounts


# --- state --------------------------------------------------------------------------------------


def test_state_stays_bounded_and_round_trips_through_the_item() -> None:
    rules = DEFAULT_RULES
    payments = series([pay(f"p{i}", t=i * 0.01, payee=f"payee-{i}") for i in range(1_000)])
    result = evaluate(PayerState("alice"), payments, tier=None)
    state = result.state
    assert len(state.payees) == rules.known_payees_cap
    assert len(state.times) == rules.velocity_keep
    assert len(state.recent) == rules.recent_ids
    assert PayerState.from_item("alice", state.to_item()) == state
    item = state.to_item()
    assert len(item["payees"]) == 9 * 500 - 1  # 8 characters and a space per payee


def test_a_typical_payer_item_stays_under_one_kilobyte() -> None:
    payments = series([pay(f"{i:08x}-6f7e-4a43-9d8e-3c6a0f1b2a10", t=i * 3600,
                           payee=f"merchant.{i % 20:04d}") for i in range(200)])
    state = evaluate(PayerState("alice.0001"), payments, tier=None).state
    size = sum(len(str(k)) + len(str(v)) for k, v in state.to_item().items())
    assert size < 1024


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="velocity_keep"):
        FraudRules(velocity_keep=2)
    with pytest.raises(ValueError, match="default_tier"):
        FraudRules(default_tier="gold")


# --- alerts -------------------------------------------------------------------------------------


def test_alert_ids_derive_from_the_payment_and_the_rule() -> None:
    p = pay("pay-1", amount=5_000_000, payee="mallory")
    one = evaluate(PayerState("alice"), [p], tier=None)
    two = evaluate(PayerState("alice"), [p], tier=None)
    ids = [r.alert.envelope.event_id for r in one.alerts]
    assert ids == [r.alert.envelope.event_id for r in two.alerts]
    assert ids == [derive_event_id("pay-1", "fraud.alert/tier_limit"),
                   derive_event_id("pay-1", "fraud.alert/new_payee")]
    env = one.alerts[0].alert.envelope
    assert env.key == "alice" and env.type == "fraud.alert" and env.correlation_id == "pay-1"
    assert env.occurred_at == p.payment.envelope.occurred_at


def test_the_view_item_sorts_by_event_time_to_the_millisecond() -> None:
    whole = evaluate(PayerState("alice"), [pay("a", t=0, amount=5_000_000)], tier=None)
    half = evaluate(PayerState("alice"), [pay("b", t=0.5, amount=5_000_000)], tier=None)
    key_whole = alert_key(whole.alerts[0].alert)
    key_half = alert_key(half.alerts[0].alert)
    assert key_whole.startswith("2026-11-02T09:00:00.000Z#")
    assert key_whole < key_half
    item = alert_view_item(half.alerts[0].alert)
    assert item["day"] == "2026-11-02" and item["occurred_at"] == "2026-11-02T09:00:00.500Z"
    assert item["amount_minor"] == 5_000_000 and item["currency"] == "USD"
    assert item["evidence"]["payee"] == "bob" and isinstance(item["evidence"], dict)


def test_group_payments_quarantines_what_is_not_a_valid_payment() -> None:
    good = parse_envelope(payment("g"), causation=SourcePosition("s", SHARD, "1"))
    bad = parse_envelope(payment("b", amount_minor=1.5), causation=SourcePosition("s", SHARD, "2"))
    other = parse_envelope(payment("o") | {"type": "customer.updated"},
                           causation=SourcePosition("s", SHARD, "3"))
    assert isinstance(good, Envelope) and isinstance(bad, Envelope)
    assert isinstance(other, Envelope)
    by_payer, rejected = group_payments([good, bad, other])
    assert list(by_payer) == ["alice"]
    assert [(i, r.code) for i, r in rejected] == [(1, "amount_not_integer"), (2, "missing")]


# --- the property -------------------------------------------------------------------------------

PAYERS = ["alice", "bob", "carol", "dave"]
ACCOUNTS = [*PAYERS, "erin", "shop"]
CTX = LambdaContext("fraud-detect")


class Tiers:
    def __init__(self, tiers: dict[str, str | None]) -> None:
        self._tiers = tiers

    def tiers(self, customers: Sequence[str]) -> Mapping[str, str]:
        return {c: t for c in customers if (t := self._tiers.get(c)) is not None}


class View:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def upsert(self, item: Mapping[str, Any]) -> None:
        key = (item["account_id"], item["alert_key"])
        self.items[key] = {**self.items.get(key, {}), **item}


@st.composite
def workloads(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
    n = draw(st.integers(1, 40))
    clock = 0.0
    sent = []
    for i in range(n):
        clock += draw(st.sampled_from([0, 0.5, 3, 8, 20, 70]))
        payer = draw(st.sampled_from(PAYERS))
        sent.append(payment(
            f"p{i}", payer=payer,
            payee=draw(st.sampled_from([a for a in ACCOUNTS if a != payer])),
            amount_minor=draw(st.sampled_from([100, 40_000, 60_000, 150_000, 700_000,
                                               2_500_000])),
            currency=draw(st.sampled_from(["USD", "USD", "JPY", "KWD"])),
            occurred_at=at(clock),
        ))
    # a producer duplicate is sent again a little later, as producer retries are
    for d in draw(st.lists(st.integers(0, n - 1), max_size=8)):
        sent.insert(min(len(sent), d + draw(st.integers(1, 6))), sent[d])
    tiers = {p: draw(st.sampled_from([None, "basic", "plus", "premium"])) for p in PAYERS}
    return sent, tiers


def shards_of(sent: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """payments-validated as Kinesis would hold it: by payer hash, sequences per shard."""
    shards: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in sent:
        shard = f"shardId-00000000000{zlib.crc32(obj['key'].encode()) % 2}"
        shards[shard].append(kinesis_record(obj, sequence=len(shards[shard]) + 1,
                                            partition_key=obj["key"], shard=shard,
                                            stream="payments-validated"))
    return shards


def above(amount: int, currency: str, limit: int) -> bool:
    """Independent of the domain: compare in major units with decimals."""
    exponent = CURRENCY_EXPONENTS[currency]
    weight = {"JPY": 150}.get(currency, 1)  # the rules' default weight for JPY
    return Decimal(amount).scaleb(-exponent) > Decimal(limit * weight).scaleb(-2)


def reference(sent: list[dict[str, Any]], tiers: dict[str, str | None]) -> set[tuple[str, str]]:
    """(payment id, rule) of every alert, straight from the rules' definitions, each distinct
    payment applied once in its shard's order (event times never go back per payer here)."""
    limits = {"basic": 100_000, "plus": 500_000, "premium": 2_000_000}
    seen: set[str] = set()
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    out: set[tuple[str, str]] = set()
    for obj in sent:
        if obj["event_id"] in seen:
            continue
        seen.add(obj["event_id"])
        d, pid = obj["data"], obj["event_id"]
        t = datetime.fromisoformat(obj["occurred_at"].replace("Z", "+00:00"))
        before = history[d["payer"]]
        if above(d["amount_minor"], d["currency"], limits[tiers[d["payer"]] or "basic"]):
            out.add((pid, "tier_limit"))
        in_interval = [b for b in before if t - timedelta(seconds=60) < b["t"] <= t]
        if len(in_interval) + 1 > 5:
            out.add((pid, "velocity"))
        if (d["payee"] not in {b["payee"] for b in before}
                and above(d["amount_minor"], d["currency"], 50_000)):
            out.add((pid, "new_payee"))
        before.append({"t": t, "payee": d["payee"]})
    return out


def deliver(handle: Any, items: MemoryItems, sink: MemorySink, records: list[dict[str, Any]],
            schedule: st.DataObject) -> None:
    """Lambda's event source mapping for one shard, with failures and redeliveries."""
    pos, rounds = 0, 0
    delivered: list[list[dict[str, Any]]] = []
    while pos < len(records):
        rounds += 1
        chaos = rounds <= 3 * len(records)
        batch = records[pos : pos + schedule.draw(st.integers(1, 7))]
        items.fail_accounts = schedule.draw(st.sets(st.sampled_from(PAYERS), max_size=2)) \
            if chaos else set()
        sink.fail_tags = schedule.draw(st.sets(st.integers(0, 3), max_size=2)) if chaos else set()
        response = handle({"Records": batch}, CTX)
        items.fail_accounts, sink.fail_tags = set(), set()
        failed = [int(f["itemIdentifier"]) for f in response["batchItemFailures"]]
        if failed:
            # Lambda checkpoints before the lowest failure and retries from it
            lowest = min(failed)
            pos = next(i for i, r in enumerate(records)
                       if int(r["kinesis"]["sequenceNumber"]) == lowest)
        else:
            pos += len(batch)
        delivered.append(batch)
        if schedule.draw(st.booleans()):
            again = schedule.draw(st.sampled_from(delivered))
            assert handle({"Records": again}, CTX) == {"batchItemFailures": []}


def run_handler(sent: list[dict[str, Any]], tiers: dict[str, str | None],
                schedule: st.DataObject | None) -> tuple[MemorySink, View, MemoryItems]:
    items, sink, view = MemoryItems(key="payer"), MemorySink(), View()
    handle = fraud_detect.make_handler(fraud_detect.Dependencies(
        alerts_stream="alerts", quarantine_bucket="q", state=items, tiers=Tiers(tiers),
        view=view, sink=sink, objects=MemoryObjects(),
    ))
    for records in shards_of(sent).values():
        if schedule is None:
            assert handle({"Records": records}, CTX) == {"batchItemFailures": []}
        else:
            deliver(handle, items, sink, records, schedule)
    return sink, view, items


def emitted(sink: MemorySink) -> list[dict[str, Any]]:
    import json

    return [json.loads(r.data) for r in sink.records.get("alerts", [])]


@settings(max_examples=80, deadline=None)
@given(workload=workloads(), schedule=st.data())
def test_alerts_equal_the_reference_under_any_redelivery_and_duplicates(
    workload: tuple[list[dict[str, Any]], dict[str, str | None]], schedule: st.DataObject
) -> None:
    sent, tiers = workload
    sink, view, items = run_handler(sent, tiers, schedule)
    expected = reference(sent, tiers)
    alerts = emitted(sink)
    # Then the distinct alerts are exactly the reference's, re-emitted copies carry the same id
    assert {(a["data"]["payment_event_id"], a["data"]["rule"]) for a in alerts} == expected
    by_id: dict[str, dict[str, Any]] = {}
    for a in alerts:
        assert by_id.setdefault(a["event_id"], a) == a
        assert a["event_id"] == derive_event_id(a["data"]["payment_event_id"],
                                                f"fraud.alert/{a['data']['rule']}")
    # and the view holds one item per alert, the same as a clean run's
    assert {item["alert_id"] for item in view.items.values()} == set(by_id)
    _, clean_view, clean_items = run_handler(sent, tiers, None)
    assert view.items == clean_view.items
    # and every payer's rule state counts each distinct payment once
    for payer, item in items.items.items():
        clean = clean_items.items[payer]
        for name in ("payments", "alerts", "payees", "times", "newest"):
            assert item.get(name) == clean.get(name), name
    distinct = {o["event_id"]: o for o in sent}
    assert sum(int(i["payments"]) for i in items.items.values()) == len(distinct)


def test_the_reference_would_catch_a_duplicate_counted_twice() -> None:
    # Guard: five payments and a producer duplicate. Counted twice, the copy would be a
    # sixth payment within the minute and raise a velocity alert the reference does not have.
    sent = [payment(f"p{i}", occurred_at=at(i)) for i in range(5)]
    sent.append(sent[4])
    assert not any(rule == "velocity" for _, rule in reference(sent, {"alice": None}))
    naive = reference([s | {"event_id": f"copy{n}"} for n, s in enumerate(sent)],
                      {"alice": None})
    assert ("copy5", "velocity") in naive
    sink, _, _ = run_handler(sent, {"alice": None}, None)
    assert emitted(sink) == []
