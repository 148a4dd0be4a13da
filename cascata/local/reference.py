"""The in-memory reference model of the payments pipeline, and the invariants checked against it.

The reference is computed from what the workload generator knows (which events are valid, their
amounts, which sends are duplicates), not from the pipeline's code, and compared with what the
pipeline actually left in the views, the streams and the quarantine.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cascata.workload import Generated


@dataclass
class Reference:
    balances: dict[str, dict[str, int]] = field(default_factory=dict)
    postings: dict[str, int] = field(default_factory=dict)
    valid_ids: set[str] = field(default_factory=set)
    invalid: Counter[tuple[bytes, str]] = field(default_factory=Counter)
    sent: int = 0
    duplicates: int = 0

    @classmethod
    def of(cls, events: Iterable[Generated]) -> Reference:
        ref = cls()
        balances: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        postings: dict[str, int] = defaultdict(int)
        for event in events:
            ref.sent += 1
            ref.duplicates += event.duplicate
            if not event.valid:
                ref.invalid[(event.data, event.expected_code or "")] += 1
                continue
            assert event.event_id and event.payer and event.payee and event.currency
            if event.event_id in ref.valid_ids:
                continue
            ref.valid_ids.add(event.event_id)
            amount = event.amount_minor or 0
            balances[event.payer][event.currency] -= amount
            balances[event.payee][event.currency] += amount
            postings[event.payer] += 1
            postings[event.payee] += 1
        ref.balances = {a: dict(b) for a, b in balances.items()}
        ref.postings = dict(postings)
        return ref


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


def check(ref: Reference, seen: Observed) -> list[Invariant]:
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
    got = Counter(
        (base64.b64decode(q["data_base64"]), q["reason"]["code"])
        for q in seen.quarantined if q.get("processor") == "validate"
    )
    others = [q for q in seen.quarantined if q.get("processor") != "validate"]
    missing_q = ref.invalid - got
    unexpected_q = got - ref.invalid
    out.append(Invariant(
        "invalid_events_quarantined_with_reason",
        not missing_q and not unexpected_q and not others,
        f"{sum(ref.invalid.values())} invalid sends expected, {sum(got.values())} quarantined by "
        f"validate with the expected reason; {sum(missing_q.values())} missing, "
        f"{sum(unexpected_q.values())} unexpected, {len(others)} quarantined downstream",
    ))
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


def _magnitude(balances: Mapping[str, int]) -> int:
    return sum(abs(v) for v in balances.values())


def observe(aws: Any, names: Mapping[str, str]) -> Observed:
    """Read the views, the validated stream and the quarantine through the AWS APIs."""
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    ddb = aws.client("dynamodb")
    items: dict[str, Mapping[str, Any]] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=names["balances"],
                                                   ConsistentRead=True):
        for raw in page["Items"]:
            item = {k: des.deserialize(v) for k, v in raw.items()}
            items[str(item["account_id"])] = item
    validated: Counter[str] = Counter()
    for data in read_stream(aws.client("kinesis"), names["payments-validated"]):
        validated[json.loads(data)["event_id"]] += 1
    s3 = aws.client("s3")
    quarantined = [json.loads(body) for body in read_objects(s3, names["quarantine"])]
    failures = sum(1 for _ in list_keys(s3, names["failures"]))
    return Observed(items, validated, quarantined, failures)


def read_stream(kinesis: Any, stream: str) -> Iterable[bytes]:
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                yield record["Data"]
            if not page["Records"] or (page.get("MillisBehindLatest", 0) == 0 and len(
                page["Records"]) < 10_000):
                break
            iterator = page.get("NextShardIterator")


def list_keys(s3: Any, bucket: str, prefix: str = "") -> Iterable[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def read_objects(s3: Any, bucket: str, prefix: str = "") -> Iterable[bytes]:
    for key in list_keys(s3, bucket, prefix):
        yield s3.get_object(Bucket=bucket, Key=key)["Body"].read()
