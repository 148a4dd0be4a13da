"""The in-memory reference model of the payments pipeline, and the invariants checked against it.

The reference is computed from what the workload generator knows (which events are valid, their
amounts, which sends are duplicates), not from the pipeline's code, and compared with what the
pipeline actually left in the views, the streams and the quarantine.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cascata.aws_env import arn
from cascata.local.objects import list_keys, read_objects, read_stream
from cascata_runtime.envelope import Envelope, Rejection, decode_json, parse_envelope
from cascata_runtime.origin import OriginPolicy
from payments.tooling.workload import Generated


class _OriginGate:
    """What the origin gate lets through, in sending order: a record whose envelope can be read
    and is dated after the stream's earliest time is suppressed when its event id came before
    (the demo runs well within the one-hour dedupe horizon); anything else goes on, to be
    quarantined by the processor if invalid."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def admits(self, data: bytes) -> bool:
        obj = decode_json(data)
        envelope = None if isinstance(obj, Rejection) else parse_envelope(obj)
        if not isinstance(envelope, Envelope) or envelope.occurred_at < _EARLIEST:
            return True
        if envelope.event_id in self._seen:
            return False
        self._seen.add(envelope.event_id)
        return True


_EARLIEST = OriginPolicy().earliest
"""The declared earliest event time of both origin streams (the default)."""


@dataclass
class Reference:
    balances: dict[str, dict[str, int]] = field(default_factory=dict)
    postings: dict[str, int] = field(default_factory=dict)
    valid_ids: set[str] = field(default_factory=set)
    invalid: Counter[tuple[bytes, str]] = field(default_factory=Counter)
    sent: int = 0
    duplicates: int = 0
    payments: list[Generated] = field(default_factory=list)
    """The distinct valid payments."""
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    invalid_customers: Counter[tuple[bytes, str]] = field(default_factory=Counter)

    @classmethod
    def of(cls, events: Iterable[Generated]) -> Reference:
        ref = cls()
        balances: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        postings: dict[str, int] = defaultdict(int)
        gate = _OriginGate()
        for event in events:
            ref.sent += 1
            ref.duplicates += event.duplicate
            if not event.valid:
                if gate.admits(event.data):
                    ref.invalid[(event.data, event.expected_code or "")] += 1
                continue
            gate.admits(event.data)
            assert event.event_id and event.payer and event.payee and event.currency
            if event.event_id in ref.valid_ids:
                continue
            ref.valid_ids.add(event.event_id)
            ref.payments.append(event)
            amount = event.amount_minor or 0
            balances[event.payer][event.currency] -= amount
            balances[event.payee][event.currency] += amount
            postings[event.payer] += 1
            postings[event.payee] += 1
        ref.balances = {a: dict(b) for a, b in balances.items()}
        ref.postings = dict(postings)
        return ref

    def add_customers(self, events: Iterable[Generated], payments: Iterable[Generated]) -> None:
        """Expected profiles: registration fields by last writer in event time (ties: the
        larger event id), payment activity per currency and direction from distinct payments."""
        fields: dict[str, dict[str, tuple[str, datetime, str]]] = defaultdict(dict)
        seen: set[str] = set()
        gate = _OriginGate()
        for event in events:
            if not event.valid:
                if gate.admits(event.data):
                    self.invalid_customers[(event.data, event.expected_code or "")] += 1
                continue
            gate.admits(event.data)
            assert event.customer is not None and event.occurred_at and event.event_id
            if event.event_id in seen:
                continue
            seen.add(event.event_id)
            stamp = (_moment(event.occurred_at), event.event_id)
            for name in ("name", "email", "country", "tier"):
                if name in event.customer:
                    current = fields[event.key].get(name)
                    if current is None or stamp > current[1:]:
                        fields[event.key][name] = (event.customer[name], *stamp)
        profiles: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"as_payer": defaultdict(lambda: [0, 0]),
                     "as_payee": defaultdict(lambda: [0, 0]), "seen": []})
        distinct: set[str] = set()
        for p in payments:
            if not p.valid or not p.event_id or p.event_id in distinct:
                continue
            distinct.add(p.event_id)
            assert p.payer and p.payee and p.currency and p.occurred_at
            for side, account in (("as_payer", p.payer), ("as_payee", p.payee)):
                flow = profiles[account][side][p.currency]
                flow[0] += 1
                flow[1] += p.amount_minor or 0
                profiles[account]["seen"].append(p.occurred_at)
        for account, values in fields.items():
            profiles[account].update({k: v[0] for k, v in values.items()})
        self.profiles = {
            account: {
                **{k: v for k, v in prof.items() if k not in ("as_payer", "as_payee", "seen")},
                "as_payer": {c: tuple(v) for c, v in prof["as_payer"].items()},
                "as_payee": {c: tuple(v) for c, v in prof["as_payee"].items()},
                # by instant: "…:15Z" sorts after "…:15.968Z" as text
                "first_seen": min(prof["seen"], key=_moment) if prof["seen"] else None,
                "last_seen": max(prof["seen"], key=_moment) if prof["seen"] else None,
            }
            for account, prof in profiles.items()
        }


