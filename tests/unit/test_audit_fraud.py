"""The audit's recomputation of alerts-view: each rule at its threshold's edge, rules changed
by `FraudRules`, the tier as fraud-detect saw it, and a cross-check against the pipeline's own
evaluation (`payments.domain.fraud.evaluate`) on out-of-order input with tiny state limits."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cascata_runtime.archive import RawRecord
from cascata_runtime.envelope import (
    Rejection,
    SourcePosition,
    derive_event_id,
    format_time,
    parse_envelope,
)
from payments.domain.fraud import (
    DEFAULT_RULES,
    FraudRules,
    PayerState,
    alert_view_item,
    evaluate,
)
from payments.domain.schemas import PaymentMade, parse_event
from payments.tooling.audit import ALERTS, archive_objects, recompute

BASE = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
SHARD = "shardId-000000000000"


def payment(event_id: str, *, amount: int = 1_000, currency: str = "USD", t: float = 0,
            payer: str = "alice", payee: str = "bob") -> dict[str, Any]:
    return {"event_id": event_id, "type": "payment.made", "version": 1, "key": payer,
            "occurred_at": format_time(BASE + timedelta(seconds=t)),
            "data": {"payer": payer, "payee": payee, "amount_minor": amount,
                     "currency": currency}}


def customer(event_id: str, *, tier: str, t: float = -86_400, who: str = "alice",
             kind: str = "customer.registered") -> dict[str, Any]:
    data = {"customer_id": who, "tier": tier}
    if kind == "customer.registered":
        data |= {"name": "Alice", "email": "alice@example.com", "country": "GB"}
    return {"event_id": event_id, "type": kind, "version": 1, "key": who,
            "occurred_at": format_time(BASE + timedelta(seconds=t)), "data": data}


def alerts(tmp: Path, events: list[dict[str, Any]], rules: FraudRules = DEFAULT_RULES,
           ) -> list[dict[str, Any]]:
    """The batch's alerts for events that arrived in the order given, one shard per stream."""
    records = []
    for n, event in enumerate(events):
        stream = "customers" if event["type"].startswith("customer.") else "payments-raw"
        records.append(RawRecord(stream, SHARD, str(100 + n), event["key"], 1_000 * (n + 1),
                                 json.dumps(event).encode()))
    for key, body in archive_objects(records).items():
        path = tmp / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return recompute(tmp, rules)[ALERTS]


def fired(items: list[dict[str, Any]], rule: str) -> list[str]:
    return [i["payment_event_id"] for i in items if i["rule"] == rule]


# --- tier_limit -------------------------------------------------------------------------------


def test_tier_limit_fires_above_the_limit_not_at_it(tmp_path: Path) -> None:
    # Given a payer with no profile (basic: 1,000.00 USD), paying exactly the limit, then 1 more
    items = alerts(tmp_path, [payment("at", amount=100_000), payment("above", amount=100_001)])
    # Then only the payment above the limit alerts, with the item the pipeline writes
    assert fired(items, "tier_limit") == ["above"]
    [item] = [i for i in items if i["rule"] == "tier_limit"]
    alert_id = derive_event_id("above", "fraud.alert/tier_limit")
    assert item == {
        "account_id": "alice",
        "alert_key": f"2026-11-02T09:00:00.000Z#{alert_id}",
        "day": "2026-11-02",
        "alert_id": alert_id,
        "occurred_at": "2026-11-02T09:00:00Z",
        "rule": "tier_limit",
        "severity": "high",
        "payment_event_id": "above",
        "evidence": {"payee": "bob", "amount_minor": 100_001, "currency": "USD",
                     "tier": "basic", "tier_source": "default", "limit_minor": 100_000},
        "amount_minor": 100_001,
        "currency": "USD",
    }


@pytest.mark.parametrize(("currency", "limit_minor"), [("JPY", 150_000), ("KWD", 1_000_000)])
def test_tier_limit_in_other_currencies_uses_exponents_and_weights(
    tmp_path: Path, currency: str, limit_minor: int
) -> None:
    # 1,000.00 reference units: 150,000 JPY (exponent 0, weight 150), 1,000.000 KWD (exp. 3)
    items = alerts(tmp_path, [
        payment("at", amount=limit_minor, currency=currency),
        payment("above", amount=limit_minor + 1, currency=currency),
    ])
    assert fired(items, "tier_limit") == ["above"]
    evidence = next(i["evidence"] for i in items if i["rule"] == "tier_limit")
    assert evidence["limit_minor"] == limit_minor


