"""`cascata demo` end to end on the embedded emulator: every invariant, with and without chaos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascata.cli import main
from cascata.local.chaos import ChaosSettings
from payments.pipeline import PIPELINE
from payments.tooling.demo import DemoOptions, run_demo
from payments.tooling.reference import Observed, Reference, check
from payments.tooling.workload import WorkloadSpec, generate

pytestmark = pytest.mark.pipeline
ROOT = Path(__file__).resolve().parents[2]


def test_demo_json_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--events", "300", "--seed", "11", "--rate", "600", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True
    assert result["offered_eps"] == 600
    assert result["applied"] > 250 and result["peak_rss_mb"] > 0
    assert set(result["invariants"]) == {
        "no_event_lost", "no_event_applied_twice", "invalid_events_quarantined_with_reason",
        "balances_sum_to_zero_per_currency", "profiles_match_reference",
        "every_alert_notified_exactly_once", "window_results_equal_reference"}
    assert all(v["ok"] and v["detail"] for v in result["invariants"].values())
    assert set(result["stages"]) == {p.name for p in PIPELINE.processors}
    validate = result["stages"]["validate"]
    assert validate["in"] if "in" in validate else validate["records_in"] >= 300
    assert result["throughput_eps"] > 0
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]


def test_demo_with_chaos_on_2000_events_keeps_every_invariant() -> None:
    chaos = ChaosSettings(seed=3)
    # 2,000 events: every kind of fault still happens many times (seed 3: 14 handler crashes,
    # 466 failed PutRecords entries, 41 duplicate sends, retries in six stages) in a third of
    # the time 5,000 took. Chaos on a larger, hot-keyed workload is test_hot_keys.py's.
    # A generous drain timeout: this is a correctness test, not a speed test (bench is that).
    result = run_demo(DemoOptions(workload=WorkloadSpec(events=2000, seed=3), chaos=chaos,
                                  show_progress=False, timeout_s=1200))
    failed = [i for i in result.invariants if not i.ok]
    assert failed == []
    injected = result.chaos["injected"] if result.chaos else {}
    # The faults really happened, and the pipeline absorbed them.
    assert injected["handler_crashes"] > 0
    assert injected["put_records_entries_failed"] > 0
    assert injected["duplicate_sends"] > 0
    assert sum(s.retried for s in result.stages) > 0
    assert result.sent >= 2000


def test_the_invariants_fail_when_the_views_are_wrong() -> None:
    # Guard: the checker is able to fail (an applied-twice and a lost event).
    events = list(generate(WorkloadSpec(events=50, seed=2, invalid_share=0)))
    ref = Reference.of(events)
    first = events[0]
    assert first.payer and first.currency and first.amount_minor
    items = {a: {"balances": dict(b), "postings": ref.postings[a]}
             for a, b in ref.balances.items()}
    items[first.payer]["balances"][first.currency] -= first.amount_minor  # applied twice
    from collections import Counter

    seen = Observed(items, Counter(ref.valid_ids), [], 0)
    by_name = {i.name: i for i in check(ref, seen)}
    assert not by_name["no_event_lost"].ok
    assert not by_name["balances_sum_to_zero_per_currency"].ok
    lost = Observed(items, Counter(list(ref.valid_ids)[1:]), [], 1)
    assert not {i.name: i for i in check(ref, lost)}["no_event_lost"].ok


def test_the_reference_orders_times_by_instant_not_by_text() -> None:
    """`…:15Z` sorts after `…:15.968Z` as text; a profile's last_seen is the later instant."""
    from dataclasses import replace

    payments = [g for g in generate(WorkloadSpec(events=40, seed=5, invalid_share=0))
                if g.valid and not g.duplicate][:2]
    payer = payments[0].payer
    early, late = "2026-11-02T12:20:15Z", "2026-11-02T12:20:15.968Z"
    events = [replace(payments[0], occurred_at=late), replace(payments[1], payer=payer,
                                                              occurred_at=early)]
    reference = Reference.of(events)
    reference.add_customers([], events)
    profile = reference.profiles[payer]
    assert profile["last_seen"] == late and profile["first_seen"] == early
