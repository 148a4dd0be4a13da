"""A hot merchant on the whole pipeline: exact under late producer retries and crash re-emits.

Every view recognises a copy exactly, however many events its key saw in between: the origin
gate by event id within the dedupe horizon, the state engine's fences by lineage. This runs the
local runtime end to end with one merchant receiving thousands of payments, producer retries
sent hundreds of events after their originals, and chaos (handler crashes after their side
effects, so whole batches are emitted again; PutRecords partial failures; duplicate sends).
"""

from __future__ import annotations

from collections import Counter

import pytest

from cascata.local.chaos import ChaosSettings
from payments.tooling.demo import DemoOptions, run_demo
from payments.tooling.workload import WorkloadSpec, generate

pytestmark = pytest.mark.pipeline

SPEC = WorkloadSpec(events=2500, seed=5, hot_share=0.95, hot_merchants=1, duplicate_share=0.05,
                    duplicate_delay=(200, 800))


def test_the_workload_is_what_this_test_claims() -> None:
    events = list(generate(SPEC))
    payees = Counter(e.payee for e in events if e.valid and not e.duplicate)
    (_, hottest), = payees.most_common(1)
    assert hottest >= 2000
    first_seen: dict[str, int] = {}
    gaps = []
    for position, event in enumerate(events):
        if event.event_id is None:
            continue
        if event.duplicate:
            gaps.append(position - first_seen[event.event_id])
        else:
            first_seen.setdefault(event.event_id, position)
    # (the retries still pending when the workload ends are sent right after it)
    assert sum(gap >= 200 for gap in gaps) >= 100


def test_a_hot_merchant_with_late_retries_and_crash_re_emits_is_exact_in_every_view() -> None:
    # Given the workload above, with chaos on
    result = run_demo(DemoOptions(workload=SPEC, chaos=ChaosSettings(seed=5),
                                  show_progress=False, timeout_s=1500))
    # Then every balance, profile, window and alert is exactly the reference's
    failed = [(i.name, i.detail) for i in result.invariants if not i.ok]
    assert failed == []
    # and the faults this is about really happened
    injected = result.chaos["injected"] if result.chaos else {}
    assert injected["handler_crashes"] > 0 and injected["duplicate_sends"] > 0
    assert sum(s.retried for s in result.stages) > 0
