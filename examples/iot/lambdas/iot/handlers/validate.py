"""Lambda handler of `validate`: readings-raw -> readings, invalid readings to the quarantine.

The origin gate drops a device's retried sends (same event id) before the pure core sees them.
"""

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
from iot.domain.readings import validate_batch
from iot.settings import ValidateSettings

PROCESSOR = "validate"
SETTINGS = ValidateSettings


def dependencies(settings: ValidateSettings, client: ClientFactory = adapters.client
                 ) -> TransformDependencies:
    return transform_dependencies(
        output_stream=settings.readings_stream, quarantine_bucket=settings.quarantine_bucket,
        client=client,
        origins=origins_from(settings.origin_streams, settings.dedupe_table, client))


def make_handler(deps: TransformDependencies) -> Handler:
    return lambda_handler(PROCESSOR, transform(PROCESSOR, validate_batch, deps))


handler = lazy(lambda: make_handler(dependencies(ValidateSettings.from_env())))
