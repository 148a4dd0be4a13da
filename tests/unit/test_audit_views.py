"""The audit's recomputation of balances, profiles and activity-view from small hand-written
archives, and cross-checks against the pipeline's own domain code on the generated workload."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cascata_runtime.archive import RawRecord
from cascata_runtime.envelope import Rejection, SourcePosition, format_time, parse_envelope
from payments.domain.fraud import DEFAULT_RULES
from payments.domain.profiles import Fact, Profile, apply_facts, facts_of
from payments.domain.schemas import PaymentMade, WindowDirection, parse_event
from payments.domain.windows import PaneState, WindowConfig, pane_key
from payments.tooling.audit import (
    ACTIVITY,
    BALANCES,
    PROFILES,
    SPECS,
    archive_objects,
    recompute,
)
from payments.tooling.workload import WorkloadSpec, generate, generate_customers

BASE = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
SHARD = "shardId-000000000000"


def payment(event_id: str, payer: str, payee: str, amount: int, currency: str = "USD", *,
            t: float = 0) -> dict[str, Any]:
    return {"event_id": event_id, "type": "payment.made", "version": 1, "key": payer,
            "occurred_at": format_time(BASE + timedelta(seconds=t)),
            "data": {"payer": payer, "payee": payee, "amount_minor": amount,
                     "currency": currency}}


def customer_event(event_id: str, who: str, *, at: str, kind: str = "customer.registered",
                   **fields: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "version": 1, "key": who, "occurred_at": at,
            "data": {"customer_id": who, **fields}}


def write(tmp: Path, records: Iterable[RawRecord]) -> Path:
    for key, body in archive_objects(records).items():
        path = tmp / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return tmp


def raw(stream: str, items: Sequence[Mapping[str, Any] | bytes], *, first: int = 1
        ) -> list[RawRecord]:
    return [
        RawRecord(stream, SHARD, str(first + n), "k", 1_000 + first + n,
                  item if isinstance(item, bytes) else json.dumps(item).encode())
        for n, item in enumerate(items)
    ]


def by_key(items: list[dict[str, Any]], view: str) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(str(i[k]) for k in SPECS[view].key): i for i in items}


# --- balances ---------------------------------------------------------------------------------


def test_balances_apply_each_distinct_valid_payment_once(tmp_path: Path) -> None:
    # Given two payments, one sent twice, a payment back that nets USD to zero, a currency
    # written in lower case, and records the pipeline quarantines
    first = payment("p1", "alice", "bob", 2_000)
    valid = [first, first, payment("p2", "bob", "alice", 2_000, t=1),
             payment("p3", "alice", "carol", 700, "eur", t=2)]
    invalid: list[Mapping[str, Any] | bytes] = [
        {**payment("bad-1", "alice", "bob", 1), "data": {**first["data"], "amount_minor": 1.5}},
        payment("bad-2", "alice", "bob", 5, "ZZZ"),
        payment("bad-3", "alice", "alice", 5),
        customer_event("bad-4", "alice", at="2026-01-01T00:00:00Z", name="A", email="a@b.co",
                       country="GB", tier="plus"),
        b"payment alice->bob 20.00 USD",
    ]
    records = raw("payments-raw", [*valid, *invalid])
    # and the same archived record again in another object (a retried archiver batch)
    records += [RawRecord("payments-raw", SHARD, "1", "k", 1_001, json.dumps(first).encode())]
    # When the views are recomputed
    batch = recompute(write(tmp_path, records), DEFAULT_RULES)
    # Then each account holds its postings once, zero balances included
    assert batch[BALANCES] == [
        {"account_id": "alice", "balances": {"USD": 0, "EUR": -700}, "postings": 3},
        {"account_id": "bob", "balances": {"USD": 0}, "postings": 2},
        {"account_id": "carol", "balances": {"EUR": 700}, "postings": 1},
    ]


def test_an_archive_of_physical_stream_names_is_read_as_its_streams(tmp_path: Path) -> None:
    # Firehose's transformation names the stream by its physical name
    records = raw("cascata-prod-payments-raw", [payment("p1", "alice", "bob", 5)])
    records += raw("cascata-prod-customers", [customer_event(
        "c1", "alice", at="2026-01-01T00:00:00Z", name="A", email="a@b.co", country="GB",
        tier="plus")])
    batch = recompute(write(tmp_path, records), DEFAULT_RULES)
    assert [b["account_id"] for b in batch[BALANCES]] == ["alice", "bob"]
    assert by_key(batch[PROFILES], PROFILES)[("alice",)]["tier"] == "plus"


def test_balances_equal_the_generators_reference(tmp_path: Path) -> None:
    from payments.tooling.reference import Reference

    events = list(generate(WorkloadSpec(events=1_500, seed=9, duplicate_share=0.1)))
    batch = recompute(write(tmp_path, raw("payments-raw", [e.data for e in events])),
                      DEFAULT_RULES)
    ref = Reference.of(events)
    assert {b["account_id"]: b["balances"] for b in batch[BALANCES]} == ref.balances
    assert {b["account_id"]: b["postings"] for b in batch[BALANCES]} == ref.postings


# --- profiles ---------------------------------------------------------------------------------


def test_profile_fields_are_the_last_writer_by_event_time(tmp_path: Path) -> None:
    customers = [
        # an update later in event time that arrives first, then the registration it amends
        customer_event("u1", "alice", at="2026-02-01T00:00:00Z", kind="customer.updated",
                       tier="premium", email="alice@new.example"),
        customer_event("r1", "alice", at="2026-01-01T00:00:00.000001Z", name="  Alice  ",
                       email="alice@example.com", country="gb", tier="basic"),
        # an older update arriving last changes nothing; a second registration, earlier in
        # event time, moves registered_at but loses every field to the later events
        customer_event("u0", "alice", at="2025-01-01T00:00:00Z", kind="customer.updated",
                       country="FR"),
        customer_event("r0", "alice", at="2024-06-01T12:00:00.5Z", name="Old",
                       email="old@example.com", country="DE", tier="plus"),
        # the same instant: the greater event id wins
        customer_event("z9", "bob", at="2026-01-01T00:00:00Z", kind="customer.updated",
                       tier="plus"),
        customer_event("a1", "bob", at="2026-01-01T00:00:00Z", kind="customer.updated",
                       tier="premium"),
    ]
    batch = recompute(write(tmp_path, raw("customers", customers)), DEFAULT_RULES)
    assert batch[PROFILES] == [
        {"customer_id": "alice", "name": "Alice", "email": "alice@new.example",
         "country": "GB", "tier": "premium", "registered_at": "2024-06-01T12:00:00.500Z"},
        {"customer_id": "bob", "tier": "plus"},
    ]


def test_profile_activity_and_the_most_recent_counterparties(tmp_path: Path) -> None:
    # Given alice paying 20 distinct payees at 0, 1, ... 18 s (two at 18 s), and paid by a 21st
    # at 0 s, in another currency, by a payment that came on the customers stream
    payments = [payment(f"p{n:02d}", "alice", f"payee{n:02d}", 10, t=n) for n in range(19)]
    payments.append(payment("tie", "alice", "payee99", 10, t=18))
    records = raw("payments-raw", payments)
    records += raw("customers", [payment("in1", "zed", "alice", 300, "JPY", t=0)])
    # When the views are recomputed
    batch = recompute(write(tmp_path, records), DEFAULT_RULES)
    alice = by_key(batch[PROFILES], PROFILES)[("alice",)]
    # Then activity counts every payment
    assert alice["as_payer"] == {"USD": {"count": 20, "volume_minor": 200}}
    assert alice["as_payee"] == {"JPY": {"count": 1, "volume_minor": 300}}
    assert alice["first_seen_at"] == "2026-11-02T09:00:00Z"
    assert alice["last_seen_at"] == "2026-11-02T09:00:18Z"
    # and the 20 most recent counterparties remain: of the two oldest, at the same instant,
    # the smaller id is evicted
    assert alice["counterparties_truncated"] is True
    assert len(alice["counterparties"]) == 20
    assert "payee00" not in alice["counterparties"]
    assert alice["counterparties"]["zed"] == int(BASE.timestamp()) * 1_000_000
    # and a payment that came on the customers stream counts in profiles, not in balances
    assert "zed" not in {b["account_id"] for b in batch[BALANCES]}


def python_profiles(events: Iterable[tuple[str, bytes]]) -> dict[str, dict[str, Any]]:
    """The profiles domain applied to every distinct valid event once: a copy of an event on
    the same stream is what the origin gate suppresses upstream of the domain."""
    facts: dict[str, list[Fact]] = {}
    seen: set[tuple[str, str]] = set()
    for n, (stream, data) in enumerate(events):
        try:
            env = parse_envelope(json.loads(data), SourcePosition(stream, SHARD, str(n)))
        except ValueError:
            continue
        if isinstance(env, Rejection):
            continue
        event = parse_event(env)
        if isinstance(event, Rejection) or (stream == "payments-raw"
                                            and not isinstance(event, PaymentMade)):
            continue
        if (stream, env.event_id) in seen:
            continue
        seen.add((stream, env.event_id))
        for fact in facts_of(event):
            facts.setdefault(fact.customer_id, []).append(fact)
    out = {}
    for customer, found in facts.items():
        state = apply_facts(Profile(customer), found)
        item = state.to_item()
        out[customer] = {k: v for k, v in item.items() if k in SPECS[PROFILES].attributes
                         or k == "customer_id"}
    return out


def test_profiles_equal_the_profiles_domain_on_the_workload(tmp_path: Path) -> None:
    spec = WorkloadSpec(events=1_500, seed=4, duplicate_share=0.1)
    payments = [("payments-raw", g.data) for g in generate(spec)]
    customers = [("customers", g.data) for g in generate_customers(spec)]
    records = raw("payments-raw", [d for _, d in payments])
    records += raw("customers", [d for _, d in customers])
    batch = recompute(write(tmp_path, records), DEFAULT_RULES)
    expected = python_profiles([*payments, *customers])
    assert any(p.get("counterparties_truncated") for p in expected.values())
    assert {p["customer_id"]: p for p in batch[PROFILES]} == expected


# --- activity-view ----------------------------------------------------------------------------


def test_pane_totals_equal_the_windows_domain_with_every_payment_on_time(
    tmp_path: Path,
) -> None:
    # Given payments at awkward instants: pane boundaries, sub-second, before 1970
    times = [0, 0.000001, 299.999999, 300, 599, 600, -0.5, -86_400 * 365 * 60]
    events = [payment(f"p{n}", "alice" if n % 2 else "bob", "carol", 100 + n, t=t)
              for n, t in enumerate(times)]
    events += [payment("jpy", "bob", "alice", 7, "JPY", t=1)]
    batch = recompute(write(tmp_path, raw("payments-raw", events)), DEFAULT_RULES)
    # Then each (account, pane) holds what the windows domain would, all on time
    config = WindowConfig()
    panes: dict[tuple[str, str], PaneState] = {}
    for event in events:
        env = parse_envelope(event)
        assert not isinstance(env, Rejection)
        pay = parse_event(env)
        assert isinstance(pay, PaymentMade)
        t_us = (pay.envelope.occurred_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
            microseconds=1)
        start = config.pane_start(t_us)
        first_end = config.windows_of_pane(start)[0].end_s
        sides: tuple[tuple[str, WindowDirection], ...] = (
            (pay.payer, "out"), (pay.payee, "in"))
        for account, direction in sides:
            key = (account, pane_key(start))
            pane = panes.get(key, PaneState(account, start))
            panes[key] = pane.add(first_end, direction, pay.amount.currency,
                                  pay.amount.amount_minor)
    expected = {}
    for (account, key), pane in panes.items():
        item = {**pane.to_item(config), "account_id": account, "window_key": key}
        expected[(account, key)] = {k: v for k, v in item.items()
                                    if k in SPECS[ACTIVITY].attributes
                                    or k in ("account_id", "window_key")}
    assert by_key(batch[ACTIVITY], ACTIVITY) == expected


def test_instants_are_written_as_each_view_writes_them(tmp_path: Path) -> None:
    from payments.tooling.audit import ALERTS

    # A microsecond and half a second past the minute, above alice's default tier limit
    events = [{**payment("p1", "alice", "bob", 200_000), "occurred_at": at}
              for at in ("2026-11-02T09:00:00.000001Z", "2026-11-02T09:00:00.5+00:00")]
    events[1]["event_id"] = "p2"
    batch = recompute(write(tmp_path, raw("payments-raw", events)), DEFAULT_RULES)
    alice = by_key(batch[PROFILES], PROFILES)[("alice",)]
    # profiles keep the instant exactly (0, 3 or 6 digits)
    assert (alice["first_seen_at"], alice["last_seen_at"]) == (
        "2026-11-02T09:00:00.000001Z", "2026-11-02T09:00:00.500Z")
    # alerts: occurred_at as format_time (milliseconds when there is a fraction), the key
    # with exactly three digits so it sorts like time
    tier = {a["payment_event_id"]: a for a in batch[ALERTS] if a["rule"] == "tier_limit"}
    assert tier["p1"]["occurred_at"] == "2026-11-02T09:00:00.000Z"
    assert tier["p2"]["occurred_at"] == "2026-11-02T09:00:00.500Z"
    assert tier["p1"]["alert_key"].startswith("2026-11-02T09:00:00.000Z#")
