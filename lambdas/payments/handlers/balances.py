"""Lambda handler of `balances`: ledger-entries -> the balances view, effectively once.

The state engine reads every touched account once (strongly consistent), applies the batch's
postings per account, and writes each changed account once, conditioned on its version;
copies and redeliveries are turned away by the item's fences (`cascata_runtime.state`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cascata_runtime import adapters
from cascata_runtime.handler import (
    BatchFunction,
    ClientFactory,
    Handler,
    keyed_view,
    lambda_handler,
    lazy,
)
from cascata_runtime.ports import ObjectStore
from cascata_runtime.state import KeyedStore, StateEngine
from payments.domain.balances import KEY, BalancesModel, keyed_postings
from payments.settings import BalancesSettings

PROCESSOR = "balances"
SETTINGS = BalancesSettings


@dataclass(frozen=True, slots=True)
class Dependencies:
    quarantine_bucket: str
    items: KeyedStore[str]
    objects: ObjectStore
    writers: int = 8


def dependencies(
    settings: BalancesSettings, client: ClientFactory = adapters.client
) -> Dependencies:
    return Dependencies(
        quarantine_bucket=settings.quarantine_bucket,
        items=adapters.DynamoItemStore(client("dynamodb"), settings.balances_table, key=KEY),
        objects=adapters.S3ObjectStore(client("s3")),
    )


def process(deps: Dependencies) -> BatchFunction:
    engine = StateEngine(deps.items, BalancesModel(), writers=deps.writers, what="balance")
    return keyed_view(PROCESSOR, engine, lambda b: keyed_postings(b.events, b.lineages),
                      objects=deps.objects, quarantine_bucket=deps.quarantine_bucket)


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(BalancesSettings.from_env())))
