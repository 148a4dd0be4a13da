"""A realistic, seeded payments workload, with the answers a correct pipeline must reach.

Accounts with a home currency, log-normal amounts in integer minor units, bursts that look like
fraud (velocity, large first payments to new payees), a configurable share of invalid events
(each with the rejection code validate must give) and of duplicates (the same bytes sent again a
little later, as a producer retry would). The generator knows, independently of the pipeline's
code, which events are valid, so the demo can check the pipeline against it.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from cascata_runtime.envelope import format_time

_FIRST = (
    "ada alan alice amir ana ben bob carla carol chen dana dave diego eli emma erin fatima "
    "femi grace hana ivan jade jon kai kemal lara leo lin lucia mara mei nia noah omar "
    "pablo priya quinn ravi rosa sam sara tariq uma vera wei yara yusuf zoe"
).split()
_CURRENCIES = (("USD", 0.55), ("EUR", 0.25), ("GBP", 0.12), ("JPY", 0.08))
_EXPONENT = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}
_CHANNELS = ("card", "card", "card", "transfer", "wallet")
BASE_TIME = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)

INVALID_KINDS: tuple[tuple[str, str], ...] = (
    ("float_amount", "amount_not_integer"),
    ("negative_amount", "amount_out_of_range"),
    ("unknown_currency", "unknown_currency"),
    ("same_party", "same_party"),
    ("missing_payee", "missing"),
    ("bad_time", "invalid_time"),
    ("not_json", "not_json"),
    ("unknown_type", "unknown_schema"),
    ("bad_account", "invalid_account"),
)


@dataclass(frozen=True, slots=True)
class Generated:
    """One record to send: its bytes and key, and what the pipeline must make of it."""

    seq: int
    key: str
    data: bytes
    event_id: str | None
    valid: bool
    expected_code: str | None
    duplicate: bool
    payer: str | None = None
    payee: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    occurred_at: str | None = None
    stream: str = "payments-raw"
    customer: Mapping[str, str] | None = None
    """For customer events: the event type and the fields it sets (`type`, `customer_id`, ...)."""


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    events: int
    seed: int = 7
    invalid_share: float = 0.05
    duplicate_share: float = 0.02
    accounts: int | None = None
    fraud_share: float = 0.02
    hot_share: float = 0.0
    """Key skew: the share of payments (outside the fraud bursts, about nine in ten) whose
    payee is one of the `hot_merchants` hottest merchants (0: the default mix, where half the
    payments go to the merchants, a twenty-fifth of the accounts, none hotter than another)."""
    hot_merchants: int = 3
    duplicate_delay: tuple[int, int] = (1, 40)
    """How many events later a producer's retry is sent, drawn uniformly from this range."""

    def problems(self) -> list[str]:
        out = []
        if not 0 <= self.events <= 10_000_000:
            out.append(f"--events must be from 0 to 10,000,000, got {self.events}")
        if not 0.0 <= self.invalid_share <= 1.0:
            out.append(f"--invalid-share must be from 0 to 1, got {self.invalid_share}")
        if not 0.0 <= self.duplicate_share <= 0.5:
            out.append(f"--duplicate-share must be from 0 to 0.5, got {self.duplicate_share}")
        if self.accounts is not None and not 2 <= self.accounts <= 1_000_000:
            out.append(f"--accounts must be from 2 to 1,000,000, got {self.accounts}")
        if not 0.0 <= self.hot_share <= 1.0:
            out.append(f"--hot-share must be from 0 to 1, got {self.hot_share}")
        low, high = self.duplicate_delay
        if not 1 <= low <= high <= 100_000:
            out.append(f"duplicate delay must be 1 <= low <= high <= 100,000, got "
                       f"{self.duplicate_delay}")
        if not 1 <= self.hot_merchants <= 1000:
            out.append(f"--hot-merchants must be from 1 to 1,000, got {self.hot_merchants}")
        return out


