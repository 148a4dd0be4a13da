"""Lambda handler of `validate`: payments-raw -> payments-validated, or quarantine."""

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
from payments.domain.validate import validate_batch
from payments.settings import ValidateSettings

PROCESSOR = "validate"
SETTINGS = ValidateSettings


def dependencies(
    settings: ValidateSettings, client: ClientFactory = adapters.client
) -> TransformDependencies:
    return TransformDependencies(
        output_stream=settings.validated_stream,
        quarantine_bucket=settings.quarantine_bucket,
        sink=KinesisSink(client("kinesis")),
        objects=adapters.S3ObjectStore(client("s3")),
    )


def process(deps: TransformDependencies) -> BatchFunction:
    return transform(PROCESSOR, validate_batch, deps)


def make_handler(deps: TransformDependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(ValidateSettings.from_env())))
