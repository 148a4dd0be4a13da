"""Lambda handler of `balances`: ledger-entries -> the balances view, effectively once.

Reads every touched account once (one strongly consistent BatchGetItem per 100 accounts),
applies the batch's postings per account in the pure domain, and writes each changed account
with one conditional put on its version. A lost race re-reads that account and tries again; an
account that still cannot be written fails only its own records.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cascata_runtime import adapters
from cascata_runtime.handler import BatchFunction, ClientFactory, Handler, lambda_handler, lazy
from cascata_runtime.ports import ItemStore, ObjectStore
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, Effects, apply_effects, parse_records
from payments.domain.balances import AccountBalance, PostingAt, apply_postings, group_postings
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
    writers: int = 8



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

    def write_account(
        account: str, postings: list[PostingAt], item: Mapping[str, Any] | None
    ) -> dict[int, str]:
        for _attempt in range(WRITE_ATTEMPTS):
            state = AccountBalance.from_item(account, item)
            result = apply_postings(state, postings)
            if result.state is state:
                return {}
            try:
                if deps.items.put_if_version(result.state.to_item(KEY), state.version or None):
                    return {}
            except Exception as exc:  # noqa: BLE001 - fail this account's records only
                return {p.index: f"balance write failed: {exc}" for p in postings}
            item = deps.items.get_many([account]).get(account)
        return {p.index: "balance write lost every race for the account" for p in postings}

    def run(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        by_account, rejected = group_postings(parse_records(records))
        stored = deps.items.get_many(list(by_account)) if by_account else {}
        failed: dict[int, str] = {}
        # Accounts are independent: their writes go out concurrently (boto3 clients are
        # thread-safe), which is what keeps a batch of hundreds of accounts fast.
        with ThreadPoolExecutor(max_workers=deps.writers) as pool:
            futures = [
                pool.submit(write_account, account, postings, stored.get(account))
                for account, postings in by_account.items()
            ]
            for future in futures:
                failed.update(future.result())
        effects = Effects(quarantined=tuple(rejected), failed=failed)
        return apply_effects(records, effects, sink=None, quarantine=quarantine)

    return run


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(BalancesSettings.from_env())))
