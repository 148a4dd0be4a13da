"""fraud-detect: rules over validated payments, with bounded rule state per payer, applied once.

Three rules, configured by `FraudRules` (production defaults in `DEFAULT_RULES`):

- `tier_limit`: the amount is above the payer's tier limit. The tier comes from the payer's
  profile; no profile, no tier or an unknown tier means `basic` (the evidence says which).
- `velocity`: more than `velocity_max_payments` payments by one payer within
  `velocity_interval_s` of event time, counted over the interval ending at the payment's own
  event time, `(t - interval, t]`, the payment included.
- `new_payee`: the first payment from a payer to a payee it never paid before, above
  `new_payee_threshold_minor`.

Amounts across currencies. Limits and thresholds are written in minor units of a 2-decimal
currency (`REFERENCE_EXPONENT`), i.e. in major units times 100, and each payment is compared
in major units of its own currency using its ISO 4217 exponent: a basic limit of 100_000 means
1,000.00 USD, 1,000 JPY (exponent 0) or 1,000.000 KWD (exponent 3). The comparison is exact
integer cross-multiplication, never a float. Currencies whose major unit is worth much less
than the reference's carry an integer weight in `FraudRules.currency_weights` (how many of their
major units make one reference unit, e.g. 150 for JPY): a basic limit is then 150,000 JPY. The
weights are rough, deliberately coarse and configurable: they keep low-value currencies from
alerting on everyday amounts; they are not FX rates and nothing is converted.

Rule state, one `fraud-state` item per payer (`PayerState`):

- `times`: (event time, short id) of the payments inside the velocity horizon.
- `payees`: 48-bit hashes of the `known_payees_cap` most recently paid payees, least recent
  first (an LRU). A payee not paid among the payer's last 500 distinct payees is forgotten: a
  large payment to it raises `new_payee` again. Hashes keep the item small whatever the length
  of account ids; a collision (about 500 / 2**48 per check) would hide one `new_payee` alert.
- `newest`: the newest event time seen for the payer; `times` keeps only payments newer than
  `newest - (interval + lateness)` and at most `velocity_keep` of them.
- `expires_at`: the table's TTL: `STATE_TTL_S` after the last batch that touched the payer (by
  the records' arrival time, which is also the clock of a replay). A payer quiet for that long
  starts over: its payees are new again.

Copies are not this module's concern: the state engine (`cascata_runtime.state`) applies each
distinct payment once and turns redeliveries and re-emitted copies away with the fences it
keeps in the same item; the origin gate suppresses a payment a producer sent twice.

Evaluation order and out-of-order input. The payments of one payer in one batch are evaluated
in event-time order (ties by source position), so a batch shuffled by PutRecords retries is put
back in order. Across batches the order is arrival order: a payment that arrives late is
counted in its own interval `(t - interval, t]`, against the timestamps still kept, and is
recorded so later-evaluated payments count it too. It never raises alerts retroactively for
payments already evaluated. Timestamps are kept for `interval + lateness` behind the newest
event time (deliberately more than the interval alone), so a payment up to `lateness` late
(default 60 s) is counted exactly; a later one is counted over what is left, which can only
undercount, never overcount.

Consequences worth knowing. A velocity burst raises one alert per payment beyond the limit
(the 6th, 7th, ... within the interval), not one per burst. Rule state starts empty: right
after the first deployment every large payment is to a "new" payee until the state is warmed
(replay payments-validated from TRIM_HORIZON to backfill it).

Ids. Each alert is a `fraud.alert` v1 event whose id derives from the payment id and the rule,
keyed by the payer, with the payment's event time: evaluating the same payment again yields the
same alert, which is what lets the alerts view and `notify` recognise a re-emitted alert.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from cascata_runtime.effects import Emission, Keyed, Outcome
from cascata_runtime.envelope import Envelope, Rejection, date_text, format_time, seconds_text
from cascata_runtime.lineage import Lineage
from payments.domain.iso import CURRENCY_EXPONENTS
from payments.domain.schemas import (
    FraudAlert,
    Money,
    PaymentMade,
    derived_envelope,
    sort_by_type,
)

Severity: TypeAlias = Literal["low", "medium", "high"]
Rule: TypeAlias = Literal["tier_limit", "velocity", "new_payee"]

TIER_LIMIT: Rule = "tier_limit"
VELOCITY: Rule = "velocity"
NEW_PAYEE: Rule = "new_payee"
RULES: tuple[Rule, ...] = (TIER_LIMIT, VELOCITY, NEW_PAYEE)

REFERENCE_EXPONENT = 2
"""Limits and thresholds are minor units of a currency with this many decimals."""

STATE_KEY = "payer"
VIEW_PARTITION_KEY = "account_id"
VIEW_SORT_KEY = "alert_key"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


CURRENCY_WEIGHTS: Mapping[str, int] = MappingProxyType({
    "JPY": 150, "KRW": 1400, "INR": 85, "CNY": 7, "HKD": 8, "SEK": 10, "NOK": 10, "DKK": 7,
    "MXN": 18, "BRL": 5, "ZAR": 18, "TRY": 35, "HUF": 360, "CZK": 23, "PLN": 4, "THB": 35,
    "PHP": 57, "CLP": 950, "COP": 4000, "IDR": 16000, "VND": 25000, "NGN": 1500, "KES": 130,
    "ISK": 140, "TWD": 32, "UAH": 40, "EGP": 48, "PKR": 280, "ARS": 900,
})
"""Rough major units per reference (USD-like) major unit; not FX rates."""


@dataclass(frozen=True, slots=True)
class FraudRules:
    """The rules' configuration. Changing it applies to payments evaluated from then on."""

    tier_limits_minor: Mapping[str, int] = field(
        default_factory=lambda: _frozen({"basic": 100_000, "plus": 500_000, "premium": 2_000_000})
    )
    default_tier: str = "basic"
    velocity_max_payments: int = 5
    """An alert when a payer makes more than this many payments within the interval."""
    velocity_interval_s: int = 60
    velocity_lateness_s: int = 60
    """How late (behind the payer's newest event time) a payment may be and still be counted
    exactly: timestamps are kept for interval + lateness."""
    velocity_keep: int = 64
    """At most this many timestamps per payer (bounds the item for a runaway payer); the
    count is exact up to it, which is far above `velocity_max_payments`."""
    new_payee_threshold_minor: int = 50_000
    currency_weights: Mapping[str, int] = field(default_factory=lambda: _frozen(CURRENCY_WEIGHTS))
    """Major units of a currency per reference major unit, for currencies worth far less."""
    known_payees_cap: int = 500
    severities: Mapping[str, Severity] = field(
        default_factory=lambda: _frozen(
            {TIER_LIMIT: "high", VELOCITY: "medium", NEW_PAYEE: "medium"}
        )
    )

    def __post_init__(self) -> None:
        problems = []
        if self.default_tier not in self.tier_limits_minor:
            problems.append(f"default_tier {self.default_tier!r} has no limit")
        for tier, limit in self.tier_limits_minor.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                problems.append(f"tier limit for {tier!r} must be a positive integer")
        for name in ("velocity_max_payments", "velocity_interval_s", "known_payees_cap",
                     "new_payee_threshold_minor"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.velocity_lateness_s < 0:
            problems.append("velocity_lateness_s must not be negative")
        if self.velocity_keep < self.velocity_max_payments:
            problems.append("velocity_keep must be at least velocity_max_payments")
        missing = [r for r in RULES if self.severities.get(r) not in ("low", "medium", "high")]
        if missing:
            problems.append(f"no valid severity for {', '.join(missing)}")
        if problems:
            raise ValueError("FraudRules: " + "; ".join(problems))

    @property
    def retention_ms(self) -> int:
        return (self.velocity_interval_s + self.velocity_lateness_s) * 1000


DEFAULT_RULES = FraudRules()

_TUNABLE_INTS = ("velocity_max_payments", "velocity_interval_s", "velocity_lateness_s",
                 "velocity_keep", "new_payee_threshold_minor", "known_payees_cap")
TUNABLE = (*_TUNABLE_INTS, "default_tier", "tier_limits_minor", "currency_weights")
"""The fields a version may override (`FRAUD_RULES`, `cascata replay --set fraud-detect.*`)."""


def rules_from_overrides(overrides: Mapping[str, Any], base: FraudRules = DEFAULT_RULES
                         ) -> FraudRules:
    """`base` with `overrides` applied, checked field by field; ValueError names the problem."""
    from dataclasses import replace

    unknown = sorted(set(overrides) - set(TUNABLE))
    if unknown:
        raise ValueError(f"unknown fraud rule setting(s) {', '.join(unknown)}; "
                         f"known: {', '.join(TUNABLE)}")
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name in _TUNABLE_INTS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"fraud rule setting {name} must be an integer, got {value!r}")
            changes[name] = value
        elif name == "default_tier":
            if not isinstance(value, str):
                raise ValueError("fraud rule setting default_tier must be a string")
            changes[name] = value
        else:
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                for k, v in value.items()
            ):
                raise ValueError(f"fraud rule setting {name} must map names to integers")
            changes[name] = _frozen({**getattr(base, name), **value})
    return replace(base, **changes)