def test_the_tier_comes_from_customer_events_that_arrived_before_the_payment(
    tmp_path: Path,
) -> None:
    # Given premium customers (limit 20,000.00): one registered before its payment arrived,
    # one whose registration (earlier in event time) arrived only after its payment
    items = alerts(tmp_path, [
        customer("c-early", who="alice", tier="premium"),
        payment("p-alice", payer="alice", amount=1_500_000),
        payment("p-carol", payer="carol", amount=1_500_000),
        customer("c-late", who="carol", tier="premium"),
    ])
    # Then the payment evaluated before the registration arrived used the default tier
    assert fired(items, "tier_limit") == ["p-carol"]
    evidence = next(i["evidence"] for i in items if i["rule"] == "tier_limit")
    assert (evidence["tier"], evidence["tier_source"]) == ("basic", "default")


def test_the_tier_is_the_last_writer_by_event_time_among_those_arrived(tmp_path: Path) -> None:
    # An update to plus (later in event time) arrives before the premium registration
    items = alerts(tmp_path, [
        customer("c-update", tier="plus", t=-100, kind="customer.updated"),
        customer("c-register", tier="premium", t=-200),
        payment("p1", amount=600_000),
    ])
    # Then plus (limit 5,000.00) applies: the update is the last writer by event time
    evidence = next(i["evidence"] for i in items if i["rule"] == "tier_limit")
    assert (evidence["tier"], evidence["tier_source"], evidence["limit_minor"]) == (
        "plus", "profile", 500_000)


# --- velocity ---------------------------------------------------------------------------------


def test_velocity_counts_the_interval_ending_at_the_payment_start_excluded(
    tmp_path: Path,
) -> None:
    # Five payments at 0, 10, ... 40 s; the sixth exactly 60 s after the first, then one more
    # at 60.5 s: (t - 60 s, t] leaves the first out for the sixth, not for the seventh.
    events = [payment(f"p{n}", t=10 * n) for n in range(5)]
    events += [payment("sixth", t=60), payment("seventh", t=60.5)]
    items = alerts(tmp_path, events)
    assert fired(items, "velocity") == ["seventh"]
    evidence = next(i["evidence"] for i in items if i["rule"] == "velocity")
    assert (evidence["count"], evidence["max_payments"], evidence["interval_s"]) == (6, 5, 60)


def test_a_duplicate_payment_counts_once(tmp_path: Path) -> None:
    events = [payment(f"p{n}", t=n) for n in range(5)]
    items = alerts(tmp_path, [*events, events[-1], events[-1]])
    assert fired(items, "velocity") == []


# --- new_payee --------------------------------------------------------------------------------


def test_new_payee_fires_above_the_threshold_and_only_for_a_new_payee(tmp_path: Path) -> None:
    items = alerts(tmp_path, [
        payment("at", amount=50_000, payee="bob"),
        payment("known", amount=90_000, payee="bob"),
        payment("above", amount=50_001, payee="carol"),
    ])
    assert fired(items, "new_payee") == ["above"]
    evidence = next(i["evidence"] for i in items if i["rule"] == "new_payee")
    assert (evidence["threshold_minor"], evidence["known_payees"]) == (50_000, 1)


def test_a_payee_forgotten_by_the_payee_memory_is_new_again(tmp_path: Path) -> None:
    rules = FraudRules(known_payees_cap=2)
    items = alerts(tmp_path, [
        payment("first", amount=10, payee="bob"),
        payment("p2", amount=10, payee="carol"),
        payment("p3", amount=10, payee="dan"),
        payment("again", amount=90_000, payee="bob"),
    ], rules)
    assert fired(items, "new_payee") == ["again"]


# --- rules changed for a version --------------------------------------------------------------


