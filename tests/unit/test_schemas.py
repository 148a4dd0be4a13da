"""Envelope and schema parsing: every accepted shape and every rejection reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cascata_runtime.envelope import (
    Envelope,
    Rejection,
    decode_json,
    derive_event_id,
    parse_envelope,
)
from payments.domain.schemas import (
    CustomerRegistered,
    CustomerUpdated,
    LedgerPosting,
    Money,
    PaymentMade,
    parse_event,
)
from tests.support.events import payment


def parse(obj: dict[str, Any]) -> Any:
    env = parse_envelope(obj)
    if isinstance(env, Rejection):
        return env
    return parse_event(env)


def test_the_design_example_payment_parses_into_typed_values() -> None:
    event = parse(payment())
    assert isinstance(event, PaymentMade)
    assert (event.payer, event.payee) == ("alice", "bob")
    assert event.amount == Money(20000, "USD")
    assert event.channel == "card"
    assert event.envelope.occurred_at.isoformat() == "2020-06-25T14:06:00+00:00"
    assert event.envelope.correlation_id == event.envelope.event_id


def test_a_lower_case_currency_is_normalised() -> None:
    event = parse(payment(currency="eur"))
    assert isinstance(event, PaymentMade)
    assert event.amount.currency == "EUR"


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"event_id": ""}, "event_id", "invalid_event_id"),
        ({"event_id": "has space"}, "event_id", "invalid_event_id"),
        ({"type": "Payment Made"}, "type", "invalid_type"),
        ({"type": "order.placed"}, "type", "unknown_schema"),
        ({"version": 2}, "type", "unknown_schema"),
        ({"version": "1"}, "version", "invalid_version"),
        ({"version": True}, "version", "invalid_version"),
        ({"key": ""}, "key", "invalid_key"),
        ({"key": "mallory"}, "key", "key_mismatch"),
        ({"occurred_at": "2020-06-25 14:06:00"}, "occurred_at", "invalid_time"),
        ({"occurred_at": "2020-06-25T14:06:00+02:00"}, "occurred_at", "invalid_time"),
        ({"occurred_at": "2020-02-30T14:06:00Z"}, "occurred_at", "invalid_time"),
        ({"data": []}, "data", "invalid_data"),
        ({"correlation_id": 7}, "correlation_id", "invalid_correlation_id"),
    ],
)
def test_envelope_rejections_name_the_field(change: dict[str, Any], field: str, code: str) -> None:
    result = parse(payment(**change))
    assert isinstance(result, Rejection)
    assert (result.field, result.code) == (field, code)
    assert result.reason


@pytest.mark.parametrize("missing", ["event_id", "type", "version", "key", "occurred_at", "data"])
def test_a_missing_envelope_field_is_named(missing: str) -> None:
    obj = payment()
    del obj[missing]
    result = parse(obj)
    assert isinstance(result, Rejection)
    assert result.field == missing and result.code == "missing"


@pytest.mark.parametrize(
    ("data", "field", "code"),
    [
        ({"payer": "alice", "payee": "alice"}, "data.payee", "same_party"),
        ({"payee": "b" * 65}, "data.payee", "invalid_account"),
        ({"payee": "bob smith"}, "data.payee", "invalid_account"),
        ({"amount_minor": 200.0}, "data.amount_minor", "amount_not_integer"),
        ({"amount_minor": "20000"}, "data.amount_minor", "amount_not_integer"),
        ({"amount_minor": True}, "data.amount_minor", "amount_not_integer"),
        ({"amount_minor": 0}, "data.amount_minor", "amount_out_of_range"),
        ({"amount_minor": -5}, "data.amount_minor", "amount_out_of_range"),
        ({"amount_minor": 10**12 + 1}, "data.amount_minor", "amount_out_of_range"),
        ({"currency": "XXX"}, "data.currency", "unknown_currency"),
        ({"currency": 840}, "data.currency", "unknown_currency"),
        ({"channel": "cash"}, "data.channel", "invalid_channel"),
    ],
)
def test_payment_rejections_name_the_field(data: dict[str, Any], field: str, code: str) -> None:
    obj = payment()
    obj["data"].update(data)
    result = parse(obj)
    assert isinstance(result, Rejection)
    assert (result.field, result.code) == (field, code)


@pytest.mark.parametrize("missing", ["payer", "payee", "amount_minor", "currency"])
def test_missing_payment_fields_are_named(missing: str) -> None:
    obj = payment()
    del obj["data"][missing]
    result = parse(obj)
    assert isinstance(result, Rejection)
    assert result.field == f"data.{missing}" and result.code == "missing"


def test_amount_bounds_are_inclusive() -> None:
    assert isinstance(parse(payment(amount_minor=1)), PaymentMade)
    assert isinstance(parse(payment(amount_minor=10**12)), PaymentMade)


def registration(**data: Any) -> dict[str, Any]:
    base = {"customer_id": "alice", "name": "Alice Liddell", "email": "alice@example.com",
            "country": "GB", "tier": "plus"}
    base.update(data)
    return {"event_id": "c-1", "type": "customer.registered", "version": 1, "key": "alice",
            "occurred_at": "2020-06-25T14:00:00Z", "data": base}


def test_customer_registered_parses() -> None:
    event = parse(registration(country="gb"))
    assert isinstance(event, CustomerRegistered)
    assert event.country == "GB" and event.tier == "plus"


@pytest.mark.parametrize(
    ("data", "field", "code"),
    [
        ({"email": "not-an-email"}, "data.email", "invalid_email"),
        ({"country": "XX"}, "data.country", "invalid_country"),
        ({"tier": "gold"}, "data.tier", "invalid_tier"),
        ({"name": "   "}, "data.name", "invalid_name"),
        ({"customer_id": "bob"}, "key", "key_mismatch"),
    ],
)
def test_customer_rejections(data: dict[str, Any], field: str, code: str) -> None:
    result = parse(registration(**data))
    assert isinstance(result, Rejection)
    assert (result.field, result.code) == (field, code)


def test_customer_updated_needs_a_change_and_keeps_only_changes() -> None:
    obj = {"event_id": "u-1", "type": "customer.updated", "version": 1, "key": "alice",
           "occurred_at": "2020-06-26T00:00:00Z", "data": {"customer_id": "alice"}}
    result = parse(obj)
    assert isinstance(result, Rejection) and result.code == "no_changes"
    obj["data"]["tier"] = "premium"
    event = parse(obj)
    assert isinstance(event, CustomerUpdated)
    assert dict(event.changes) == {"tier": "premium"}


def test_decode_refuses_non_json_non_objects_and_oversized_events() -> None:
    assert isinstance(decode_json(b"\xff\xfe"), Rejection)
    assert decode_json(b"{nope").code == "not_json"  # type: ignore[union-attr]
    assert decode_json(b"[1,2]").code == "not_object"  # type: ignore[union-attr]
    big = json.dumps({"pad": "x" * 1_048_577}).encode()
    assert decode_json(big).code == "too_large"  # type: ignore[union-attr]


def test_derived_ids_are_deterministic_and_distinct_per_role() -> None:
    a = derive_event_id("evt-1", "posting/debit")
    assert a == derive_event_id("evt-1", "posting/debit")
    assert a != derive_event_id("evt-1", "posting/credit")
    assert a != derive_event_id("evt-2", "posting/debit")


def test_envelope_round_trips_through_bytes() -> None:
    env = parse_envelope(payment())
    assert isinstance(env, Envelope)
    again = parse_envelope(json.loads(env.to_bytes()))
    assert again == env


def test_money_refuses_floats() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "USD")  # type: ignore[arg-type]


def test_posting_signs_follow_direction() -> None:
    from cascata_runtime.envelope import parse_envelope as pe

    obj = {"event_id": "p-1", "type": "ledger.posting", "version": 1, "key": "alice",
           "occurred_at": "2020-06-25T14:06:00Z",
           "data": {"account": "alice", "counterparty": "bob", "direction": "debit",
                    "amount_minor": 500, "currency": "USD", "payment_event_id": "e"}}
    env = pe(obj)
    assert isinstance(env, Envelope)
    posting = parse_event(env)
    assert isinstance(posting, LedgerPosting)
    assert posting.signed_minor == -500