def rules_from_json(text: str) -> FraudRules:
    """The rules a function runs with: the defaults, or the overrides in `FRAUD_RULES`."""
    import json

    if not text:
        return DEFAULT_RULES
    try:
        overrides = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"FRAUD_RULES is not JSON: {exc}") from None
    if not isinstance(overrides, Mapping):
        raise ValueError("FRAUD_RULES must be a JSON object of rule settings")
    return rules_from_overrides(overrides)


def check_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """fraud-detect's declared tunables: `replay --set fraud-detect.NAME=VALUE` settings,
    checked, as the overrides a version records in FRAUD_RULES (only what differs from the
    defaults); ValueError names what is wrong."""
    return rules_overrides(rules_from_overrides(settings))


def rules_overrides(rules: FraudRules) -> dict[str, Any]:
    """The fields of `rules` that differ from the defaults (what a version records)."""
    out: dict[str, Any] = {}
    for name in TUNABLE:
        value, default = getattr(rules, name), getattr(DEFAULT_RULES, name)
        if value != default:
            out[name] = dict(value) if isinstance(value, Mapping) else value
    return out


@dataclass(frozen=True, slots=True, order=True)
class Seen:
    """A payment inside the velocity horizon: its event time (epoch ms) and short id."""

    at_ms: int
    sid: str


