"""query: the serving layer's pure core: routing, parameters, cursors and the shape of answers.

The `query` function answers three routes over the materialized views:

- `GET /accounts/{id}`: the balance per currency (integer minor units), the customer profile and
  the most recent event-time windows of an account; 404 when the account has neither a balance
  nor a profile.
- `GET /accounts/{id}/alerts?limit=&cursor=`: the account's fraud alerts, newest first.
- `GET /alerts?since=<RFC 3339>&limit=&cursor=`: alerts of every account since a time, oldest
  first (a feed a consumer resumes from), read day by day through the `by-day` index from
  `since`'s day to today; `since` may be at most `MAX_SINCE_AGE` in the past.

Cursors are opaque to clients: base64url (no padding) of compact JSON holding DynamoDB's
LastEvaluatedKey (and, for the feed, the day being read). They are checked field by field on
the way in, so a tampered cursor is a 400, never a DynamoDB validation error or a read of
another account's partition. They are not signed: every position a forged cursor can name is
one the caller may read anyway.

Items written by other processors are read defensively: only their table keys are agreed on,
every other attribute is passed through as JSON (numbers as numbers, sets as sorted lists,
binary as base64), a missing one is simply absent. Bookkeeping attributes that fence
redeliveries (`INTERNAL_ATTRIBUTES`) are never shown.

The HTTP plumbing (`HttpRequest`, `Response`, `ApiError`, `RouteTable`) is cascata's
(`cascata_runtime.http`). Reads go through the `ViewReader` port; nothing here imports boto3 or
reads the environment.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from types import MappingProxyType
from typing import Any, Protocol

from cascata_runtime.envelope import Rejection, format_time, parse_time, seconds_text
from cascata_runtime.http import ApiError, HttpRequest, Response, RouteTable, bad_parameter
from cascata_runtime.policy import parse_json
from payments.domain.windows import (
    BOOKKEEPING_PARTITION,
    PANE_PREFIX,
    SHARD_PREFIX,
    PaneState,
    WindowConfig,
    read_watermark,
    window_rows,
)

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
DEFAULT_WINDOWS = 10
MAX_WINDOWS = 50
MAX_SINCE_AGE = timedelta(days=7)
MAX_CURSOR_CHARS = 2048
MAX_KEY_CHARS = 1024
MAX_FEED_QUERIES = 24
"""Queries one feed page may spend (8 days plus follow-up pages): bounds latency and cost;
a page that hits it ends early with a cursor at the exact position reached."""
INTERNAL_ATTRIBUTES = frozenset({"fences", "recent", "expires_at"})
"""Idempotency bookkeeping of the view writers (source-position fences, recent event ids)."""

ROUTES = ("GET /accounts/{id}", "GET /accounts/{id}/alerts", "GET /alerts")
"""The routes this function serves; a test checks they equal the pipeline's declaration."""

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+\- ]\d{2}:\d{2})$"
)
_CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --------------------------------------------------------------------------------------------
# Parameters


def parse_account_id(value: str | None) -> str | ApiError:
    if value is None or not ACCOUNT_ID.match(value):
        return ApiError(
            400,
            "invalid_account_id",
            "an account id is 1-64 characters of A-Z a-z 0-9 . _ -",
            parameter="id",
        )
    return value


def parse_int(
    query: Mapping[str, str], name: str, *, default: int, low: int, high: int
) -> int | ApiError:
    raw = query.get(name)
    if raw is None:
        return default
    # ASCII digits only: int() would also take " 5", "+5", other scripts' digits and "1_0".
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6 or not low <= int(raw) <= high:
        return bad_parameter(name, f"{name} must be an integer from {low} to {high}")
    return int(raw)


def parse_since(raw: str | None, *, now: datetime) -> datetime | ApiError:
    """An RFC 3339 instant with any offset, no further back than `MAX_SINCE_AGE`."""
    if raw is None:
        return bad_parameter("since", "since is required: an RFC 3339 time, at most 7 days ago")
    match = _RFC3339.match(raw)
    if not match:
        return bad_parameter(
            "since", "since must be an RFC 3339 time like 2026-11-25T14:06:00Z"
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = int((fraction or ".0")[1:7].ljust(6, "0"))
    try:
        value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         micros, UTC)
        if offset not in ("Z", "z"):
            # A '+' in an unencoded query string arrives as a space.
            sign = -1 if offset[0] == "-" else 1
            delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
            if int(offset[4:6]) >= 60 or delta >= timedelta(hours=24):
                raise ValueError("offset out of range")
            value -= sign * delta
    except (ValueError, OverflowError):
        return bad_parameter("since", f"since is not a real instant: {raw[:40]!r}")
    if value < now - MAX_SINCE_AGE:
        return bad_parameter("since", "since must be at most 7 days ago")
    return value


