"""Lambda handler of `postings`: payments-validated -> ledger-entries, re-keyed by account."""

from __future__ import annotations

from cascata_runtime import adapters
from cascata_runtime.handler import (
    ClientFactory,
    Handler,
    TransformDependencies,
    lambda_handler,
    lazy,
    transform,
    transform_dependencies,
)
from payments.domain.postings import postings_batch
from payments.settings import PostingsSettings

PROCESSOR = "postings"
SETTINGS = PostingsSettings


def dependencies(
    settings: PostingsSettings, client: ClientFactory = adapters.client
) -> TransformDependencies:
    return transform_dependencies(
        output_stream=settings.ledger_stream,
        quarantine_bucket=settings.quarantine_bucket,
        client=client,
    )


def make_handler(deps: TransformDependencies) -> Handler:
    return lambda_handler(PROCESSOR, transform(PROCESSOR, postings_batch, deps))


handler = lazy(lambda: make_handler(dependencies(SETTINGS.from_env())))
