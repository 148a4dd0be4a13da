"""balances: the balance of every account per currency.

Each account is one item: its balance per currency and how many postings were applied. The
state engine (`cascata_runtime.state`) does the rest: it coalesces a batch per account (an
account touched by many postings in one batch costs one write), and the fences it keeps in the
same item turn away redeliveries and re-emitted copies exactly (`cascata_runtime.lineage`),
so this module only adds amounts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cascata_runtime.effects import Keyed, Outcome
from cascata_runtime.envelope import Envelope, Rejection
from cascata_runtime.lineage import Lineage
from payments.domain.schemas import LedgerPosting, sort_by_type

KEY = "account_id"


@dataclass(frozen=True, slots=True)
class AccountBalance:
    account: str
    balances: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    postings: int = 0

    @classmethod
    def from_item(cls, account: str, item: Mapping[str, Any] | None) -> AccountBalance:
        if not item:
            return cls(account)
        return cls(
            account=account,
            balances=MappingProxyType({k: int(v) for k, v in item.get("balances", {}).items()}),
            postings=int(item.get("postings", 0)),
        )

    def to_item(self) -> dict[str, Any]:
        return {"balances": dict(self.balances), "postings": self.postings}


def apply_postings(state: AccountBalance, postings: Sequence[LedgerPosting]) -> AccountBalance:
    balances = dict(state.balances)
    for posting in postings:
        currency = posting.amount.currency
        balances[currency] = balances.get(currency, 0) + posting.signed_minor
    return AccountBalance(state.account, MappingProxyType(balances),
                          state.postings + len(postings))


class BalancesModel:
    """The balances view for the state engine."""

    def load(self, key: str, item: Mapping[str, Any] | None) -> AccountBalance:
        return AccountBalance.from_item(key, item)

    def dump(self, key: str, state: AccountBalance) -> dict[str, Any]:
        return state.to_item()

    def apply(
        self, key: str, state: AccountBalance, inputs: Sequence[Keyed[str, LedgerPosting]]
    ) -> Outcome[AccountBalance]:
        return Outcome(apply_postings(state, [x.value for x in inputs]))


def keyed_postings(
    events: Sequence[Envelope | Rejection | None], lineages: Sequence[Lineage]
) -> tuple[list[Keyed[str, LedgerPosting]], list[tuple[int, Rejection]]]:
    """The batch's postings keyed by account, and the records that are not valid postings."""
    postings, rejected = sort_by_type(events, LedgerPosting)
    keyed = []
    for index, posting in postings:
        assert isinstance(posting, LedgerPosting)
        keyed.append(Keyed(posting.account, posting, index, lineages[index]))
    return keyed, rejected
