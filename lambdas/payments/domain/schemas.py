"""The versioned event schemas of the payments pipeline, parsed into frozen values.

Public contract (other services produce these; extend, never break): `payment.made` v1,
`customer.registered` v1, `customer.updated` v1. cascata's own: `ledger.posting` v1 and
`fraud.alert` v1. `parse_event` turns a checked `Envelope` into one of these or a `Rejection`
naming the field (`data.amount_minor`, ...), a stable code and a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from cascata_runtime.envelope import Envelope, Rejection, derive_event_id, format_time
from payments.domain.iso import COUNTRIES, CURRENCY_EXPONENTS

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_AMOUNT_MINOR = 10**12
CHANNELS = frozenset({"card", "transfer", "wallet"})
TIERS = frozenset({"basic", "plus", "premium"})
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")

Direction: TypeAlias = Literal["debit", "credit"]


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units of an ISO 4217 currency. Never a float."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise TypeError("Money.amount_minor must be an int")
        if self.currency not in CURRENCY_EXPONENTS:
            raise ValueError(f"unknown currency {self.currency!r}")


@dataclass(frozen=True, slots=True)
class PaymentMade:
    TYPE = "payment.made"
    VERSION = 1
    envelope: Envelope
    payer: str
    payee: str
    amount: Money
    channel: str | None

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "payer": self.payer,
            "payee": self.payee,
            "amount_minor": self.amount.amount_minor,
            "currency": self.amount.currency,
        }
        if self.channel is not None:
            out["channel"] = self.channel
        return out


@dataclass(frozen=True, slots=True)
class CustomerRegistered:
    TYPE = "customer.registered"
    VERSION = 1
    envelope: Envelope
    customer_id: str
    name: str
    email: str
    country: str
    tier: str

    def data(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "name": self.name,
            "email": self.email,
            "country": self.country,
            "tier": self.tier,
        }


@dataclass(frozen=True, slots=True)
class CustomerUpdated:
    TYPE = "customer.updated"
    VERSION = 1
    envelope: Envelope
    customer_id: str
    changes: Mapping[str, str]
    """Only the registration fields that changed (name, email, country, tier)."""

    def data(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, **self.changes}


@dataclass(frozen=True, slots=True)
class LedgerPosting:
    """One side of a payment in double entry, keyed by the account it moves."""

    TYPE = "ledger.posting"
    VERSION = 1
    envelope: Envelope
    account: str
    counterparty: str
    direction: Direction
    amount: Money
    payment_event_id: str

    @property
    def signed_minor(self) -> int:
        return self.amount.amount_minor if self.direction == "credit" else -self.amount.amount_minor

    def data(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "counterparty": self.counterparty,
            "direction": self.direction,
            "amount_minor": self.amount.amount_minor,
            "currency": self.amount.currency,
            "payment_event_id": self.payment_event_id,
        }


@dataclass(frozen=True, slots=True)
class FraudAlert:
    TYPE = "fraud.alert"
    VERSION = 1
    envelope: Envelope
    account: str
    rule: str
    severity: Literal["low", "medium", "high"]
    payment_event_id: str
    evidence: Mapping[str, Any]

    def data(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "rule": self.rule,
            "severity": self.severity,
            "payment_event_id": self.payment_event_id,
            "evidence": dict(self.evidence),
        }


Event: TypeAlias = PaymentMade | CustomerRegistered | CustomerUpdated | LedgerPosting | FraudAlert


def parse_event(envelope: Envelope) -> Event | Rejection:
    """Validate `envelope.data` against the schema of its type and version."""
    parser = _PARSERS.get((envelope.type, envelope.version))
    if parser is None:
        known = ", ".join(f"{t} v{v}" for t, v in sorted(_PARSERS))
        return Rejection(
            "type",
            "unknown_schema",
            f"no schema for {envelope.type} v{envelope.version}; known: {known}",
        )
    return parser(envelope)


def _parse_payment(env: Envelope) -> PaymentMade | Rejection:
    d = env.data
    payer = _account(d, "payer")
    if isinstance(payer, Rejection):
        return payer
    payee = _account(d, "payee")
    if isinstance(payee, Rejection):
        return payee
    if payer == payee:
        return Rejection("data.payee", "same_party", "payee must differ from payer")
    if env.key != payer:
        return Rejection(
            "key", "key_mismatch", f"key must be the payer {payer!r}, got {env.key!r}"
        )
    money = _money(d, "amount_minor", "currency")
    if isinstance(money, Rejection):
        return money
    channel = d.get("channel")
    if channel is not None and channel not in CHANNELS:
        return Rejection(
            "data.channel",
            "invalid_channel",
            f"channel must be one of {', '.join(sorted(CHANNELS))} (got {str(channel)[:20]!r})",
        )
    return PaymentMade(env, payer, payee, money, channel)


def _parse_registered(env: Envelope) -> CustomerRegistered | Rejection:
    d = env.data
    customer = _customer(env)
    if isinstance(customer, Rejection):
        return customer
    fields: dict[str, str] = {}
    for name in ("name", "email", "country", "tier"):
        if name not in d:
            return Rejection(f"data.{name}", "missing", f"data.{name} is required")
        checked = _profile_field(name, d[name])
        if isinstance(checked, Rejection):
            return checked
        fields[name] = checked
    return CustomerRegistered(env, customer, **fields)


def _parse_updated(env: Envelope) -> CustomerUpdated | Rejection:
    d = env.data
    customer = _customer(env)
    if isinstance(customer, Rejection):
        return customer
    changes: dict[str, str] = {}
    for name in ("name", "email", "country", "tier"):
        if name in d:
            checked = _profile_field(name, d[name])
            if isinstance(checked, Rejection):
                return checked
            changes[name] = checked
    if not changes:
        return Rejection(
            "data", "no_changes", "customer.updated must change at least one of "
            "name, email, country, tier"
        )
    return CustomerUpdated(env, customer, MappingProxyType(changes))


def _parse_posting(env: Envelope) -> LedgerPosting | Rejection:
    d = env.data
    account = _account(d, "account")
    if isinstance(account, Rejection):
        return account
    counterparty = _account(d, "counterparty")
    if isinstance(counterparty, Rejection):
        return counterparty
    direction = d.get("direction")
    if direction not in ("debit", "credit"):
        return Rejection("data.direction", "invalid_direction", "direction must be debit or credit")
    money = _money(d, "amount_minor", "currency")
    if isinstance(money, Rejection):
        return money
    payment = d.get("payment_event_id")
    if not isinstance(payment, str) or not payment:
        return Rejection("data.payment_event_id", "missing", "payment_event_id is required")
    if env.key != account:
        return Rejection("key", "key_mismatch", "a posting is keyed by its account")
    return LedgerPosting(env, account, counterparty, direction, money, payment)


def _parse_alert(env: Envelope) -> FraudAlert | Rejection:
    d = env.data
    account = _account(d, "account")
    if isinstance(account, Rejection):
        return account
    rule = d.get("rule")
    if not isinstance(rule, str) or not 1 <= len(rule) <= 64:
        return Rejection("data.rule", "invalid_rule", "rule must be a name of 1-64 characters")
    severity = d.get("severity")
    if severity not in ("low", "medium", "high"):
        return Rejection("data.severity", "invalid_severity", "severity must be low, medium, high")
    payment = d.get("payment_event_id")
    if not isinstance(payment, str) or not payment:
        return Rejection("data.payment_event_id", "missing", "payment_event_id is required")
    evidence = d.get("evidence", {})
    if not isinstance(evidence, Mapping):
        return Rejection("data.evidence", "invalid_evidence", "evidence must be an object")
    return FraudAlert(env, account, rule, severity, payment, evidence)


_PARSERS: Mapping[tuple[str, int], Callable[[Envelope], Event | Rejection]] = MappingProxyType(
    {
        (PaymentMade.TYPE, PaymentMade.VERSION): _parse_payment,
        (CustomerRegistered.TYPE, CustomerRegistered.VERSION): _parse_registered,
        (CustomerUpdated.TYPE, CustomerUpdated.VERSION): _parse_updated,
        (LedgerPosting.TYPE, LedgerPosting.VERSION): _parse_posting,
        (FraudAlert.TYPE, FraudAlert.VERSION): _parse_alert,
    }
)


def _account(d: Mapping[str, Any], name: str) -> str | Rejection:
    value = d.get(name)
    if name not in d:
        return Rejection(f"data.{name}", "missing", f"data.{name} is required")
    if not isinstance(value, str) or not ACCOUNT_ID.match(value):
        return Rejection(
            f"data.{name}",
            "invalid_account",
            f"data.{name} must be 1-64 characters of A-Z a-z 0-9 . _ - (got {str(value)[:40]!r})",
        )
    return value


def _money(d: Mapping[str, Any], amount_field: str, currency_field: str) -> Money | Rejection:
    if amount_field not in d:
        return Rejection(f"data.{amount_field}", "missing", f"data.{amount_field} is required")
    amount = d[amount_field]
    if isinstance(amount, bool) or not isinstance(amount, int):
        return Rejection(
            f"data.{amount_field}",
            "amount_not_integer",
            f"data.{amount_field} must be an integer number of minor units, "
            f"got {type(amount).__name__} {str(amount)[:30]}",
        )
    if not 1 <= amount <= MAX_AMOUNT_MINOR:
        return Rejection(
            f"data.{amount_field}",
            "amount_out_of_range",
            f"data.{amount_field} must be from 1 to 10^12, got {amount}",
        )
    currency = d.get(currency_field)
    if currency_field not in d:
        return Rejection(f"data.{currency_field}", "missing", f"data.{currency_field} is required")
    # Normalisation: producers that send "usd" mean "USD"; anything else is rejected.
    if not isinstance(currency, str) or currency.upper() not in CURRENCY_EXPONENTS:
        return Rejection(
            f"data.{currency_field}",
            "unknown_currency",
            f"data.{currency_field} must be an ISO 4217 code like USD (got {str(currency)[:10]!r})",
        )
    return Money(amount, currency.upper())


def _customer(env: Envelope) -> str | Rejection:
    customer = _account(env.data, "customer_id")
    if isinstance(customer, Rejection):
        return customer
    if env.key != customer:
        return Rejection(
            "key", "key_mismatch", f"key must be the customer_id {customer!r}, got {env.key!r}"
        )
    return customer


def _profile_field(name: str, value: object) -> str | Rejection:
    field = f"data.{name}"
    if not isinstance(value, str):
        return Rejection(field, f"invalid_{name}", f"{field} must be a string")
    if name == "name":
        value = value.strip()
        if not 1 <= len(value) <= 200:
            return Rejection(field, "invalid_name", f"{field} must be 1-200 characters")
    elif name == "email":
        if len(value) > 254 or not _EMAIL.match(value):
            return Rejection(field, "invalid_email", f"{field} is not an email address")
    elif name == "country":
        if value.upper() not in COUNTRIES:
            return Rejection(
                field, "invalid_country", f"{field} must be ISO 3166-1 alpha-2 (got {value[:8]!r})"
            )
        value = value.upper()
    elif name == "tier" and value not in TIERS:
        return Rejection(
            field, "invalid_tier", f"{field} must be one of {', '.join(sorted(TIERS))}"
        )
    return value


def derived_envelope(
    *,
    cause: Envelope,
    role: str,
    event_type: str,
    version: int,
    key: str,
    data: Mapping[str, Any],
) -> Envelope:
    """An event caused by `cause`: deterministic id, same event time, lineage carried."""
    return Envelope(
        event_id=derive_event_id(cause.event_id, role),
        type=event_type,
        version=version,
        key=key,
        occurred_at=cause.occurred_at,
        data=MappingProxyType(dict(data)),
        correlation_id=cause.correlation_id,
        causation=cause.causation,
    )


__all__ = [
    "CustomerRegistered",
    "CustomerUpdated",
    "Event",
    "FraudAlert",
    "LedgerPosting",
    "Money",
    "PaymentMade",
    "derived_envelope",
    "format_time",
    "parse_event",
]
