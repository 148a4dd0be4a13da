"""Lambda handler of `validate`: payments-raw -> payments-validated, or quarantine."""

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
    )


def make_handler(deps: TransformDependencies) -> Handler:
    return lambda_handler(PROCESSOR, transform(PROCESSOR, validate_batch, deps))


handler = lazy(lambda: make_handler(dependencies(SETTINGS.from_env())))
