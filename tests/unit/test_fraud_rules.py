"""fraud-detect's rules and state, pure; and a property over the handlers on in-memory ports.

The property: payments sent to payments-raw with producer duplicates go through validate (the
origin gate) to payments-validated, with redeliveries of earlier batches re-emitting copies at
new positions, then through fraud-detect. Whatever the batching, redeliveries, copies, failed
state writes and failed alert emissions (each followed by Lambda's retry from the lowest failed
record), the distinct alerts raised are exactly those of a reference that applies each
distinct payment once, computed directly from the rules' definitions. Turning copies away is
the state engine's and the origin gate's job (`tests/unit/test_state_engine.py`): `evaluate`
evaluates what it is given.
"""

from __future__ import annotations

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
from cascata_runtime.handler import TransformDependencies
from cascata_runtime.lineage import input_lineages
from cascata_runtime.origin import OriginPolicy
from cascata_runtime.shell import Origins
from payments.domain.fraud import (
    DEFAULT_RULES,
    STATE_TTL_S,
    FraudModel,
    FraudRules,
    PayerState,
    alert_key,
    alert_view_item,
    evaluate,
    exceeds,
    keyed_payments,
    needs_tier,
)
from payments.domain.iso import CURRENCY_EXPONENTS
from payments.domain.schemas import FraudAlert, Money, PaymentMade, parse_event
from payments.handlers import fraud_detect, validate
from tests.support.events import LambdaContext, payment
from tests.support.fakes import MemoryItems, MemoryMarkers, MemoryObjects, MemorySink
from tests.support.streams import Faults, Kinesis, deliver

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
) -> PaymentMade:
    env = parse_envelope(
        payment(event_id, payer=payer, payee=payee, amount_minor=amount, currency=currency,
                occurred_at=at(t)),
    )
    assert isinstance(env, Envelope)
    event = parse_event(env)
    assert isinstance(event, PaymentMade)
    return event


def series(payments: list[PaymentMade]) -> list[tuple[int, PaymentMade]]:
    """Give each payment its input index, in list order."""
    return list(enumerate(payments))


def rules_of(result: Any) -> list[tuple[str, str]]:
    return [(r.alert.payment_event_id, r.alert.rule) for r in result.alerts]


