"""The versioned event schemas of the payments pipeline, parsed into frozen values.

Public contract (other services produce these; extend, never break): `payment.made` v1,
`customer.registered` v1, `customer.updated` v1. cascata's own: `ledger.posting` v1 and
`fraud.alert` v1. `parse_event` turns a checked `Envelope` into one of these or a `Rejection`
naming the field (`data.amount_minor`, ...), a stable code and a sentence.

The windows processor adds `window.closed` v1 (the final result of an event-time window of an
account) and `payment.late` v1 (the side output: a payment that missed closed windows), both
keyed by account.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from cascata_runtime.envelope import (
    Envelope,
    Rejection,
    derive_event_id,
    format_time,
    parse_time,
)
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


WindowDirection: TypeAlias = Literal["out", "in"]
"""`out`: the account paid (it was the payer); `in`: the account was paid (the payee)."""
WINDOW_DIRECTIONS: tuple[WindowDirection, ...] = ("out", "in")
LateCause: TypeAlias = Literal["watermark_passed", "window_closed"]
ClosedBy: TypeAlias = Literal["watermark", "schedule"]


@dataclass(frozen=True, slots=True)
class WindowTotals:
    """Count, sum, min and max of the payments of one currency in one direction of a window."""

    count: int
    sum_minor: int
    min_minor: int
    max_minor: int

    @classmethod
    def of(cls, amount_minor: int) -> WindowTotals:
        return cls(1, amount_minor, amount_minor, amount_minor)

    def add(self, amount_minor: int) -> WindowTotals:
        return WindowTotals(
            self.count + 1,
            self.sum_minor + amount_minor,
            min(self.min_minor, amount_minor),
            max(self.max_minor, amount_minor),
        )

    def data(self) -> dict[str, int]:
        return {
            "count": self.count,
            "sum_minor": self.sum_minor,
            "min_minor": self.min_minor,
            "max_minor": self.max_minor,
        }


@dataclass(frozen=True, slots=True)
class WindowClosed:
    """The final result of one event-time window of one account: emitted once it closed.

    Its id derives from (account, window key), so closing a window twice emits the same event.
    `occurred_at` is the window's end.
    """

    TYPE = "window.closed"
    VERSION = 1
    envelope: Envelope
    account: str
    window: str
    window_key: str
    start: datetime
    end: datetime
    closes_at: datetime
    """The end plus the allowed lateness: no payment was counted after the watermark passed it."""
    totals: Mapping[WindowDirection, Mapping[str, WindowTotals]]
    """Direction -> currency -> totals; only the directions and currencies seen."""
    payments: int
    closed_by: ClosedBy
    watermark: datetime | None
    """The pipeline's watermark when the window closed (None when it was unknown)."""

    def data(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "window": self.window,
            "window_key": self.window_key,
            "start": format_time(self.start),
            "end": format_time(self.end),
            "closes_at": format_time(self.closes_at),
            "totals": {
                direction: {cur: t.data() for cur, t in sorted(per_currency.items())}
                for direction, per_currency in self.totals.items()
            },
            "payments": self.payments,
            "closed_by": self.closed_by,
            "watermark": None if self.watermark is None else format_time(self.watermark),
        }


@dataclass(frozen=True, slots=True)
class LateWindow:
    """A window a late payment missed, and why: the watermark had passed its close, or its
    final result had already been emitted."""

    window_key: str
    closes_at: datetime
    cause: LateCause

    def data(self) -> dict[str, str]:
        return {
            "window_key": self.window_key,
            "closes_at": format_time(self.closes_at),
            "cause": self.cause,
        }


@dataclass(frozen=True, slots=True)
class PaymentLate:
    """A payment that arrived after some of its windows closed (the side output of windows).

    Keyed by the account whose windows it missed; its id derives from the payment's id and
    the direction, so a redelivered late payment is the same event.
    """

    TYPE = "payment.late"
    VERSION = 1
    envelope: Envelope
    account: str
    counterparty: str
    direction: WindowDirection
    payment_event_id: str
    amount: Money
    windows: tuple[LateWindow, ...]
    watermark: datetime | None
    """The source shard's watermark when the payment was read."""
    allowed_lateness_s: int
    reason: str

    def data(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "counterparty": self.counterparty,
            "direction": self.direction,
            "payment_event_id": self.payment_event_id,
            "amount_minor": self.amount.amount_minor,
            "currency": self.amount.currency,
            "windows": [w.data() for w in self.windows],
            "watermark": None if self.watermark is None else format_time(self.watermark),
            "allowed_lateness_s": self.allowed_lateness_s,
            "reason": self.reason,
        }