def generate(spec: WorkloadSpec) -> Iterator[Generated]:
    """`spec.events` distinct events, plus the duplicates, in sending order."""
    rng = random.Random(spec.seed)
    accounts = _accounts(spec, rng)
    n_accounts = len(accounts)
    home = {a: _pick_currency(rng) for a in accounts}
    # A few merchants receive much of the traffic, as in real payment flows.
    merchants = accounts[: max(2, n_accounts // 25)]
    hottest = merchants[: max(1, min(spec.hot_merchants, len(merchants)))]
    clock = BASE_TIME
    pending_dups: list[tuple[int, Generated]] = []
    seq = 0
    burst: list[tuple[str, str]] = []
    for n in range(spec.events):
        clock += timedelta(milliseconds=rng.randint(20, 1500))
        if burst:
            payer, payee = burst.pop()
        elif rng.random() < spec.fraud_share:
            payer = rng.choice(accounts)
            payee = rng.choice([a for a in merchants if a != payer] or accounts[-1:])
            burst = [(payer, payee)] * rng.randint(4, 8)
            payer, payee = burst.pop()
        else:
            payer = rng.choice(accounts)
            # Drawn only when asked for, so the default workload stays the same sequence.
            if spec.hot_share and rng.random() < spec.hot_share:
                pool = hottest
            else:
                pool = merchants if rng.random() < 0.5 else accounts
            payee = rng.choice(pool)
            while payee == payer:
                payee = rng.choice(accounts)
        currency = home[payer]
        amount = _amount(rng, currency)
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        event = {
            "event_id": event_id,
            "type": "payment.made",
            "version": 1,
            "key": payer,
            "occurred_at": format_time(clock),
            "data": {"payer": payer, "payee": payee, "amount_minor": amount,
                     "currency": currency, "channel": rng.choice(_CHANNELS)},
        }
        if rng.random() < spec.invalid_share:
            kind, code = rng.choice(INVALID_KINDS)
            data = _corrupt(event, kind)
            item = Generated(seq, payer, data, event_id, False, code, False)
        else:
            item = Generated(
                seq, payer, _dumps(event), event_id, True, None, False, payer, payee, amount,
                currency, str(event["occurred_at"]),
            )
        yield item
        seq += 1
        if rng.random() < spec.duplicate_share:
            pending_dups.append((n + rng.randint(*spec.duplicate_delay), item))
            pending_dups.sort(key=lambda due: due[0])
        while pending_dups and pending_dups[0][0] <= n:
            _, original = pending_dups.pop(0)
            yield replace(original, seq=seq, duplicate=True)
            seq += 1
    for _, original in pending_dups:
        yield replace(original, seq=seq, duplicate=True)
        seq += 1


def sample(events: int, seed: int) -> tuple[str, list[tuple[str, bytes]]]:
    """The project's sample workload (`cascata produce --events N`): payments for
    payments-raw with the default shares of invalid events and producer retries."""
    spec = WorkloadSpec(events=events, seed=seed)
    return "payments-raw", [(g.key, g.data) for g in generate(spec)]


def _accounts(spec: WorkloadSpec, rng: random.Random) -> list[str]:
    n_accounts = spec.accounts or max(50, min(20_000, spec.events // 15))
    return [f"{rng.choice(_FIRST)}.{i:04d}" for i in range(n_accounts)]


_COUNTRIES = ("GB", "US", "DE", "FR", "ES", "IT", "NL", "JP", "BR", "IN", "NG", "KE")
_TIERS = ("basic", "basic", "basic", "plus", "plus", "premium")
CUSTOMER_INVALID_KINDS: tuple[tuple[str, str], ...] = (
    ("bad_email", "invalid_email"),
    ("bad_country", "invalid_country"),
    ("bad_tier", "invalid_tier"),
)


def generate_customers(spec: WorkloadSpec) -> list[Generated]:
    """Registrations for most accounts, some tier and email updates, a few invalid events.

    Registrations happened before the payments in event time but are sent alongside them, so
    the profiles processor sees either first; some updates carry an event time earlier than a
    registration sent after them, to exercise last-writer-wins by event time.
    """
    accounts = _accounts(spec, random.Random(spec.seed))
    rng = random.Random(spec.seed * 7919 + 1)
    out: list[Generated] = []
    for account in accounts:
        if rng.random() < 0.15:
            continue  # never registered: a profile made of payment activity only
        registered = BASE_TIME - timedelta(days=rng.randint(1, 900), seconds=rng.randint(0, 86399))
        first = account.split(".")[0].capitalize()
        fields = {"customer_id": account, "name": f"{first} {account.split('.')[1]}",
                  "email": f"{account}@example.com", "country": rng.choice(_COUNTRIES),
                  "tier": rng.choice(_TIERS)}
        out.append(_customer_event(rng, spec, "customer.registered", account, fields, registered))
        if rng.random() < 0.25:
            # An update that happened after registration but may be sent before it.
            when = registered + timedelta(days=rng.randint(1, 30))
            change = {"customer_id": account, "tier": rng.choice(_TIERS)}
            if rng.random() < 0.3:
                change["email"] = f"{account}@mail.example.org"
            out.append(_customer_event(rng, spec, "customer.updated", account, change, when))
    rng.shuffle(out)
    with_dups: list[Generated] = []
    for item in out:
        with_dups.append(replace(item, seq=len(with_dups)))
        if rng.random() < spec.duplicate_share:
            with_dups.append(replace(item, seq=len(with_dups), duplicate=True))
    return with_dups


def _customer_event(
    rng: random.Random,
    spec: WorkloadSpec,
    etype: str,
    account: str,
    fields: dict[str, str],
    when: datetime,
) -> Generated:
    event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    event = {"event_id": event_id, "type": etype, "version": 1, "key": account,
             "occurred_at": format_time(when), "data": dict(fields)}
    if rng.random() < spec.invalid_share:
        kind, code = rng.choice(CUSTOMER_INVALID_KINDS)
        data = dict(fields)
        if kind == "bad_email":
            data["email"] = "not-an-email"
        elif kind == "bad_country":
            data["country"] = "ZZ"
        else:
            data["tier"] = "platinum"
        return Generated(0, account, _dumps({**event, "data": data}), event_id, False, code,
                         False, stream="customers")
    return Generated(0, account, _dumps(event), event_id, True, None, False,
                     occurred_at=format_time(when), stream="customers",
                     customer={"type": etype, **fields})


def _pick_currency(rng: random.Random) -> str:
    r = rng.random()
    for currency, weight in _CURRENCIES:
        if r < weight:
            return currency
        r -= weight
    return "USD"


def _amount(rng: random.Random, currency: str) -> int:
    # Log-normal around 40 units of the currency; JPY has no minor unit, so scale to match.
    units = math.exp(rng.gauss(math.log(40), 1.2))
    if currency == "JPY":
        units *= 150
    return max(1, min(10**12, int(units * 10 ** _EXPONENT[currency])))


def _dumps(event: dict[str, object]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def _corrupt(event: dict[str, object], kind: str) -> bytes:
    data = dict(event["data"])  # type: ignore[call-overload]
    if kind == "float_amount":
        data["amount_minor"] = float(data["amount_minor"]) + 0.5
    elif kind == "negative_amount":
        data["amount_minor"] = -int(data["amount_minor"])
    elif kind == "unknown_currency":
        data["currency"] = "ZZZ"
    elif kind == "same_party":
        data["payee"] = data["payer"]
    elif kind == "missing_payee":
        del data["payee"]
    elif kind == "bad_time":
        return _dumps({**event, "occurred_at": "yesterday at noon"})
    elif kind == "not_json":
        return b"payment alice->bob 20.00 USD"
    elif kind == "unknown_type":
        return _dumps({**event, "type": "payment.reversed"})
    elif kind == "bad_account":
        data["payee"] = "bob smith!"
    return _dumps({**event, "data": data})