@dataclass(frozen=True, slots=True)
class PayerState:
    payer: str
    times: tuple[Seen, ...] = ()
    payees: tuple[str, ...] = ()
    newest_ms: int | None = None
    payments: int = 0
    alerts: int = 0

    @classmethod
    def from_item(cls, payer: str, item: Mapping[str, Any] | None) -> PayerState:
        if not item:
            return cls(payer)
        times = []
        for entry in str(item.get("times", "")).split():
            at, _, sid = entry.partition(":")
            times.append(Seen(int(at), sid))
        newest = item.get("newest")
        return cls(
            payer=payer,
            times=tuple(sorted(times)),
            payees=tuple(str(item.get("payees", "")).split()),
            newest_ms=None if newest is None else int(newest),
            payments=int(item.get("payments", 0)),
            alerts=int(item.get("alerts", 0)),
        )

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            STATE_KEY: self.payer,
            "payments": self.payments,
            "alerts": self.alerts,
        }
        # Space-separated strings rather than lists: far fewer bytes per element in DynamoDB,
        # and the item size is what each write costs.
        if self.times:
            item["times"] = " ".join(f"{s.at_ms}:{s.sid}" for s in self.times)
        if self.payees:
            item["payees"] = " ".join(self.payees)
        if self.newest_ms is not None:
            item["newest"] = self.newest_ms
        return item


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    alert: FraudAlert
    cause: int
    """Index of the input record (the payment) that raised it."""


@dataclass(frozen=True, slots=True)
class Evaluated:
    state: PayerState
    alerts: tuple[RaisedAlert, ...]


def epoch_ms(value: datetime) -> int:
    """Integer milliseconds since the epoch (no float on the way)."""
    return (value - _EPOCH) // _MS


def payee_tag(payee: str) -> str:
    """48 bits of the payee id, 8 characters."""
    return base64.urlsafe_b64encode(hashlib.sha256(payee.encode()).digest()[:6]).decode()




def exceeds(
    amount: Money, limit_reference_minor: int, weights: Mapping[str, int] = MappingProxyType({})
) -> bool:
    """amount > limit in major units: amount / 10**e > limit * w / 10**REF, exactly."""
    exponent = CURRENCY_EXPONENTS[amount.currency]
    weight = weights.get(amount.currency, 1)
    return amount.amount_minor * _pow10(REFERENCE_EXPONENT) > (
        limit_reference_minor * weight * _pow10(exponent)
    )


def in_currency_minor(
    limit_reference_minor: int, currency: str, weights: Mapping[str, int] = MappingProxyType({})
) -> int:
    """A reference limit in minor units of `currency` (rounded down), for evidence."""
    exponent = CURRENCY_EXPONENTS[currency]
    weighted = limit_reference_minor * weights.get(currency, 1)
    if exponent >= REFERENCE_EXPONENT:
        return weighted * _pow10(exponent - REFERENCE_EXPONENT)
    return weighted // _pow10(REFERENCE_EXPONENT - exponent)