# --------------------------------------------------------------------------------------------
# Cursors


def encode_cursor(value: Mapping[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> dict[str, Any] | ApiError:
    """The JSON object inside a cursor, or a 400 naming the cursor as the culprit."""
    if len(text) > MAX_CURSOR_CHARS or not _CURSOR.match(text):
        return _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return _bad_cursor()
    value = parse_json(raw, max_depth=2, what="cursor")
    if not isinstance(value, dict):
        return _bad_cursor()
    return value


def _bad_cursor() -> ApiError:
    return bad_parameter("cursor", "cursor is not one this API returned for this query")


def _key(value: object, names: frozenset[str]) -> dict[str, str] | None:
    """A DynamoDB key of exactly these string attributes, or None."""
    if not isinstance(value, dict) or set(value) != names:
        return None
    if not all(isinstance(v, str) and 1 <= len(v) <= MAX_KEY_CHARS for v in value.values()):
        return None
    return dict(value)


_ACCOUNT_ALERT_KEY = frozenset({"account_id", "alert_key"})
_FEED_KEY = frozenset({"day", "alert_key", "account_id"})


def account_alerts_start(cursor: str, account: str) -> dict[str, str] | ApiError:
    decoded = decode_cursor(cursor)
    if isinstance(decoded, ApiError):
        return decoded
    key = _key(decoded, _ACCOUNT_ALERT_KEY)
    if key is None or key["account_id"] != account:
        return _bad_cursor()
    return key


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """Where a feed page starts: a day of the `by-day` index, and after which key in it."""

    day: date
    after: Mapping[str, str] | None = None

    def cursor(self) -> str:
        after = dict(self.after) if self.after is not None else None
        return encode_cursor({"day": self.day.isoformat(), "after": after})


def feed_start(cursor: str, *, first: date, today: date) -> FeedPosition | ApiError:
    decoded = decode_cursor(cursor)
    if isinstance(decoded, ApiError):
        return decoded
    if set(decoded) != {"day", "after"}:
        return _bad_cursor()
    day_text = decoded["day"]
    if not isinstance(day_text, str) or not _DAY.match(day_text):
        return _bad_cursor()
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        return _bad_cursor()
    # A cursor from another `since` (or from before midnight, days ago) is not this query's.
    if not first <= day <= today:
        return _bad_cursor()
    if decoded["after"] is None:
        return FeedPosition(day)
    after = _key(decoded["after"], _FEED_KEY)
    if after is None or after["day"] != day_text:
        return _bad_cursor()
    return FeedPosition(day, MappingProxyType(after))


# --------------------------------------------------------------------------------------------
# DynamoDB attribute values, decoded by hand so the domain needs no boto3


def from_attribute_value(value: Mapping[str, Any]) -> Any:
    """A DynamoDB AttributeValue (`{"N": "12"}`, `{"M": {...}}`...) as a JSON-ready value.

    Integral numbers become int (money is integer minor units), others float; sets become
    sorted lists; binary becomes base64 text.
    """
    if len(value) != 1:
        raise ValueError(f"an attribute value has exactly one type, got {sorted(value)}")
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return str(inner)
    if kind == "N":
        return _number(inner)
    if kind == "BOOL":
        return bool(inner)
    if kind == "NULL":
        return None
    if kind == "B":
        return _b64(inner)
    if kind == "M":
        return {str(k): from_attribute_value(v) for k, v in inner.items()}
    if kind == "L":
        return [from_attribute_value(v) for v in inner]
    if kind == "SS":
        return sorted(str(v) for v in inner)
    if kind == "NS":
        return sorted((_number(v) for v in inner), key=lambda n: Decimal(str(n)))
    if kind == "BS":
        return sorted(_b64(v) for v in inner)
    raise ValueError(f"unknown attribute value type {kind!r}")


def item_from_wire(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {str(k): from_attribute_value(v) for k, v in item.items()}


def key_to_wire(key: Mapping[str, str]) -> dict[str, dict[str, str]]:
    return {k: {"S": v} for k, v in key.items()}


def _number(text: object) -> int | float:
    try:
        number = Decimal(str(text))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text!r}") from exc
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def _b64(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    return str(value)  # the JSON wire format already carries base64 text


# --------------------------------------------------------------------------------------------
# The port to the views


class View(str, Enum):
    BALANCES = "balances"
    PROFILES = "profiles"
    ACTIVITY = "activity"
    ALERTS = "alerts"


BY_DAY_INDEX = "by-day"


@dataclass(frozen=True, slots=True)
class KeyQuery:
    """One DynamoDB Query: a partition, optionally a lower bound on the sort key."""

    view: View
    partition: tuple[str, str]
    """(attribute, value)."""
    limit: int
    newest_first: bool = False
    index: str | None = None
    sort_at_least: tuple[str, str] | None = None
    """(attribute, lowest value): the sort key condition `attribute >= value`."""
    start_key: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[Mapping[str, Any], ...]
    """JSON-ready items (see `from_attribute_value`)."""
    last_key: Mapping[str, str] | None = None


class ViewReader(Protocol):
    def get(self, view: View, key: Mapping[str, str]) -> Mapping[str, Any] | None:
        """The item with this primary key, JSON-ready, or None."""
        ...

    def query(self, query: KeyQuery) -> Page: ...


# --------------------------------------------------------------------------------------------
# Shaping items


def public(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item as clients see it: every attribute but the writers' idempotency bookkeeping."""
    return {k: v for k, v in item.items() if k not in INTERNAL_ATTRIBUTES}


def balance_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """The balances item with its amounts as a list of {currency, amount_minor}."""
    out = public(item)
    out.pop("account_id", None)
    amounts = item.get("balances")
    out["balances"] = (
        [
            {"currency": currency, "amount_minor": amount}
            for currency, amount in sorted(amounts.items())
            if isinstance(amount, int) and not isinstance(amount, bool)
        ]
        if isinstance(amounts, Mapping)
        else []
    )
    return out


def alert_time(item: Mapping[str, Any]) -> datetime | None:
    """When an alert happened, from its sort key `<occurred_at>#<alert id>`."""
    key = item.get("alert_key")
    if not isinstance(key, str):
        return None
    parsed = parse_time(key.split("#", 1)[0], "alert_key")
    return None if isinstance(parsed, Rejection) else parsed


# --------------------------------------------------------------------------------------------
# The routes


def get_account(reader: ViewReader, account: str, *, windows: int) -> Response:
    balance = reader.get(View.BALANCES, {"account_id": account})
    profile = reader.get(View.PROFILES, {"customer_id": account})
    if balance is None and profile is None:
        return _unknown_account(account)
    return Response(200, {
        "account_id": account,
        "balance": balance_view(balance) if balance is not None else None,
        "profile": public(profile) if profile is not None else None,
        "windows": recent_windows(reader, account, windows) if windows else [],
    })


def recent_windows(reader: ViewReader, account: str, count: int,
                   config: WindowConfig | None = None) -> list[dict[str, Any]]:
    """The account's `count` most recent windows, newest first, each merged from its panes
    and `final` or `open` by the pipeline watermark the shard items hold (activity-view keeps
    one item per account and pane; see `payments.domain.windows`)."""
    config = config or WindowConfig()
    span = config.max_size_s // config.pane_s
    limit = min(MAX_LIMIT, count + span)
    page = reader.query(KeyQuery(View.ACTIVITY, partition=("account_id", account), limit=limit,
                                 newest_first=True))
    panes = [PaneState.from_item(i, config) for i in page.items
             if str(i.get("window_key", "")).startswith(PANE_PREFIX)]
    if not panes:
        return []
    shards = reader.query(KeyQuery(View.ACTIVITY, partition=("account_id", BOOKKEEPING_PARTITION),
                                   limit=MAX_LIMIT, sort_at_least=("window_key", SHARD_PREFIX)))
    watermark = read_watermark(config, shards.items)
    oldest = min(p.start_s for p in panes)
    rows = window_rows(config, account, panes, watermark,
                       complete_from_s=oldest if page.last_key is not None else None)
    return rows[:count]


def list_account_alerts(
    reader: ViewReader, account: str, *, limit: int, cursor: str | None
) -> Response:
    start: dict[str, str] | None = None
    if cursor is not None:
        decoded = account_alerts_start(cursor, account)
        if isinstance(decoded, ApiError):
            return decoded.response()
        start = decoded
    page = reader.query(
        KeyQuery(View.ALERTS, partition=("account_id", account), limit=limit, newest_first=True,
                 start_key=start)
    )
    # Only an empty first page pays for telling "no alerts" from "no such account".
    if not page.items and start is None and not _exists(reader, account):
        return _unknown_account(account)
    next_cursor = encode_cursor(dict(page.last_key)) if page.last_key is not None else None
    return Response(200, {
        "account_id": account,
        "alerts": [public(a) for a in page.items],
        "next_cursor": next_cursor,
    })


def list_alerts(
    reader: ViewReader, *, since: datetime, limit: int, cursor: str | None, now: datetime
) -> Response:
    """One page of the feed: alerts at or after `since`, oldest first, across accounts."""
    first, today = since.date(), now.date()
    body: dict[str, Any] = {"since": format_time(since), "alerts": [], "next_cursor": None}
    if first > today:
        return Response(200, body)
    position = FeedPosition(first)
    if cursor is not None:
        decoded = feed_start(cursor, first=first, today=today)
        if isinstance(decoded, ApiError):
            return decoded.response()
        position = decoded
    # Keys are `<occurred_at>#<id>`; the bound is cut to the second, because a key with a
    # fraction ("...:00.5Z") sorts before one without ("...:00Z"); the exact filter follows.
    lower = ("alert_key", seconds_text(since))
    found: list[Mapping[str, Any]] = []
    day, after = position.day, position.after
    next_position: FeedPosition | None = None
    for _query in range(MAX_FEED_QUERIES):
        page = reader.query(KeyQuery(
            View.ALERTS, index=BY_DAY_INDEX, partition=("day", day.isoformat()),
            limit=limit - len(found), sort_at_least=lower if day == first else None,
            start_key=after,
        ))
        found.extend(a for a in page.items if (alert_time(a) or since) >= since)
        if page.last_key is not None:
            after = page.last_key
            if len(found) >= limit:
                next_position = FeedPosition(day, after)
                break
            continue
        if day >= today:
            break
        day, after = day + timedelta(days=1), None
        if len(found) >= limit:
            next_position = FeedPosition(day)
            break
    else:
        next_position = FeedPosition(day, after)
    body["alerts"] = [public(a) for a in found]
    body["next_cursor"] = next_position.cursor() if next_position is not None else None
    return Response(200, body)


def _exists(reader: ViewReader, account: str) -> bool:
    return (
        reader.get(View.BALANCES, {"account_id": account}) is not None
        or reader.get(View.PROFILES, {"customer_id": account}) is not None
    )


def _unknown_account(account: str) -> Response:
    return ApiError(404, "account_not_found", f"no balance and no profile for {account}").response()


QUERY_ROUTES = RouteTable(ROUTES)


def serve(request: HttpRequest, reader: ViewReader, *, now: datetime) -> Response:
    """Answer one request of the query API."""
    matched = QUERY_ROUTES.resolve(request)
    if isinstance(matched, ApiError):
        return matched.response()
    query = request.query
    if matched.route_key == "GET /alerts":
        since = parse_since(query.get("since"), now=now)
        limit = parse_int(query, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
        if isinstance(since, ApiError):
            return since.response()
        if isinstance(limit, ApiError):
            return limit.response()
        return list_alerts(reader, since=since, limit=limit, cursor=query.get("cursor"),
                           now=now)
    account = parse_account_id(matched.parameters.get("id"))
    if isinstance(account, ApiError):
        return account.response()
    if matched.route_key == "GET /accounts/{id}":
        windows = parse_int(query, "windows", default=DEFAULT_WINDOWS, low=0, high=MAX_WINDOWS)
        if isinstance(windows, ApiError):
            return windows.response()
        return get_account(reader, account, windows=windows)
    limit = parse_int(query, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    if isinstance(limit, ApiError):
        return limit.response()
    return list_account_alerts(reader, account, limit=limit, cursor=query.get("cursor"))
