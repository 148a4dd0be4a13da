"""The payments processors' cost models, as `cascata plan` and the bench use them.

Each processor of the payments pipeline declares its model (`Processor.cost_model`): how many
records it emits per record it reads, which tables it writes and how, its handler CPU. The CPU
figures are the medians of `cascata bench` on 2026-11-25 (2 cores) at the measured batch size
nearest the declared one (docs/benchmarks.md); the shares below are the workload's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from cascata.plan import Assumptions, Model, TableUse

INVALID_SHARE = 0.01
"""Share of raw events validate quarantines (the demo's workload uses 5%)."""
ALERT_SHARE = 0.02
"""fraud.alert events per validated payment (the workload generator's fraud share)."""
LATE_SHARE = 0.01
"""Payments arriving after their windows closed."""
ADDED_BYTES: Mapping[str, int] = MappingProxyType({"payments-validated": 160,
                                                  "ledger-entries": 70})
"""Bytes a derived record adds to the record it derives from (lineage: correlation id and
causation), measured on the generated workload (247 B raw, 406 B validated, 478 B posting)."""


def validate(a: Assumptions) -> Model:
    return Model(
        parallelism=8,
        outputs={"payments-validated": 1.0 - INVALID_SHARE},
        added_bytes={"payments-validated": ADDED_BYTES["payments-validated"]},
        tables=(TableUse("dedupe", coalesced=False, writes_per_record=1.0,
                         rcu_per_item=0.0, hot=False),),
        quarantine_per_record=INVALID_SHARE, us_per_record=112.0,
        basis="1:1 minus invalid (quarantined); one duplicate marker (<1 KB, conditional "
              "put, no read) per record; CPU measured",
    )


def postings(a: Assumptions) -> Model:
    return Model(
        outputs={"ledger-entries": 2.0}, us_per_record=95.0,
        added_bytes={"ledger-entries": ADDED_BYTES["ledger-entries"]},
        basis="1:2 (a debit and a credit); CPU measured",
    )


def balances(a: Assumptions) -> Model:
    return Model(
        parallelism=8,
        outputs={}, tables=(TableUse("balances"),), us_per_record=436.0,
        basis="one read and one <1 KB write per account per batch; CPU measured",
    )


def fraud_detect(a: Assumptions) -> Model:
    return Model(
        parallelism=8,
        outputs={"alerts": ALERT_SHARE},
        tables=(
            TableUse("fraud-state"),
            TableUse("alerts-view", coalesced=False, writes_per_record=ALERT_SHARE,
                     rcu_per_item=0.0, hot=False),
        ),
        us_per_record=846.0,
        basis="one read and write per payer per batch, one view write per alert; "
              "alert share assumed; CPU measured",
    )


def windows(a: Assumptions) -> Model:
    return Model(
        parallelism=8,
        outputs={"activity": 2.0, "activity-late": LATE_SHARE},
        tables=(TableUse("activity-view", keys_per_record=2.0, items_per_key=1.0),),
        us_per_record=3960.0,
        basis="each payment in one 5-minute pane of payer and payee, one write per pane "
              "item per batch (closing rewrites nothing); final results (~2 per payment) "
              "assumed; CPU measured before the pane rewrite",
    )


def profiles(a: Assumptions) -> Model:
    return Model(
        parallelism=8,
        outputs={}, tables=(TableUse("profiles", keys_per_record=2.0),),
        us_per_record=822.0,
        basis="one read and write per touched profile (payer and payee) per batch; the "
              "duplicate markers of customer events are left out (rare next to payments); "
              "CPU measured",
    )


def notify(a: Assumptions) -> Model:
    return Model(
        parallelism=8,
        outputs={}, publishes_per_record=1.0,
        tables=(TableUse("alerts-view", coalesced=False, writes_per_record=1.0,
                         rcu_per_item=1.0, hot=False),),
        us_per_record=1759.0,
        basis="one SNS message and one view update per alert; CPU measured",
    )



BY_PROCESSOR: Mapping[str, Callable[[Assumptions], Model]] = MappingProxyType({
    "validate": validate, "postings": postings, "balances": balances,
    "fraud-detect": fraud_detect, "windows": windows, "profiles": profiles, "notify": notify,
})


def parallelism_of(function: str) -> int:
    """Per-item requests the function has in flight at once (1 for a function with no model)."""
    model = BY_PROCESSOR.get(function)
    return model(Assumptions()).parallelism if model else 1