def _pow10(exponent: int) -> int:
    return int(10**exponent)


def needs_tier(payments: Sequence[PaymentMade], rules: FraudRules = DEFAULT_RULES) -> bool:
    """Whether the payer's tier can matter: some payment is above the lowest tier limit.

    Most payments are far below every limit, so most payers' profiles are never read.
    """
    lowest = min(rules.tier_limits_minor.values())
    return any(exceeds(p.amount, lowest, rules.currency_weights) for p in payments)


def resolve_tier(tier: str | None, rules: FraudRules) -> tuple[str, bool]:
    """The tier to apply and whether it came from the profile."""
    if tier is not None and tier in rules.tier_limits_minor:
        return tier, True
    return rules.default_tier, False


def alert_for(payment: PaymentMade, rule: Rule, evidence: Mapping[str, Any],
              rules: FraudRules) -> FraudAlert:
    full_evidence: Mapping[str, Any] = MappingProxyType(
        {
            "payee": payment.payee,
            "amount_minor": payment.amount.amount_minor,
            "currency": payment.amount.currency,
            **evidence,
        }
    )
    data = {
        "account": payment.payer,
        "rule": rule,
        "severity": rules.severities[rule],
        "payment_event_id": payment.envelope.event_id,
        "evidence": full_evidence,
    }
    envelope = derived_envelope(
        cause=payment.envelope,
        role=f"fraud.alert/{rule}",
        event_type=FraudAlert.TYPE,
        version=FraudAlert.VERSION,
        key=payment.payer,
        data=data,
    )
    return FraudAlert(
        envelope=envelope,
        account=payment.payer,
        rule=rule,
        severity=rules.severities[rule],
        payment_event_id=payment.envelope.event_id,
        evidence=full_evidence,
    )


def _check(
    payment: PaymentMade,
    at_ms: int,
    times: Sequence[Seen],
    payees: Sequence[str],
    tier: str | None,
    rules: FraudRules,
) -> list[FraudAlert]:
    """The alerts one payment raises, given the state before it."""
    raised = []
    amount = payment.amount
    applied_tier, from_profile = resolve_tier(tier, rules)
    limit = rules.tier_limits_minor[applied_tier]
    weights = rules.currency_weights
    if exceeds(amount, limit, weights):
        raised.append(alert_for(payment, TIER_LIMIT, {
            "tier": applied_tier,
            "tier_source": "profile" if from_profile else "default",
            "limit_minor": in_currency_minor(limit, amount.currency, weights),
        }, rules))
    start = at_ms - rules.velocity_interval_s * 1000
    count = 1 + sum(1 for s in times if start < s.at_ms <= at_ms)
    if count > rules.velocity_max_payments:
        raised.append(alert_for(payment, VELOCITY, {
            "count": count,
            "max_payments": rules.velocity_max_payments,
            "interval_s": rules.velocity_interval_s,
        }, rules))
    threshold = rules.new_payee_threshold_minor
    if payee_tag(payment.payee) not in payees and exceeds(amount, threshold, weights):
        raised.append(alert_for(payment, NEW_PAYEE, {
            "threshold_minor": in_currency_minor(threshold, amount.currency, weights),
            "known_payees": len(payees),
        }, rules))
    return raised


def evaluate(
    state: PayerState,
    payments: Sequence[tuple[int, PaymentMade]],
    *,
    tier: str | None,
    rules: FraudRules = DEFAULT_RULES,
) -> Evaluated:
    """Apply one batch's new payments of one payer (input index, payment) to its state; the
    alerts they raise."""
    times = list(state.times)
    payees = list(state.payees)
    newest = state.newest_ms
    alerts: list[RaisedAlert] = []
    for index, payment in sorted(payments, key=lambda p: (p[1].envelope.occurred_at, p[0])):
        sid = short_id(payment.envelope.event_id)
        at = epoch_ms(payment.envelope.occurred_at)
        alerts.extend(
            RaisedAlert(alert, index) for alert in _check(payment, at, times, payees, tier, rules)
        )
        newest = at if newest is None else max(newest, at)
        horizon = newest - rules.retention_ms
        times = sorted(s for s in [*times, Seen(at, sid)] if s.at_ms > horizon)
        times = times[-rules.velocity_keep :]
        ptag = payee_tag(payment.payee)
        if ptag in payees:
            payees.remove(ptag)
        payees.append(ptag)
        payees = payees[-rules.known_payees_cap :]
    new_state = PayerState(
        payer=state.payer,
        times=tuple(times),
        payees=tuple(payees),
        newest_ms=newest,
        payments=state.payments + len(payments),
        alerts=state.alerts + len(alerts),
    )
    return Evaluated(new_state, tuple(alerts))


