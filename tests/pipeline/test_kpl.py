"""A KPL-aggregated record through the whole payments pipeline on the local runtime.

Three payments packed into one Kinesis record on `payments-raw` (as the KPL or aws-kinesis-agg
would put them) reach the balances view as three payments; the same aggregate put again (a
producer's retry) changes nothing; a malformed aggregate is quarantined with its bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from cascata.testing import LocalPipeline
from payments.pipeline import PIPELINE
from tests.pipeline.bad_input_cases import case
from tests.support.events import payment
from tests.support.kpl import aggregate_events


@pytest.fixture(scope="module")
def local() -> Iterator[LocalPipeline]:
    with LocalPipeline(PIPELINE, stage="kpl") as running:
        yield running


def balance(local: LocalPipeline, account: str) -> dict[str, int]:
    item = local.item("balances", account_id=account)
    assert item is not None, account
    return {currency: int(amount) for currency, amount in item["balances"].items()}


@case("records on every stream", "a KPL-aggregated record of three payments, and the same "
      "record again (a producer's retry)",
      "de-aggregated: three events, each under its own key, each counted once")
def test_three_payments_in_one_aggregate_reach_the_balances(local: LocalPipeline) -> None:
    # Given one KPL record of three payments on the raw stream, then the producer's retry of it
    blob = aggregate_events([
        payment("kpl-1", payer="kpl-alice", payee="kpl-bob", amount_minor=1000),
        payment("kpl-2", payer="kpl-bob", payee="kpl-carol", amount_minor=300),
        payment("kpl-3", payer="kpl-carol", payee="kpl-alice", amount_minor=50),
    ])
    local.produce("payments-raw", [blob], key="kpl-aggregate")
    local.drain()
    local.produce("payments-raw", [blob], key="kpl-aggregate")
    local.drain()
    # Then each payment is validated once, and the balances reflect all three, once
    validated = [r for r in local.records("payments-validated")
                 if str(r.get("event_id", "")).startswith("kpl-")]
    assert sorted(r["event_id"] for r in validated) == ["kpl-1", "kpl-2", "kpl-3"]
    assert balance(local, "kpl-alice") == {"USD": -1000 + 50}
    assert balance(local, "kpl-bob") == {"USD": 1000 - 300}
    assert balance(local, "kpl-carol") == {"USD": 300 - 50}
    assert local.failures() == []


@case("records on every stream", "a KPL aggregate with a wrong digest or a malformed body",
      "quarantined whole with `kpl_malformed` and the exact fault, its bytes kept")
def test_a_malformed_aggregate_is_quarantined_with_its_bytes(local: LocalPipeline) -> None:
    blob = aggregate_events([payment("kpl-bad", payer="kpl-dan", payee="kpl-erin")])
    broken = blob[:-1] + bytes([blob[-1] ^ 0xFF])
    local.produce("payments-raw", [broken], key="kpl-broken")
    local.drain()
    [entry] = [q for q in local.quarantined("validate")
               if q.get("partition_key") == "kpl-broken"]
    assert entry["reason"]["code"] == "kpl_malformed"
    assert base64.b64decode(entry["data_base64"]) == broken
    assert local.item("balances", account_id="kpl-dan") is None
