"""Lambda handler of `validate`: payments-raw -> payments-validated, or quarantine.

payments-raw is an origin stream: the runtime's origin gate quarantines events dated outside
the stream's bounds and suppresses producer retries of the same event before `validate_batch`
sees the batch (`cascata_runtime.origin`)."""

from __future__ import annotations

from cascata_runtime import adapters
from cascata_runtime.handler import (
    ClientFactory,
    Handler,
    TransformDependencies,
    lambda_handler,
    lazy,
    origins_from,
    transform,
    transform_dependencies,
)
from payments.domain.validate import validate_batch
from payments.settings import ValidateSettings

PROCESSOR = "validate"
SETTINGS = ValidateSettings


def dependencies(
    settings: ValidateSettings, client: ClientFactory = adapters.client
) -> TransformDependencies:
    return transform_dependencies(
        output_stream=settings.validated_stream,
        quarantine_bucket=settings.quarantine_bucket,
        client=client,
        origins=origins_from(settings.origin_streams, settings.dedupe_table, client),
    )


def make_handler(deps: TransformDependencies) -> Handler:
    return lambda_handler(PROCESSOR, transform(PROCESSOR, validate_batch, deps))


handler = lazy(lambda: make_handler(dependencies(SETTINGS.from_env())))