@dataclass(frozen=True, slots=True)
class Invariant:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Observed:
    """What the pipeline left behind, read through the AWS APIs."""

    balance_items: Mapping[str, Mapping[str, Any]]
    validated_ids: Counter[str]
    quarantined: Sequence[Mapping[str, Any]]
    on_failure_records: int
    profile_items: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    alert_ids_on_stream: frozenset[str] = frozenset()
    alert_items: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notifications: Counter[str] = field(default_factory=Counter)
    """alert id -> messages the notifications topic delivered for it."""
    window_results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """window.closed events on the activity stream, by event id."""
    late_payments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """payment.late events on the activity-late stream, by event id."""
    open_windows: int = 0


def check(
    ref: Reference, seen: Observed, windows: Sequence[tuple[str, int, int]] = ()
) -> list[Invariant]:
    """`windows`: the window definitions (name, size_s, advance_s) the pipeline runs."""
    out: list[Invariant] = []
    balances = {
        a: {c: int(v) for c, v in item.get("balances", {}).items() if int(v) != 0}
        for a, item in seen.balance_items.items()
    }
    expected = {a: {c: v for c, v in b.items() if v != 0} for a, b in ref.balances.items()}
    balances = {a: b for a, b in balances.items() if b}
    expected = {a: b for a, b in expected.items() if b}

    missing_ids = ref.valid_ids - set(seen.validated_ids)
    wrong = sorted(a for a in set(balances) | set(expected) if balances.get(a) != expected.get(a))
    lost = bool(missing_ids) or any(
        _magnitude(balances.get(a, {})) < _magnitude(expected.get(a, {})) for a in wrong
    )
    out.append(Invariant(
        "no_event_lost",
        not missing_ids and not wrong and seen.on_failure_records == 0,
        f"{len(ref.valid_ids)} distinct valid events; {len(missing_ids)} missing from "
        f"payments-validated; {len(wrong)} account balances differ from the reference"
        + (f" (e.g. {wrong[0]}: {balances.get(wrong[0])} != {expected.get(wrong[0])})"
           if wrong else "")
        + f"; {seen.on_failure_records} batches on the on-failure destination"
        + ("" if not lost else "; events were lost"),
    ))
    applied = {a: int(item.get("postings", 0)) for a, item in seen.balance_items.items()}
    twice = sorted(a for a, n in applied.items() if n > ref.postings.get(a, 0))
    out.append(Invariant(
        "no_event_applied_twice",
        not twice and applied == {a: n for a, n in ref.postings.items()},
        f"{sum(ref.postings.values())} postings expected, {sum(applied.values())} applied; "
        f"{len(twice)} accounts over-applied"
        + f"; {ref.duplicates} duplicate sends absorbed",
    ))
    # Invalid payments are refused by validate, invalid customer events by profiles; nothing
    # else may be quarantined anywhere.
    expected_q: Counter[tuple[str, bytes, str]] = Counter()
    for (data, code), n in ref.invalid.items():
        expected_q[("validate", data, code)] += n
    for (data, code), n in ref.invalid_customers.items():
        expected_q[("profiles", data, code)] += n
    got = Counter(
        (str(q.get("processor")), base64.b64decode(q["data_base64"]), q["reason"]["code"])
        for q in seen.quarantined
    )
    missing_q = expected_q - got
    unexpected_q = got - expected_q
    out.append(Invariant(
        "invalid_events_quarantined_with_reason",
        not missing_q and not unexpected_q,
        f"{sum(expected_q.values())} invalid sends expected, {sum(got.values())} quarantined; "
        f"{sum(missing_q.values())} missing or with another reason, "
        f"{sum(unexpected_q.values())} unexpected",
    ))
    if ref.profiles:
        out.append(_check_profiles(ref, seen))
    out.append(_check_alerts(seen))
    if windows:
        out.append(_check_windows(ref, seen, windows))
    totals: dict[str, int] = defaultdict(int)
    for per_currency in balances.values():
        for currency, amount in per_currency.items():
            totals[currency] += amount
    nonzero = {c: v for c, v in totals.items() if v}
    out.append(Invariant(
        "balances_sum_to_zero_per_currency",
        not nonzero,
        "every currency sums to 0 over all accounts" if not nonzero
        else f"non-zero totals: {nonzero}",
    ))
    return out


