"""Lambda handler of `profiles`: customers + payments-validated -> the profiles view.

One function behind two event source mappings; each batch comes from one of them, and each
record is handled by its event type, not by the stream that carried it. `customers` is an
origin stream: its batches pass the origin gate first (event-time bounds, producer retries
suppressed). The state engine then reads every touched profile once, applies the batch per
customer in the pure domain and writes each changed profile once, guarded by its version. A
payment touches its payer's and its payee's profiles; if either write fails, the record is
reported failed and the retry applies it where it is missing (the other profile's fences turn
it away there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cascata_runtime import adapters
from cascata_runtime.handler import (
    BatchFunction,
    ClientFactory,
    Handler,
    keyed_view,
    lambda_handler,
    lazy,
    origins_from,
)
from cascata_runtime.ports import ObjectStore
from cascata_runtime.shell import Origins
from cascata_runtime.state import KeyedStore, StateEngine
from payments.domain.profiles import COUNTERPARTIES, KEY, ProfilesModel, keyed_facts
from payments.settings import ProfilesSettings

PROCESSOR = "profiles"
SETTINGS = ProfilesSettings


@dataclass(frozen=True, slots=True)
class Dependencies:
    quarantine_bucket: str
    items: KeyedStore[str]
    objects: ObjectStore
    origins: Origins = field(default_factory=Origins)
    counterparties: int = COUNTERPARTIES
    writers: int = 8


def dependencies(
    settings: ProfilesSettings, client: ClientFactory = adapters.client
) -> Dependencies:
    return Dependencies(
        quarantine_bucket=settings.quarantine_bucket,
        items=adapters.DynamoItemStore(client("dynamodb"), settings.profiles_table, key=KEY),
        objects=adapters.S3ObjectStore(client("s3")),
        origins=origins_from(settings.origin_streams, settings.dedupe_table, client),
    )


def process(deps: Dependencies) -> BatchFunction:
    engine = StateEngine(deps.items, ProfilesModel(deps.counterparties), writers=deps.writers,
                         what="profile")
    return keyed_view(PROCESSOR, engine, lambda b: keyed_facts(b.events, b.lineages),
                      objects=deps.objects, quarantine_bucket=deps.quarantine_bucket,
                      origins=deps.origins)


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(ProfilesSettings.from_env())))
