"""balances: the balance of every account per currency, applied effectively once.

Each account is one item: balances per currency, a fence per source shard (the highest
sequence number applied from it) and the short ids of the last `RECENT_IDS` postings applied.
A batch is coalesced per account, so an account touched by many postings in one batch costs one
write. The fence turns away redeliveries of records already applied (Lambda retries, the same
batch delivered twice); the recent ids turn away the same posting arriving again at a new
position (a producer sending an event twice, an upstream processor re-emitting a batch after a
crash). Both checks happen in the same read-modify-write that applies the amounts, guarded by
the item's version, so no separate idempotency record is ever written.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cascata_runtime.envelope import Envelope, Rejection
from payments.domain.schemas import LedgerPosting, sort_by_type

RECENT_IDS = 64
"""How many recent posting ids each account remembers. 64 ids of 11 characters keep the item
under 1 KB, so each account write costs one write unit."""


@dataclass(frozen=True, slots=True)
class AccountBalance:
    account: str
    balances: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    fences: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    recent: tuple[str, ...] = ()
    postings: int = 0
    version: int = 0
    """0 means the item has never been stored."""

    @classmethod
    def from_item(cls, account: str, item: Mapping[str, Any] | None) -> AccountBalance:
        if not item:
            return cls(account)
        recent = str(item.get("recent", ""))
        return cls(
            account=account,
            balances=MappingProxyType({k: int(v) for k, v in item.get("balances", {}).items()}),
            fences=MappingProxyType({k: int(v) for k, v in item.get("fences", {}).items()}),
            recent=tuple(recent.split()) if recent else (),
            postings=int(item.get("postings", 0)),
            version=int(item.get("version", 0)),
        )

    def to_item(self, key: str = "account_id") -> dict[str, Any]:
        item: dict[str, Any] = {
            key: self.account,
            "balances": dict(self.balances),
            # Strings: Kinesis sequence numbers have 56 digits, DynamoDB numbers hold 38.
            "fences": {k: str(v) for k, v in self.fences.items()},
            "postings": self.postings,
            "version": self.version,
        }
        if self.recent:
            item["recent"] = " ".join(self.recent)
        return item


@dataclass(frozen=True, slots=True)
class PostingAt:
    """A posting with where it was read and which input record it is."""

    posting: LedgerPosting
    shard: str
    sequence: int
    index: int


@dataclass(frozen=True, slots=True)
class Applied:
    state: AccountBalance
    applied: tuple[int, ...]
    duplicates: tuple[int, ...]
    redelivered: tuple[int, ...]

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def short_id(event_id: str) -> str:
    """64 bits of the posting id: collisions among 64 ids of one account are negligible."""
    return base64.urlsafe_b64encode(hashlib.sha256(event_id.encode()).digest()[:8]).decode()[:11]


def shard_tag(shard: str) -> str:
    """`shardId-000000000003` -> `3`; anything else unchanged (Kafka partitions are numbers)."""
    if shard.startswith("shardId-"):
        return shard[len("shardId-") :].lstrip("0") or "0"
    return shard


def apply_postings(
    state: AccountBalance, postings: Sequence[PostingAt], *, window: int = RECENT_IDS
) -> Applied:
    balances = dict(state.balances)
    fences = dict(state.fences)
    recent = list(state.recent)
    seen = set(recent)
    applied: list[int] = []
    duplicates: list[int] = []
    redelivered: list[int] = []
    for item in sorted(postings, key=lambda p: (p.shard, p.sequence)):
        tag = shard_tag(item.shard)
        fence = fences.get(tag)
        # Kafka offsets start at 0, so "no fence yet" must not read as "fence at 0".
        if fence is not None and item.sequence <= fence:
            redelivered.append(item.index)
            continue
        fences[tag] = item.sequence
        sid = short_id(item.posting.envelope.event_id)
        if sid in seen:
            duplicates.append(item.index)
            continue
        seen.add(sid)
        recent.append(sid)
        currency = item.posting.amount.currency
        balances[currency] = balances.get(currency, 0) + item.posting.signed_minor
        applied.append(item.index)
    if not applied and fences == dict(state.fences):
        return Applied(state, (), tuple(duplicates), tuple(redelivered))
    new_state = AccountBalance(
        account=state.account,
        balances=MappingProxyType(balances),
        fences=MappingProxyType(fences),
        recent=tuple(recent[-window:]) if window > 0 else (),
        postings=state.postings + len(applied),
        version=state.version + 1,
    )
    return Applied(new_state, tuple(applied), tuple(duplicates), tuple(redelivered))


def group_postings(
    events: Sequence[Envelope | Rejection],
) -> tuple[dict[str, list[PostingAt]], list[tuple[int, Rejection]]]:
    """Postings of a batch grouped by account, and the records that are not valid postings."""
    postings, rejected = sort_by_type(events, LedgerPosting)
    by_account: dict[str, list[PostingAt]] = {}
    for index, posting in postings:
        assert isinstance(posting, LedgerPosting)
        causation = posting.envelope.causation
        if causation is None:
            rejected.append((index, Rejection("causation", "missing", "no source position")))
            continue
        by_account.setdefault(posting.account, []).append(
            PostingAt(posting, causation.shard, int(causation.sequence), index)
        )
    return by_account, rejected