def _check_profiles(ref: Reference, seen: Observed) -> Invariant:
    wrong: list[str] = []
    for account, expected in ref.profiles.items():
        item = seen.profile_items.get(account)
        if item is None:
            wrong.append(f"{account}: no profile")
            continue
        for name in ("name", "email", "country", "tier"):
            if expected.get(name) != item.get(name):
                wrong.append(f"{account}: {name} {item.get(name)!r} != {expected.get(name)!r}")
        for side in ("as_payer", "as_payee"):
            got = {c: (int(f["count"]), int(f["volume_minor"]))
                   for c, f in item.get(side, {}).items()}
            if got != expected[side]:
                wrong.append(f"{account}: {side} {got} != {expected[side]}")
        for key, attr in (("first_seen", "first_seen_at"), ("last_seen", "last_seen_at")):
            if expected[key] and _instant(item.get(attr)) != _instant(expected[key]):
                wrong.append(f"{account}: {attr} {item.get(attr)} != {expected[key]}")
    extra = sorted(set(seen.profile_items) - set(ref.profiles))
    return Invariant(
        "profiles_match_reference",
        not wrong and not extra,
        f"{len(ref.profiles)} profiles expected (registration fields by event time, activity "
        f"per currency and direction), {len(seen.profile_items)} found; {len(wrong)} "
        f"differences, {len(extra)} unexpected"
        + (f" (e.g. {wrong[0]})" if wrong else ""),
    )


def _check_alerts(seen: Observed) -> Invariant:
    stream = set(seen.alert_ids_on_stream)
    view = set(seen.alert_items)
    unnotified = sorted(a for a, item in seen.alert_items.items() if not item.get("notified_at"))
    twice = sorted(a for a, n in seen.notifications.items() if n > 1)
    never = sorted(stream - set(seen.notifications))
    strays = sorted(set(seen.notifications) - stream)
    ok = stream == view and not unnotified and not twice and not never and not strays
    return Invariant(
        "every_alert_notified_exactly_once",
        ok,
        f"{len(stream)} distinct alerts on the alerts stream, {len(view)} in the alerts view, "
        f"{sum(seen.notifications.values())} notifications; {len(never)} never notified, "
        f"{len(twice)} notified more than once, {len(unnotified)} not marked notified, "
        f"{len(strays)} notifications for unknown alerts",
    )


Cell = tuple[str, str, str, str]
"""(account, window key, direction, currency)"""


