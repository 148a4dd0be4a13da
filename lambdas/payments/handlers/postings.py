"""Lambda handler of `postings`: payments-validated -> ledger-entries, re-keyed by account."""

from __future__ import annotations

from cascata_runtime import adapters
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.handler import (
    BatchFunction,
    ClientFactory,
    Handler,
    TransformDependencies,
    lambda_handler,
    lazy,
    transform,
)
from payments.domain.postings import postings_batch
from payments.settings import PostingsSettings

PROCESSOR = "postings"
SETTINGS = PostingsSettings


def dependencies(
    settings: PostingsSettings, client: ClientFactory = adapters.client
) -> TransformDependencies:
    return TransformDependencies(
        output_stream=settings.ledger_stream,
        quarantine_bucket=settings.quarantine_bucket,
        sink=KinesisSink(client("kinesis")),
        objects=adapters.S3ObjectStore(client("s3")),
    )


def process(deps: TransformDependencies) -> BatchFunction:
    return transform(PROCESSOR, postings_batch, deps)


def make_handler(deps: TransformDependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(PostingsSettings.from_env())))
