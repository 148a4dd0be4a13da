"""Lambda handler of `balances`: ledger-entries -> the balances view, effectively once.

Reads every touched account once (one strongly consistent BatchGetItem per 100 accounts),
applies the batch's postings per account in the pure domain, and writes each changed account
with one conditional put on its version. A lost race re-reads that account and tries again; an
account that still cannot be written fails only its own records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cascata_runtime import adapters
from cascata_runtime.handler import BatchFunction, ClientFactory, Handler, lambda_handler, lazy
from cascata_runtime.ports import ItemStore, ObjectStore
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, Effects, apply_effects, parse_records

from payments.domain.balances import AccountBalance, apply_postings, group_postings
from payments.settings import BalancesSettings

PROCESSOR = "balances"
SETTINGS = BalancesSettings
KEY = "account_id"
WRITE_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class Dependencies:
    quarantine_bucket: str
    items: ItemStore
    objects: ObjectStore


class _NoSink:
    """balances emits no events; quarantining goes through the shared shell all the same."""

    def emit(self, stream: str, records: Any) -> list[Any]:
        raise AssertionError("balances emits no events")


def dependencies(
    settings: BalancesSettings, client: ClientFactory = adapters.client
) -> Dependencies:
    return Dependencies(
        quarantine_bucket=settings.quarantine_bucket,
        items=adapters.DynamoItemStore(
            client("dynamodb"), settings.balances_table, key=KEY
        ),
        objects=adapters.S3ObjectStore(client("s3")),
    )


def process(deps: Dependencies) -> BatchFunction:
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=PROCESSOR)

    def run(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        by_account, rejected = group_postings(parse_records(records))
        failed: dict[int, str] = {}
        stored = deps.items.get_many(list(by_account)) if by_account else {}
        for account, postings in by_account.items():
            item = stored.get(account)
            for _attempt in range(WRITE_ATTEMPTS):
                state = AccountBalance.from_item(account, item)
                result = apply_postings(state, postings)
                if not result.changed and result.state is state:
                    break
                try:
                    written = deps.items.put_if_version(
                        result.state.to_item(KEY), state.version or None
                    )
                except Exception as exc:  # noqa: BLE001 - fail this account's records only
                    failed.update({p.index: f"balance write failed: {exc}" for p in postings})
                    break
                if written:
                    break
                item = deps.items.get_many([account]).get(account)
            else:
                failed.update(
                    {p.index: "balance write lost every race for the account" for p in postings}
                )
        effects = Effects(quarantined=tuple(rejected), failed=failed)
        return apply_effects(records, effects, sink=_NoSink(), quarantine=quarantine)

    return run


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(BalancesSettings.from_env())))