def _check_windows(
    ref: Reference, seen: Observed, windows: Sequence[tuple[str, int, int]]
) -> Invariant:
    """Every distinct payment counts once in each of its windows, on each side: either in the
    window's final result or in the late side output, never both, never neither."""
    from datetime import datetime

    expected: dict[Cell, list[int]] = defaultdict(lambda: [0, 0])
    for p in ref.payments:
        assert p.occurred_at and p.payer and p.payee and p.currency
        at = datetime.fromisoformat(p.occurred_at.replace("Z", "+00:00")).timestamp()
        for name, size, advance in windows:
            first = (int(at) // advance) * advance
            start = first
            while start > at - size:
                if start <= at < start + size:
                    stamp = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    for account, direction in ((p.payer, "out"), (p.payee, "in")):
                        cell = expected[(account, f"{name}#{stamp}", direction, p.currency)]
                        cell[0] += 1
                        cell[1] += p.amount_minor or 0
                start -= advance
    got: dict[Cell, list[int]] = defaultdict(lambda: [0, 0])
    for result in seen.window_results.values():
        for direction, per_currency in result["totals"].items():
            for currency, totals in per_currency.items():
                cell = got[(result["account"], result["window_key"], direction, currency)]
                cell[0] += int(totals["count"])
                cell[1] += int(totals["sum_minor"])
    late = 0
    for event in seen.late_payments.values():
        for window in event["windows"]:
            late += 1
            cell = got[(event["account"], window["window_key"], event["direction"],
                        event["currency"])]
            cell[0] += 1
            cell[1] += int(event["amount_minor"])
    wrong = sorted(c for c in set(expected) | set(got) if expected.get(c) != got.get(c))
    ok = not wrong and seen.open_windows == 0
    return Invariant(
        "window_results_equal_reference",
        ok,
        f"{len(seen.window_results)} final window results and {late} late (payment, window) "
        f"pairs cover {len(expected)} reference cells (account, window, direction, currency); "
        f"{len(wrong)} differ; {seen.open_windows} windows left open"
        + (f" (e.g. {wrong[0]}: {got.get(wrong[0])} != {expected.get(wrong[0])})"
           if wrong else ""),
    )


def _moment(text: str) -> datetime:
    """An RFC 3339 time as an instant (times with and without a fraction compare right)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _instant(value: object) -> str | None:
    from datetime import datetime

    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()


def _magnitude(balances: Mapping[str, int]) -> int:
    return sum(abs(v) for v in balances.values())


def observe(
    aws: Any, names: Mapping[str, str], notifications: Counter[str] | None = None,
    *, streams: Callable[[str], Iterable[bytes]] | None = None,
) -> Observed:
    """Read the views, the validated stream and the quarantine through the AWS APIs.
    `streams`: every record's data on a stream by its physical name (default: read over the
    Kinesis API; a pipeline on Kafka reads its topics)."""
    from boto3.dynamodb.types import TypeDeserializer

    def stream(physical: str) -> Iterable[bytes]:
        if streams is not None:
            return streams(physical)
        return read_stream(aws.client("kinesis"), physical)

    des = TypeDeserializer()
    ddb = aws.client("dynamodb")
    items: dict[str, Mapping[str, Any]] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=names["balances"],
                                                   ConsistentRead=True):
        for raw in page["Items"]:
            item = {k: des.deserialize(v) for k, v in raw.items()}
            items[str(item["account_id"])] = item
    validated: Counter[str] = Counter()
    for data in stream(names["payments-validated"]):
        validated[json.loads(data)["event_id"]] += 1
    s3 = aws.client("s3")
    quarantined = [json.loads(body) for body in read_objects(s3, names["quarantine"])]
    failures = sum(1 for key in list_keys(s3, names["failures"]) if key.startswith("aws/"))
    profiles: dict[str, Mapping[str, Any]] = {}
    if "profiles" in names:
        for page in ddb.get_paginator("scan").paginate(TableName=names["profiles"],
                                                       ConsistentRead=True):
            for raw in page["Items"]:
                item = {k: des.deserialize(v) for k, v in raw.items()}
                profiles[str(item["customer_id"])] = item
    alert_ids = frozenset(
        json.loads(data)["event_id"] for data in stream(names["alerts"])
    ) if "alerts" in names else frozenset()
    alerts: dict[str, Mapping[str, Any]] = {}
    if "alerts-view" in names:
        for page in ddb.get_paginator("scan").paginate(TableName=names["alerts-view"],
                                                       ConsistentRead=True):
            for raw in page["Items"]:
                item = {k: des.deserialize(v) for k, v in raw.items()}
                alerts[str(item["alert_id"])] = item
    results = {}
    late = {}
    if "activity" in names:
        for data in stream(names["activity"]):
            event = json.loads(data)
            results[event["event_id"]] = event["data"]
        for data in stream(names["activity-late"]):
            event = json.loads(data)
            late[event["event_id"]] = event["data"]
    still_open = 0
    if "activity-view" in names:
        # Panes are never rewritten when their windows close: a pane is still open while the
        # pipeline watermark (from the shard items) has not reached its closes_at.
        from payments.domain.windows import BOOKKEEPING_PARTITION, WindowConfig, read_watermark

        bookkeeping: list[dict[str, Any]] = []
        closes: list[str] = []
        for page in ddb.get_paginator("scan").paginate(TableName=names["activity-view"],
                                                       ConsistentRead=True):
            for raw in page["Items"]:
                item = {k: des.deserialize(v) for k, v in raw.items()}
                if item.get("account_id") == BOOKKEEPING_PARTITION:
                    bookkeeping.append(item)
                elif isinstance(item.get("closes_at"), str):
                    closes.append(str(item["closes_at"]))
        watermark = read_watermark(WindowConfig(), bookkeeping)
        still_open = sum(
            1 for c in closes
            if not watermark.final(int(datetime.fromisoformat(c.replace("Z", "+00:00"))
                                       .timestamp())))
    return Observed(items, validated, quarantined, failures, profiles, alert_ids,
                    alerts, notifications or Counter(), results, late, still_open)


def notifications_tap(aws: Any, topic_name: str) -> str:
    """An SQS queue subscribed to the notifications topic, to count what subscribers get."""
    sqs = aws.client("sqs")
    sns = aws.client("sns")
    url = sqs.create_queue(QueueName=f"{topic_name}-tap")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    topic_arn = arn("sns", topic_name, region=aws.region, account=aws.account)
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                  Attributes={"RawMessageDelivery": "true"})
    return str(url)


def read_tap(aws: Any, url: str) -> Counter[str]:
    sqs = aws.client("sqs")
    seen: Counter[str] = Counter()
    while True:
        page = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = page.get("Messages", [])
        if not messages:
            return seen
        for message in messages:
            seen[str(json.loads(message["Body"]).get("event_id"))] += 1
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
        ])