Event: TypeAlias = (
    PaymentMade | CustomerRegistered | CustomerUpdated | LedgerPosting | FraudAlert
    | WindowClosed | PaymentLate
)


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
    # Any JSON value can arrive here: an object or array is unhashable, so test the type first.
    if channel is not None and (not isinstance(channel, str) or channel not in CHANNELS):
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


_WINDOW_KEY = re.compile(r"^[a-z][a-z0-9-]{0,31}#\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _parse_window_closed(env: Envelope) -> WindowClosed | Rejection:
    d = env.data
    account = _account(d, "account")
    if isinstance(account, Rejection):
        return account
    if env.key != account:
        return Rejection("key", "key_mismatch", "a window result is keyed by its account")
    window_key = d.get("window_key")
    if not isinstance(window_key, str) or not _WINDOW_KEY.match(window_key):
        return Rejection(
            "data.window_key", "invalid_window_key",
            "window_key must be <window>#<start, RFC 3339 UTC to the second>",
        )
    window = d.get("window")
    if not isinstance(window, str) or not window_key.startswith(f"{window}#"):
        return Rejection("data.window", "invalid_window", "window must name the window_key's spec")
    times: dict[str, datetime] = {}
    for name in ("start", "end", "closes_at"):
        value = parse_time(d.get(name), f"data.{name}")
        if isinstance(value, Rejection):
            return value
        times[name] = value
    if not times["start"] < times["end"] <= times["closes_at"]:
        return Rejection("data.end", "invalid_bounds", "a window needs start < end <= closes_at")
    totals = _window_totals(d.get("totals"))
    if isinstance(totals, Rejection):
        return totals
    payments = d.get("payments")
    counted = sum(t.count for per in totals.values() for t in per.values())
    if isinstance(payments, bool) or not isinstance(payments, int) or payments < 1:
        return Rejection("data.payments", "invalid_count", "payments must be a positive integer")
    if counted != payments:
        return Rejection(
            "data.payments", "count_mismatch",
            f"payments is {payments} but the totals count {counted}",
        )
    closed_by = d.get("closed_by")
    if closed_by not in ("watermark", "schedule"):
        return Rejection("data.closed_by", "invalid_closed_by", "closed_by: watermark or schedule")
    watermark = _optional_time(d, "watermark")
    if isinstance(watermark, Rejection):
        return watermark
    return WindowClosed(
        env, account, window, window_key, times["start"], times["end"], times["closes_at"],
        totals, payments, closed_by, watermark,
    )


def _window_totals(
    value: object,
) -> Mapping[WindowDirection, Mapping[str, WindowTotals]] | Rejection:
    if not isinstance(value, Mapping) or not value:
        return Rejection("data.totals", "invalid_totals", "totals must be a non-empty object")
    out: dict[WindowDirection, Mapping[str, WindowTotals]] = {}
    for direction in WINDOW_DIRECTIONS:
        per_currency = value.get(direction)
        if per_currency is None:
            continue
        field = f"data.totals.{direction}"
        if not isinstance(per_currency, Mapping) or not per_currency:
            return Rejection(field, "invalid_totals", f"{field} must be a non-empty object")
        parsed: dict[str, WindowTotals] = {}
        for currency, raw in per_currency.items():
            if currency not in CURRENCY_EXPONENTS:
                return Rejection(field, "unknown_currency", f"{currency!r} is not ISO 4217")
            raw_numbers = [raw.get(k) if isinstance(raw, Mapping) else None
                           for k in ("count", "sum_minor", "min_minor", "max_minor")]
            numbers = [n for n in raw_numbers if isinstance(n, int) and not isinstance(n, bool)]
            if len(numbers) != 4:
                return Rejection(
                    f"{field}.{currency}", "invalid_totals",
                    "count, sum_minor, min_minor and max_minor must be integers",
                )
            count, total, low, high = numbers
            if not (count >= 1 and 1 <= low <= high and low * count <= total <= high * count):
                return Rejection(
                    f"{field}.{currency}", "inconsistent_totals",
                    "totals need count >= 1, 1 <= min <= max and min*count <= sum <= max*count",
                )
            parsed[currency] = WindowTotals(count, total, low, high)
        out[direction] = MappingProxyType(parsed)
    unknown = set(value) - set(WINDOW_DIRECTIONS)
    if unknown or not out:
        return Rejection("data.totals", "invalid_totals", "totals has only the keys out and in")
    return MappingProxyType(out)


def _parse_payment_late(env: Envelope) -> PaymentLate | Rejection:
    d = env.data
    account = _account(d, "account")
    if isinstance(account, Rejection):
        return account
    if env.key != account:
        return Rejection("key", "key_mismatch", "a late payment is keyed by its account")
    counterparty = _account(d, "counterparty")
    if isinstance(counterparty, Rejection):
        return counterparty
    direction = d.get("direction")
    if direction not in WINDOW_DIRECTIONS:
        return Rejection("data.direction", "invalid_direction", "direction must be out or in")
    payment = d.get("payment_event_id")
    if not isinstance(payment, str) or not payment:
        return Rejection("data.payment_event_id", "missing", "payment_event_id is required")
    money = _money(d, "amount_minor", "currency")
    if isinstance(money, Rejection):
        return money
    raw_windows = d.get("windows")
    if not isinstance(raw_windows, tuple | list) or not raw_windows:
        return Rejection("data.windows", "invalid_windows", "windows must be a non-empty list")
    windows: list[LateWindow] = []
    for n, raw in enumerate(raw_windows):
        field = f"data.windows[{n}]"
        if not isinstance(raw, Mapping):
            return Rejection(field, "invalid_windows", f"{field} must be an object")
        key = raw.get("window_key")
        if not isinstance(key, str) or not _WINDOW_KEY.match(key):
            return Rejection(f"{field}.window_key", "invalid_window_key", "not a window key")
        closes_at = parse_time(raw.get("closes_at"), f"{field}.closes_at")
        if isinstance(closes_at, Rejection):
            return closes_at
        cause = raw.get("cause")
        if cause not in ("watermark_passed", "window_closed"):
            return Rejection(
                f"{field}.cause", "invalid_cause", "cause: watermark_passed or window_closed"
            )
        windows.append(LateWindow(key, closes_at, cause))
    watermark = _optional_time(d, "watermark")
    if isinstance(watermark, Rejection):
        return watermark
    lateness = d.get("allowed_lateness_s")
    if isinstance(lateness, bool) or not isinstance(lateness, int) or lateness < 0:
        return Rejection(
            "data.allowed_lateness_s", "invalid_lateness", "allowed_lateness_s must be >= 0"
        )
    reason = d.get("reason")
    if not isinstance(reason, str) or not reason:
        return Rejection("data.reason", "missing", "reason is required")
    return PaymentLate(
        env, account, counterparty, direction, payment, money, tuple(windows), watermark,
        lateness, reason,
    )


def _optional_time(d: Mapping[str, Any], name: str) -> datetime | Rejection | None:
    value = d.get(name)
    return None if value is None else parse_time(value, f"data.{name}")


_PARSERS: Mapping[tuple[str, int], Callable[[Envelope], Event | Rejection]] = MappingProxyType(
    {
        (PaymentMade.TYPE, PaymentMade.VERSION): _parse_payment,
        (CustomerRegistered.TYPE, CustomerRegistered.VERSION): _parse_registered,
        (CustomerUpdated.TYPE, CustomerUpdated.VERSION): _parse_updated,
        (LedgerPosting.TYPE, LedgerPosting.VERSION): _parse_posting,
        (FraudAlert.TYPE, FraudAlert.VERSION): _parse_alert,
        (WindowClosed.TYPE, WindowClosed.VERSION): _parse_window_closed,
        (PaymentLate.TYPE, PaymentLate.VERSION): _parse_payment_late,
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


def sort_by_type(
    events: Sequence[Envelope | Rejection | None], *kinds: type[Event]
) -> tuple[list[tuple[int, Event]], list[tuple[int, Rejection]]]:
    """Parse a decoded batch: events of the expected kinds with their index, and rejections.

    An event of a valid but unexpected type (a customer event on the payments stream) is
    rejected too: it does not belong where it was found. None is a record the runtime already
    dealt with (a copy its origin gate suppressed): it is neither.
    """
    accepted: list[tuple[int, Event]] = []
    rejected: list[tuple[int, Rejection]] = []
    for index, item in enumerate(events):
        if item is None:
            continue
        if isinstance(item, Rejection):
            rejected.append((index, item))
            continue
        event = parse_event(item)
        if isinstance(event, Rejection):
            rejected.append((index, event))
        elif not isinstance(event, kinds):
            expected = ", ".join(k.TYPE for k in kinds)
            rejected.append((index, Rejection(
                "type", "unexpected_type", f"{item.type} does not belong here (expected {expected})"
            )))
        else:
            accepted.append((index, event))
    return accepted, rejected


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
    "LateWindow",
    "LedgerPosting",
    "Money",
    "PaymentLate",
    "PaymentMade",
    "WindowClosed",
    "WindowTotals",
    "derived_envelope",
    "format_time",
    "parse_event",
    "sort_by_type",
]
