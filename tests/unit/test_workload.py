"""The workload generator: reproducible, realistic, and honest about what is valid."""

from __future__ import annotations

import json
from collections import Counter

from cascata_runtime.envelope import Rejection, decode_json, parse_envelope
from payments.domain.schemas import PaymentMade, parse_event
from payments.tooling.workload import Generated, WorkloadSpec, generate


def test_the_same_seed_gives_the_same_workload() -> None:
    a = [g.data for g in generate(WorkloadSpec(events=300, seed=3))]
    b = [g.data for g in generate(WorkloadSpec(events=300, seed=3))]
    c = [g.data for g in generate(WorkloadSpec(events=300, seed=4))]
    assert a == b and a != c


def test_shares_of_invalid_events_and_duplicates_are_close_to_asked() -> None:
    items = list(generate(WorkloadSpec(events=5000, seed=1, invalid_share=0.1,
                                       duplicate_share=0.05)))
    originals = [g for g in items if not g.duplicate]
    assert len(originals) == 5000
    assert 400 < sum(not g.valid for g in originals) < 600
    assert 150 < sum(g.duplicate for g in items) < 350


def test_the_generator_knows_the_rejection_code_validate_gives() -> None:
    # The demo's reference model relies on this, so check it against the real parser.
    for g in generate(WorkloadSpec(events=2000, seed=5, invalid_share=0.3)):
        obj = decode_json(g.data)
        result = obj if isinstance(obj, Rejection) else parse_envelope(obj)
        if not isinstance(result, Rejection):
            result = parse_event(result)
        if g.valid:
            assert isinstance(result, PaymentMade)
            assert result.amount.amount_minor == g.amount_minor
        else:
            assert isinstance(result, Rejection)
            assert result.code == g.expected_code


def test_amounts_are_integers_and_currencies_vary() -> None:
    items = [json.loads(g.data) for g in generate(WorkloadSpec(events=1000, invalid_share=0))]
    assert all(isinstance(i["data"]["amount_minor"], int) for i in items)
    assert len(Counter(i["data"]["currency"] for i in items)) >= 3
    assert len({i["key"] for i in items}) > 20


def test_bad_specs_are_described() -> None:
    assert WorkloadSpec(events=-1).problems()
    assert WorkloadSpec(events=10, invalid_share=2).problems()


def test_the_hot_share_sends_that_share_of_payments_to_the_hottest_merchants() -> None:
    # Given the default mix and the same seed with 30% of payments to 3 merchants
    plain = [g for g in generate(WorkloadSpec(events=3000, seed=5, accounts=2000)) if g.valid]
    hot = [g for g in generate(WorkloadSpec(events=3000, seed=5, accounts=2000, hot_share=0.3,
                                            hot_merchants=3)) if g.valid]
    # Then the three busiest payees take about 30% of the payments outside the fraud bursts
    # (about nine in ten), against a few percent by default
    def top3(items: list[Generated]) -> float:
        counts = Counter(g.payee for g in items)
        return sum(n for _, n in counts.most_common(3)) / len(items)

    assert top3(plain) < 0.1
    assert 0.24 < top3(hot) < 0.4


def test_the_default_hot_share_leaves_the_workload_as_it_was() -> None:
    default = [g.data for g in generate(WorkloadSpec(events=500, seed=3))]
    explicit = [g.data for g in generate(WorkloadSpec(events=500, seed=3, hot_share=0.0))]
    assert default == explicit
    assert WorkloadSpec(events=10, hot_share=1.5).problems()
