"""Builds each declared function locally, exactly as Lambda would run it, with injected clients.

Every handler module follows one convention: `SETTINGS` (its settings class),
`dependencies(settings, client)` and `make_handler(deps)`. Settings are read from the
environment the declaration gives the function (the same mapping the stacks set on AWS), and
clients come from the local runtime instead of the default chain, optionally wrapped to inject
faults or to record effects.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from cascata.local.emulator import Aws
from cascata.pipeline import Pipeline
from cascata_runtime.sinks import KAFKA_ADMIN, KAFKA_PRODUCER

Function = Callable[[Mapping[str, Any], Any], Any]
ClientWrapper = Callable[[str, Any], Any]
"""(service, client) -> client: a hook to wrap a function's clients (chaos, recording)."""

_LOCAL_POWERTOOLS = {
    # Powertools reads these when a handler module is imported: quiet, no metric buffering.
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def quiet_powertools() -> None:
    for name, value in _LOCAL_POWERTOOLS.items():
        os.environ.setdefault(name, value)


def build_function(
    pipeline: Pipeline,
    name: str,
    *,
    aws: Aws,
    stage: str,
    wrap: ClientWrapper | None = None,
    now: Callable[[], float] | None = None,
    environment: Mapping[str, str] | None = None,
    kafka_producer: Any = None,
    kafka_admin: Any = None,
) -> Function:
    """`now`: the wall clock handed to functions that take one (time-driven logic such as
    closing event-time windows), so the local runtime can move time for them.
    `environment`: variables on top of the declared ones (a version's configuration).
    `kafka_producer`: the producer the function's outputs go to when the pipeline runs on
    Kafka (`cascata_runtime.sinks`), and `kafka_admin` the admin client it asks about topics;
    None: Kinesis."""
    quiet_powertools()
    module = importlib.import_module(pipeline.function(name).module)
    env = pipeline.environment(name, stage=stage, account=aws.account, region=aws.region)
    env.update(environment or {})
    settings = module.SETTINGS.from_env(env)
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service == KAFKA_PRODUCER:
            return kafka_producer
        if service == KAFKA_ADMIN:
            return kafka_admin
        if service not in clients:
            real = aws.function_client(service)
            clients[service] = wrap(service, real) if wrap else real
        return clients[service]

    extra: dict[str, Any] = {}
    if now is not None and "now" in inspect.signature(module.dependencies).parameters:
        extra["now"] = now
    deps = module.dependencies(settings, client=client, **extra)
    handler: Function = module.make_handler(deps)
    return handler
