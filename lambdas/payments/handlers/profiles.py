"""Lambda handler of `profiles`: customers + payments-validated -> the profiles view.

One function behind two event source mappings; each batch comes from one of them, and each
record is handled by its event type, not by the stream that carried it. Reads every touched
profile once (strongly consistent, 100 per BatchGetItem), applies the batch per customer in the
pure domain, and writes each changed profile with one put guarded by its version. A payment
touches its payer's and its payee's profiles; if either write fails, the record is reported
failed and the retry applies it where it is missing (the other profile's fence turns it away).
A lost race (the other mapping, or another shard, wrote the same profile) re-reads that profile
and tries again; a profile that still cannot be written fails only its own records.
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
from payments.domain.profiles import (
    COUNTERPARTIES,
    KEY,
    RECENT_IDS,
    FactAt,
    Profile,
    apply_facts,
    group_facts,
)
from payments.settings import ProfilesSettings

PROCESSOR = "profiles"
SETTINGS = ProfilesSettings
WRITE_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class Dependencies:
    quarantine_bucket: str
    items: ItemStore
    objects: ObjectStore
    counterparties: int = COUNTERPARTIES
    recent_ids: int = RECENT_IDS
    writers: int = 8



def dependencies(
    settings: ProfilesSettings, client: ClientFactory = adapters.client
) -> Dependencies:
    return Dependencies(
        quarantine_bucket=settings.quarantine_bucket,
        items=adapters.DynamoItemStore(client("dynamodb"), settings.profiles_table, key=KEY),
        objects=adapters.S3ObjectStore(client("s3")),
    )


def process(deps: Dependencies) -> BatchFunction:
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=PROCESSOR)

    def write_profile(
        customer: str, facts: list[FactAt], item: Mapping[str, Any] | None
    ) -> dict[int, str]:
        try:
            for _attempt in range(WRITE_ATTEMPTS):
                state = Profile.from_item(customer, item)
                result = apply_facts(
                    state, facts, counterparties=deps.counterparties, window=deps.recent_ids
                )
                if result.state is state:
                    return {}
                if deps.items.put_if_version(result.state.to_item(), state.version or None):
                    return {}
                item = deps.items.get_many([customer]).get(customer)
        except Exception as exc:  # noqa: BLE001 - fail this customer's records only
            return {f.index: f"profile write failed: {exc}" for f in facts}
        return {f.index: "profile write lost every race for the customer" for f in facts}

    def run(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        by_customer, rejected = group_facts(parse_records(records))
        failed: dict[int, str] = {}
        try:
            stored = deps.items.get_many(list(by_customer)) if by_customer else {}
        except Exception as exc:  # noqa: BLE001 - retried; invalid records still quarantined
            stored = {}
            failed = {f.index: f"profile read failed: {exc}"
                      for facts in by_customer.values() for f in facts}
            by_customer = {}
        # Profiles are independent: their writes go out concurrently (boto3 clients are
        # thread-safe), which keeps a batch touching hundreds of customers fast.
        with ThreadPoolExecutor(max_workers=deps.writers) as pool:
            futures = [
                pool.submit(write_profile, customer, facts, stored.get(customer))
                for customer, facts in by_customer.items()
            ]
            for future in futures:
                # A payment fails if either of its profiles failed; keep the first reason.
                for index, reason in future.result().items():
                    failed.setdefault(index, reason)
        effects = Effects(quarantined=tuple(rejected), failed=failed)
        return apply_effects(records, effects, sink=None, quarantine=quarantine)

    return run


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(ProfilesSettings.from_env())))