def short_id(event_id: str) -> str:
    """64 bits of a payment id: tells apart the payments inside one payer's velocity horizon."""
    return base64.urlsafe_b64encode(hashlib.sha256(event_id.encode()).digest()[:8]).decode()[:11]


STATE_TTL_S = 90 * 86_400
"""A payer's rule state expires this long after the last batch that touched it."""


@dataclass(frozen=True, slots=True)
class FraudModel:
    """fraud-detect's rule state for the state engine, for one batch: the tiers of its payers
    and the batch's clock (the latest arrival time, for the state's TTL)."""

    rules: FraudRules
    tiers: Mapping[str, str]
    alerts_stream: str
    now_s: int

    def load(self, key: str, item: Mapping[str, Any] | None) -> PayerState:
        return PayerState.from_item(key, item)

    def dump(self, key: str, state: PayerState) -> dict[str, Any]:
        return {**state.to_item(), "expires_at": self.now_s + STATE_TTL_S}

    def apply(self, key: str, state: PayerState, inputs: Sequence[Keyed[str, PaymentMade]]
              ) -> Outcome[PayerState]:
        result = evaluate(state, [(x.index, x.value) for x in inputs],
                          tier=self.tiers.get(key), rules=self.rules)
        return Outcome(result.state, tuple(
            Emission(self.alerts_stream, r.alert.envelope, r.cause) for r in result.alerts
        ))


def keyed_payments(
    events: Sequence[Envelope | Rejection | None], lineages: Sequence[Lineage]
) -> tuple[list[Keyed[str, PaymentMade]], list[tuple[int, Rejection]]]:
    """Payments of a batch keyed by payer, and the records that are not valid payments."""
    payments, rejected = sort_by_type(events, PaymentMade)
    keyed = []
    for index, event in payments:
        assert isinstance(event, PaymentMade)
        keyed.append(Keyed(event.payer, event, index, lineages[index]))
    return keyed, rejected


# --- the alerts view: one item per alert, shared with notify ----------------------------------


def sortable_time(value: datetime) -> str:
    """RFC 3339 UTC with exactly three fractional digits, so text order is time order.

    `format_time` drops the fraction when it is zero, and "…:00.5Z" sorts before "…:00Z";
    a fixed width avoids that in a sort key.
    """
    value = value.astimezone(UTC)
    return f"{seconds_text(value)}.{value.microsecond // 1000:03d}Z"


def alert_key(alert: FraudAlert) -> str:
    """`<occurred_at>#<alert event id>`: an account's alerts sort by event time."""
    return f"{sortable_time(alert.envelope.occurred_at)}#{alert.envelope.event_id}"


def view_key(alert: FraudAlert) -> tuple[str, str]:
    return alert.account, alert_key(alert)


def alert_view_item(alert: FraudAlert) -> dict[str, Any]:
    """The alerts-view item of an alert. notify builds the same item from the event alone."""
    env = alert.envelope
    evidence = _plain(alert.evidence)
    item: dict[str, Any] = {
        VIEW_PARTITION_KEY: alert.account,
        VIEW_SORT_KEY: alert_key(alert),
        "day": date_text(env.occurred_at),
        "alert_id": env.event_id,
        "occurred_at": format_time(env.occurred_at),
        "rule": alert.rule,
        "severity": alert.severity,
        "payment_event_id": alert.payment_event_id,
        "evidence": evidence,
    }
    amount = evidence.get("amount_minor")
    currency = evidence.get("currency")
    if isinstance(amount, int) and not isinstance(amount, bool) and isinstance(currency, str):
        item["amount_minor"] = amount
        item["currency"] = currency
    return item


def _plain(value: Any) -> Any:
    """Frozen event data to what DynamoDB stores: dicts, lists, and no floats.

    Our own evidence holds only strings and integers; an alert from another producer might
    carry a JSON number with a fraction, kept exactly as a Decimal.
    """
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return Decimal(repr(value))
    return value