def test_changed_rules_change_every_threshold(tmp_path: Path) -> None:
    rules = FraudRules(
        tier_limits_minor={"basic": 1_000, "plus": 5_000, "premium": 10_000},
        velocity_max_payments=2,
        new_payee_threshold_minor=100,
        currency_weights={"JPY": 1},
    )
    items = alerts(tmp_path, [
        payment("p1", amount=1_000, payee="bob"),
        payment("p2", amount=1_001, payee="bob", t=1),
        payment("p3", amount=10, payee="carol", t=2),
        payment("p4", amount=11, currency="JPY", payee="dan", t=200),
    ], rules)
    assert fired(items, "tier_limit") == ["p2", "p4"]  # 11 JPY > 10.00 at weight 1
    assert fired(items, "velocity") == ["p3"]
    assert fired(items, "new_payee") == ["p1", "p4"]
    assert DEFAULT_RULES.tier_limits_minor["basic"] == 100_000  # nothing leaked into defaults


# --- the cross-check against the pipeline's own evaluation ------------------------------------


def python_alerts(
    records: list[RawRecord], rules: FraudRules
) -> list[dict[str, Any]]:
    """fraud-detect's evaluation of every payment in arrival order, one per batch, with the
    tier last written (by event time) among the customer events arrived before it."""
    states: dict[str, PayerState] = {}
    tiers: dict[str, tuple[str, str, str]] = {}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in sorted(records, key=lambda r: r.arrival_ms):
        event = json.loads(record.data)
        if record.stream == "customers":
            stamp = (event["occurred_at"], event["event_id"])
            if stamp > tiers.get(event["key"], ("", "", ""))[1:]:
                tiers[event["key"]] = (event["data"]["tier"], *stamp)
            continue
        env = parse_envelope(event, SourcePosition(record.stream, record.shard_id,
                                                   record.sequence_number))
        assert not isinstance(env, Rejection)
        pay = parse_event(env)
        assert isinstance(pay, PaymentMade)
        if env.event_id in seen:
            continue
        seen.add(env.event_id)
        state = states.get(pay.payer, PayerState(pay.payer))
        tier = tiers.get(pay.payer, (None,))[0]
        result = evaluate(state, [(0, pay)], tier=tier, rules=rules)
        states[pay.payer] = result.state
        out.extend(alert_view_item(a.alert) for a in result.alerts)
    return out


def random_workload(seed: int) -> list[RawRecord]:
    """Three payers each on its shard, event times that often go backwards (up to 200 s),
    four currencies, amounts around every limit, and tier changes arriving in between."""
    rng = random.Random(seed)
    payers = ["p1", "p2", "p3"]
    records: list[RawRecord] = []
    clock = 0.0
    for n in range(160):
        clock += rng.uniform(0, 20)
        arrival = 1_000 + n * 10
        if rng.random() < 0.1:
            who = rng.choice(payers)
            event = customer(f"c{n:03d}", who=who, tier=rng.choice(["basic", "plus", "premium"]),
                             t=-rng.uniform(0, 1e6), kind=rng.choice(
                                 ["customer.registered", "customer.updated"]))
            records.append(RawRecord("customers", SHARD, str(n), who, arrival,
                                     json.dumps(event).encode()))
            continue
        payer = rng.choice(payers)
        at = clock - (rng.uniform(0, 200) if rng.random() < 0.3 else 0)
        event = payment(f"e{n:03d}", payer=payer, payee=f"q{rng.randint(0, 7)}",
                        amount=rng.choice([rng.randint(1, 100_000), rng.randint(1, 3_000_000)]),
                        currency=rng.choice(["USD", "JPY", "KWD", "EUR"]), t=at)
        shard = f"shardId-00000000000{payers.index(payer)}"
        data = json.dumps(event).encode()
        records.append(RawRecord("payments-raw", shard, str(n), payer, arrival, data))
        if rng.random() < 0.05:  # a producer retry, a little later on the same shard
            records.append(RawRecord("payments-raw", shard, str(n) + "5", payer, arrival + 5,
                                     data))
    return records


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rules", [
    DEFAULT_RULES,
    FraudRules(velocity_max_payments=3, velocity_interval_s=60, velocity_lateness_s=10,
               velocity_keep=4, known_payees_cap=3, new_payee_threshold_minor=20_000),
], ids=["default-rules", "tiny-state"])
def test_the_sql_raises_exactly_the_pipelines_alerts(
    tmp_path: Path, seed: int, rules: FraudRules
) -> None:
    records = random_workload(seed)
    for key, body in archive_objects(records).items():
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    batch = recompute(tmp_path, rules)[ALERTS]
    expected = python_alerts(records, rules)
    assert len(expected) > 10  # the check has something to check

    def canonical(items: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(i, sort_keys=True) for i in items)

    assert canonical(batch) == canonical(expected)