def one_by_one(payments: list[tuple[int, PaymentMade]], *, tier: str | None = None,
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
    result = evaluate(PayerState("alice"), series([pay("p", amount=amount, payee="bob")]),
                      tier=tier)
    raised = [r.alert for r in result.alerts if r.alert.rule == "tier_limit"]
    assert bool(raised) is alerts
    if tier == "gold":
        assert raised[0].evidence["tier_source"] == "default"


@pytest.mark.parametrize(("currency", "limit_minor"), [("JPY", 150_000), ("KWD", 1_000_000),
                                                       ("EUR", 100_000)])
def test_limits_compare_in_major_units_of_each_currency(currency: str, limit_minor: int) -> None:
    # Given the basic limit of 1,000 major units: 1,000.000 KWD, 1,000.00 EUR, and JPY with
    # its weight of 150 JPY per reference unit: 150,000 JPY
    ok = evaluate(PayerState("alice"), series([pay("ok", amount=limit_minor, currency=currency)]),
                  tier="basic")
    over = evaluate(PayerState("alice"),
                    series([pay("over", amount=limit_minor + 1, currency=currency)]), tier="basic")
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
    late = evaluate(state, series([pay("late", t=45)]), tier=None)
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
    late = evaluate(state, series([pay("late", t=45)]), tier=None)
    assert [r.alert.rule for r in late.alerts] == []  # undercounts, never overcounts


# --- state --------------------------------------------------------------------------------------


def test_state_stays_bounded_and_round_trips_through_the_item() -> None:
    rules = DEFAULT_RULES
    payments = series([pay(f"p{i}", t=i * 0.01, payee=f"payee-{i}") for i in range(1_000)])
    result = evaluate(PayerState("alice"), payments, tier=None)
    state = result.state
    assert len(state.payees) == rules.known_payees_cap
    assert len(state.times) == rules.velocity_keep
    assert state.payments == 1_000 and state.alerts == len(result.alerts)
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
    one = evaluate(PayerState("alice"), [(0, p)], tier=None)
    two = evaluate(PayerState("alice"), [(7, p)], tier=None)
    ids = [r.alert.envelope.event_id for r in one.alerts]
    assert ids == [r.alert.envelope.event_id for r in two.alerts]
    assert [r.cause for r in one.alerts] == [0, 0] and [r.cause for r in two.alerts] == [7, 7]
    assert ids == [derive_event_id("pay-1", "fraud.alert/tier_limit"),
                   derive_event_id("pay-1", "fraud.alert/new_payee")]
    env = one.alerts[0].alert.envelope
    assert env.key == "alice" and env.type == "fraud.alert" and env.correlation_id == "pay-1"
    assert env.occurred_at == p.envelope.occurred_at


def test_the_view_item_sorts_by_event_time_to_the_millisecond() -> None:
    whole = evaluate(PayerState("alice"), series([pay("a", t=0, amount=5_000_000)]), tier=None)
    half = evaluate(PayerState("alice"), series([pay("b", t=0.5, amount=5_000_000)]), tier=None)
    key_whole = alert_key(whole.alerts[0].alert)
    key_half = alert_key(half.alerts[0].alert)
    assert key_whole.startswith("2026-11-02T09:00:00.000Z#")
    assert key_whole < key_half
    item = alert_view_item(half.alerts[0].alert)
    assert item["day"] == "2026-11-02" and item["occurred_at"] == "2026-11-02T09:00:00.500Z"
    assert item["amount_minor"] == 5_000_000 and item["currency"] == "USD"
    assert item["evidence"]["payee"] == "bob" and isinstance(item["evidence"], dict)


def test_keyed_payments_quarantines_what_is_not_a_valid_payment() -> None:
    positions = [SourcePosition("s", SHARD, str(n)) for n in range(1, 5)]
    good = parse_envelope(payment("g"), causation=positions[0])
    bad = parse_envelope(payment("b", amount_minor=1.5), causation=positions[1])
    other = parse_envelope(payment("o") | {"type": "customer.updated"}, causation=positions[2])
    assert isinstance(good, Envelope) and isinstance(bad, Envelope)
    assert isinstance(other, Envelope)
    lineages = input_lineages(positions, [None] * 4)
    # the last record is a copy the origin gate suppressed: neither a payment nor a rejection
    keyed, rejected = keyed_payments([good, bad, other, None], lineages)
    assert [(k.key, k.index, k.value.envelope.event_id) for k in keyed] == [("alice", 0, "g")]
    assert keyed[0].lineage == lineages[0]
    assert [(i, r.code) for i, r in rejected] == [(1, "amount_not_integer"), (2, "missing")]


def test_the_model_emits_each_alert_for_its_cause_and_expires_the_state() -> None:
    # Given fraud-detect's model for a batch whose latest record arrived at now_s
    model = FraudModel(DEFAULT_RULES, {"alice": "premium"}, "alerts", now_s=1_800_000_000)
    payments = [pay("small", t=0), pay("large", t=1, payee="mallory", amount=5_000_000)]
    keyed, _ = keyed_payments([p.envelope for p in payments],
                              input_lineages([SourcePosition("s", SHARD, "1"),
                                              SourcePosition("s", SHARD, "2")], [None, None]))
    # When it applies them
    outcome = model.apply("alice", model.load("alice", None), keyed)
    # Then each alert goes to the alerts stream, caused by the payment's record, with the tier
    assert [(e.stream, e.cause) for e in outcome.emissions] == [("alerts", 1), ("alerts", 1)]
    alerts = [parse_event(e.envelope) for e in outcome.emissions]
    assert all(isinstance(a, FraudAlert) for a in alerts)
    by_rule = {a.rule: a for a in alerts if isinstance(a, FraudAlert)}
    assert set(by_rule) == {"tier_limit", "new_payee"}
    assert by_rule["tier_limit"].evidence["tier"] == "premium"
    assert by_rule["tier_limit"].evidence["tier_source"] == "profile"
    # and the stored state expires STATE_TTL_S after the batch, and reads back the same
    item = model.dump("alice", outcome.state)
    assert item["expires_at"] == 1_800_000_000 + STATE_TTL_S
    assert model.load("alice", item) == outcome.state and outcome.state.payments == 2


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


RAW, VALIDATED = "payments-raw", "payments-validated"


def run_handler(sent: list[dict[str, Any]], tiers: dict[str, str | None],
                schedule: st.DataObject | None) -> tuple[MemorySink, View, MemoryItems]:
    """payments-raw -> validate -> payments-validated -> fraud-detect; with `schedule` None
    every shard is read in one batch and nothing fails. validate's copies are never reordered
    before their originals' successors (no failed emissions there): the reference evaluates
    each payer's payments in the order they were sent."""
    kinesis = Kinesis(arrival=(BASE + timedelta(hours=1)).timestamp())
    for obj in sent:
        kinesis.put(RAW, obj, obj["key"])
    validated = MemorySink()
    validate_handle = validate.make_handler(TransformDependencies(
        VALIDATED, "q", validated, MemoryObjects(), Origins({RAW: OriginPolicy()},
                                                              MemoryMarkers())))
    deliver(validate_handle, LambdaContext("validate"), kinesis, [RAW], schedule,
            sink=validated, output=VALIDATED, max_batch=7)
    items, sink, view = MemoryItems(key="payer"), MemorySink(), View()
    handle = fraud_detect.make_handler(fraud_detect.Dependencies(
        alerts_stream="alerts", quarantine_bucket="q", state=items, tiers=Tiers(tiers),
        view=view, sink=sink, objects=MemoryObjects(),
    ))
    deliver(handle, CTX, kinesis, [VALIDATED], schedule, max_batch=7,
            faults=Faults(items=items, keys=PAYERS, sink=sink, tags=4))
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
    # Then the distinct alerts are exactly the reference's; a re-emitted copy carries the same
    # id, content and lineage (origin, path, part: what makes it a copy downstream), only its
    # low-water mark may differ (the mark of the batch that emitted it)
    assert {(a["data"]["payment_event_id"], a["data"]["rule"]) for a in alerts} == expected
    by_id: dict[str, dict[str, Any]] = {}
    for a in alerts:
        assert int(a["lineage"]["low_water"]) <= int(a["lineage"]["origin"]["sequence"])
        copy = {**a, "lineage": {**a["lineage"], "low_water": None}}
        assert by_id.setdefault(a["event_id"], copy) == copy
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
    sink, _, items = run_handler(sent, {"alice": None}, None)
    assert emitted(sink) == []
    assert items.items["alice"]["payments"] == 5
