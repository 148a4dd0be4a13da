"""The audit's SQL validation agrees with the pipeline's Python validators, record by record.

The oracle is the pipeline's own code path for a raw record: `decode_json`, `parse_envelope`,
then `sort_by_type` with the kinds validate accepts on payments-raw (payment.made) and profiles
accepts on customers (payment.made, customer.registered, customer.updated). The records are
the workload generator's (valid, invalid of every kind it makes, duplicates) and
hypothesis-made edge cases around every check: boundaries, wrong JSON types, Unicode upper-case
and whitespace quirks, Python's `$` matching before a final newline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascata_runtime.archive import RawRecord
from cascata_runtime.envelope import Rejection, SourcePosition, decode_json, parse_envelope
from payments.domain.schemas import (
    CustomerRegistered,
    CustomerUpdated,
    PaymentMade,
    sort_by_type,
)
from payments.domain.validate import validate_batch
from payments.tooling.audit import archive_objects, checked_records
from payments.tooling.workload import WorkloadSpec, generate, generate_customers

PAYMENTS = "payments-raw"
CUSTOMERS = "customers"
SHARD = "shardId-000000000000"


def python_verdict(source: str, data: bytes) -> str | None:
    """The code the pipeline quarantines the record with, None when it accepts it."""
    obj = decode_json(data)
    if isinstance(obj, Rejection):
        return obj.code
    env = parse_envelope(obj, causation=SourcePosition(source, SHARD, "1"))
    if isinstance(env, Rejection):
        return env.code
    kinds: tuple[Any, ...] = (
        (PaymentMade,) if source == PAYMENTS
        else (PaymentMade, CustomerRegistered, CustomerUpdated)
    )
    _, rejected = sort_by_type([env], *kinds)
    return rejected[0][1].code if rejected else None


def sql_verdicts(tmp: Path, records: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    raw = [
        RawRecord(source, SHARD, str(n + 1), "k", 1_000 + n, data)
        for n, (source, data) in enumerate(records)
    ]
    for key, body in archive_objects(raw).items():
        path = tmp / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    rows = checked_records(tmp)
    by_position = {(r["stream"], int(r["sequence_number"])): r for r in rows}
    assert len(by_position) == len(records)
    return [by_position[(source, n + 1)] for n, (source, _) in enumerate(records)]


def test_the_workload_events_get_the_pipelines_verdict_and_code(tmp_path: Path) -> None:
    # Given the generator's payments and customer events, a third of them invalid
    spec = WorkloadSpec(events=600, seed=5, invalid_share=0.3, duplicate_share=0.05)
    payments = list(generate(spec))
    customers = generate_customers(spec)
    records = [(PAYMENTS, g.data) for g in payments] + [(CUSTOMERS, g.data) for g in customers]
    # When the SQL checks them
    rows = sql_verdicts(tmp_path, records)
    # Then every record gets the pipeline's verdict, with the same rejection code
    expected = [python_verdict(source, data) for source, data in records]
    assert [r["reject_code"] for r in rows] == expected
    assert [r["accepted"] for r in rows] == [code is None for code in expected]
    # and the generator's own expectations hold (the check exercised every invalid kind)
    generated = payments + customers
    assert {g.expected_code for g in generated if not g.valid} <= set(expected)
    assert all((code is None) == g.valid for g, code in zip(generated, expected, strict=True))


# --- hypothesis-made edge cases ---------------------------------------------------------------

MISSING: Any = object()


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, st.just(MISSING))


def mostly(valid: Any, edges: st.SearchStrategy[Any], odds: int = 3) -> st.SearchStrategy[Any]:
    """`valid`, except once in `odds + 1` draws: most records then fail on at most one field,
    so every check, down to the last one, is reached and decides."""
    return st.integers(0, odds).flatmap(lambda n: edges if n == 0 else st.just(valid))


accounts = st.one_of(
    st.sampled_from([
        "alice", "bob", "a" * 64, "a" * 65, "alice\n", "alice\n\n", "\nalice", "al ice", "",
        "a.b_c-d", "ünï", "alice\t",
    ]),
    st.text(max_size=8),
    st.integers(-1, 1),
    st.none(),
)
amounts = st.one_of(
    st.integers(-2, 3),
    st.integers(10**12 - 2, 10**12 + 2),
    st.integers(2**63 - 2, 2**64 + 2),
    st.integers(-(2**64) - 2, -(2**63) + 2),
    st.integers(),
    st.floats(),
    st.sampled_from([1.0, 100.0, -0.0, 1e12, 5e-324]),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=1),
)
currencies = st.one_of(
    st.sampled_from([
        "USD", "usd", "uSd", "JPY", "KWD", "ZZZ", "US", "USDD", "USD\n", "\u00dfp",
        "\ufb06n", "u\u017fd", "USD ", "", "\u0131qd",
    ]),
    st.text(max_size=4),
    st.integers(0, 3),
    st.none(),
)
channels = st.one_of(
    st.sampled_from(["card", "transfer", "wallet", "Card", "card\n", ""]),
    st.integers(0, 2),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.lists(st.sampled_from(["card", 1]), max_size=2),
    st.dictionaries(st.sampled_from(["kind"]), st.sampled_from(["card"]), max_size=1),
)
event_ids = st.one_of(
    st.sampled_from([
        "e1", "e1\n", "-e1", "a" * 128, "a" * 129, "e:1.2_3-4", "", "e 1", "\u00e91",
    ]),
    st.text(max_size=6),
    st.integers(0, 5),
    st.none(),
)
types = st.one_of(
    st.sampled_from([
        "payment.made", "customer.registered", "customer.updated", "ledger.posting",
        "payment.made\n", "Payment.made", "payment", "payment.reversed", "a." + "b" * 63,
    ]),
    st.text(max_size=6),
    st.integers(0, 1),
)
versions = st.one_of(
    st.sampled_from([1, 0, 2, 1000, 1001, -1, True, 1.0, "1", None, 2**70, 2**64]),
)
times = st.sampled_from([
    "2026-11-02T09:00:00Z", "2026-11-02T09:00:00.5Z", "2026-11-02T09:00:00.123456789Z",
    "2026-11-02T09:00:00+00:00", "2026-11-02T09:00:00Z\n", "1969-12-31T23:59:59.999Z",
])
names = st.one_of(
    st.sampled_from([
        " Alice ", "\u3000", "", "   ", "x" * 200, "x" * 201, " " + "x" * 200 + " ",
        "\x85x\x85", "\u200bx", "\x1c\x1f", "a\u00a0",
    ]),
    st.text(max_size=10),
    st.integers(0, 1),
    st.none(),
)
emails = st.one_of(
    st.sampled_from([
        "a@b.co", "a@b", "a b@c.d", "a@b.c\n", "x" * 64 + "@b.co", "x" * 65 + "@b.co",
        "a@b..c", "a@b.c.", "a\u00a0@b.c", "@b.c", "a@@b.c", "a@b.c" + "d" * 250,
        "a@b\u2003.c", "\u00e9@b.c", "a@b.c\x0b",
    ]),
    st.emails(),
    st.text(max_size=10),
    st.none(),
)
countries = st.one_of(
    st.sampled_from([
        "gb", "GB", "Gb", "\u00df", "ss", "\ufb01", "\ufb06", "zz", "G", "GBR", "\uff47\uff42",
        "GB\n", "\u0131t",
    ]),
    st.text(max_size=3),
    st.none(),
)
tiers = st.one_of(
    st.sampled_from(["basic", "plus", "premium", "Basic", "gold", "", "plus\n"]),
    st.text(max_size=5),
    st.none(),
)


@st.composite
def raw_events(draw: st.DrawFn) -> tuple[str, bytes]:
    """A record near validity: a valid template with some fields replaced or removed."""
    source = draw(st.sampled_from([PAYMENTS, CUSTOMERS]))
    kind = draw(st.sampled_from(["payment.made", "customer.registered", "customer.updated"]))
    party = draw(mostly("alice", accounts))
    if kind == "payment.made":
        data: dict[str, Any] = {
            "payer": party,
            "payee": draw(mostly("bob", st.one_of(st.just(party), accounts))),
            "amount_minor": draw(mostly(2_000, amounts)),
            "currency": draw(mostly("USD", currencies)),
            "channel": draw(mostly("card", maybe(channels))),
        }
    else:
        data = {
            "customer_id": party,
            "name": draw(mostly("Alice", maybe(names))),
            "email": draw(mostly("a@example.com", maybe(emails))),
            "country": draw(mostly("GB", maybe(countries))),
            "tier": draw(mostly("plus", maybe(tiers))),
        }
    for name in list(data):
        if draw(st.integers(0, 19)) == 0:
            data[name] = MISSING
    event: dict[str, Any] = {
        "event_id": draw(mostly("e-1", event_ids, odds=15)),
        "type": draw(mostly(kind, types, odds=15)),
        "version": draw(mostly(1, versions, odds=15)),
        "key": draw(mostly(party, accounts, odds=15)),
        "occurred_at": draw(times),
        "data": {k: v for k, v in data.items() if v is not MISSING},
        "correlation_id": draw(mostly(MISSING, st.one_of(event_ids, st.none()), odds=15)),
    }
    if draw(st.integers(0, 29)) == 0:
        event["data"] = draw(st.sampled_from([[], "x", None, 1]))
    for name in list(event):
        if draw(st.integers(0, 49)) == 0:
            event[name] = MISSING
    body = {k: v for k, v in event.items() if v is not MISSING}
    return source, json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(raw_events(), min_size=1, max_size=50))
def test_edge_cases_get_the_pipelines_verdict_and_code(
    tmp_path_factory: pytest.TempPathFactory, records: list[tuple[str, bytes]]
) -> None:
    rows = sql_verdicts(tmp_path_factory.mktemp("archive"), records)
    got = [(r["accepted"], r["reject_code"] if r["kind"] == "events" else None) for r in rows]
    want = []
    for (source, data), row in zip(records, rows, strict=True):
        code = python_verdict(source, data)
        # Codes may differ where payments.tooling.audit says so: errors/ lines carry the archive's
        # reason (the first problem in the order archive_entry checks), and the pipeline's own
        # types (ledger.posting, ...) are unexpected_type whatever else is wrong with them.
        exact = row["kind"] == "events" and not (
            row["reject_code"] == "unexpected_type" and own_type(data)
        )
        want.append((code is None, code if exact else None))
        if not exact:
            got[len(want) - 1] = (got[len(want) - 1][0], None)
    assert got == want


def own_type(data: bytes) -> bool:
    event = json.loads(data)
    return event.get("type") in OWN_TYPES and event.get("version") == 1


OWN_TYPES = ("ledger.posting", "fraud.alert", "window.closed", "payment.late")


def test_a_lone_surrogate_is_refused_alike_by_the_pipeline_and_the_audit(tmp_path: Path) -> None:
    # A lone surrogate escape has no UTF-8 form: the input policy refuses it everywhere, so the
    # archive files it under errors/ and the audit counts it rejected with the same code.
    event = (b'{"event_id":"e1","type":"payment.made","version":1,"key":"alice",'
             b'"occurred_at":"2026-11-02T09:00:00Z","data":{"payer":"alice","payee":"bob",'
             b'"amount_minor":5,"currency":"USD","note":"\\ud800"}}')
    [row] = sql_verdicts(tmp_path, [(PAYMENTS, event)])
    assert (row["accepted"], row["reject_code"]) == (False, "invalid_text")
    assert python_verdict(PAYMENTS, event) == "invalid_text"


def test_json_nested_past_the_policy_is_refused_alike(tmp_path: Path) -> None:
    note = b"[" * 40 + b"]" * 40
    event = (b'{"event_id":"e1","type":"payment.made","version":1,"key":"alice",'
             b'"occurred_at":"2026-11-02T09:00:00Z","data":{"payer":"alice","payee":"bob",'
             b'"amount_minor":5,"currency":"USD","note":' + note + b'}}')
    [row] = sql_verdicts(tmp_path, [(PAYMENTS, event)])
    assert (row["accepted"], row["reject_code"]) == (False, "too_deep")
    assert python_verdict(PAYMENTS, event) == "too_deep"


def test_validate_quarantines_a_channel_that_is_an_object() -> None:
    event = {"event_id": "e1", "type": "payment.made", "version": 1, "key": "alice",
             "occurred_at": "2026-11-02T09:00:00Z",
             "data": {"payer": "alice", "payee": "bob", "amount_minor": 5, "currency": "USD",
                      "channel": {"kind": "card"}}}
    env = parse_envelope(event, causation=SourcePosition(PAYMENTS, SHARD, "1"))
    assert not isinstance(env, Rejection)
    effects = validate_batch([env], output_stream="payments-validated")
    assert [r.code for _, r in effects.quarantined] == ["invalid_channel"]
