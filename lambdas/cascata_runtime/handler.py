"""Building blocks for thin Lambda handlers.

`lambda_handler` wraps a batch function with Powertools logging and metrics and returns the
partial batch response; `lazy` builds a handler's dependencies (settings, clients) on the first
invocation rather than at import, and once per execution environment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from cascata_runtime.effects import Keyed
from cascata_runtime.envelope import Rejection
from cascata_runtime.errors import ConfigurationError
from cascata_runtime.observability import NAMESPACE, publish
from cascata_runtime.ports import ObjectStore, Sink
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import (
    Batch,
    BatchReport,
    Effects,
    Origins,
    apply_effects,
    read_batch,
)
from cascata_runtime.state import StateEngine, emitter

Handler = Callable[[Mapping[str, Any], Any], dict[str, Any]]
BatchFunction = Callable[[Mapping[str, Any]], BatchReport]
ClientFactory = Callable[[str], Any]
"""service name -> boto3 client; `adapters.client` in Lambda, the emulator's locally."""
TransformCore = Callable[..., Effects]
"""`core(events, output_stream=...) -> Effects`: a pure stream-to-stream transformation."""


def lambda_handler(processor: str, process: BatchFunction) -> Handler:
    logger = Logger(service=processor)
    metrics = Metrics(namespace=NAMESPACE, service=processor)

    @logger.inject_lambda_context(clear_state=True)
    def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        report = process(event)
        publish(report, metrics=metrics, logger=logger)
        return report.response()

    return handle


def lazy(build: Callable[[], Handler]) -> Handler:
    cached = functools.cache(build)

    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        return cached()(event, context)

    return handler


@dataclass(frozen=True, slots=True)
class TransformDependencies:
    output_stream: str
    quarantine_bucket: str
    sink: Sink
    objects: ObjectStore
    origins: Origins = field(default_factory=Origins)


def origins_from(
    origin_streams: str, dedupe_table: str | None, client: ClientFactory
) -> Origins:
    """The origin gate of a processor from its settings: the origin streams it reads with their
    policies (JSON, from the declaration) and the table of duplicate markers."""
    from cascata_runtime.adapters import DynamoMarkers
    from cascata_runtime.origin import parse_origins

    try:
        policies = parse_origins(origin_streams)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"ORIGIN_STREAMS is not a valid origin policy map: {exc}") from None
    markers = DynamoMarkers(client("dynamodb"), dedupe_table) if dedupe_table else None
    return Origins(policies=policies, markers=markers)


def transform_dependencies(
    *, output_stream: str, quarantine_bucket: str, client: ClientFactory,
    origins: Origins | None = None,
) -> TransformDependencies:
    """What a stream-to-stream processor needs, over boto3 clients from `client`."""
    from cascata_runtime.adapters import S3ObjectStore
    from cascata_runtime.sinks import stream_sink

    return TransformDependencies(
        output_stream=output_stream,
        quarantine_bucket=quarantine_bucket,
        sink=stream_sink(client),
        objects=S3ObjectStore(client("s3")),
        origins=origins or Origins(),
    )


KeyedInputs = Callable[[Batch], tuple[Sequence[Keyed[Any, Any]], Sequence[tuple[int, Rejection]]]]
"""The pure part of a view writer: a decoded batch -> its keyed inputs and its rejections."""


def keyed_view(
    processor: str, engine: StateEngine[Any, Any, Any], keyed: KeyedInputs, *,
    objects: ObjectStore, quarantine_bucket: str, origins: Origins | None = None,
    sink: Sink | None = None,
) -> BatchFunction:
    """A processor that maintains keyed state (a materialized view): decode, gate, key the
    batch with the pure domain, run the state engine, quarantine, report. With `sink`, the
    events the model's outcomes carry are emitted through it, each stamped with its cause's
    lineage, before the state that caused them is written (`cascata_runtime.state`)."""
    quarantine = QuarantineWriter(objects, bucket=quarantine_bucket, processor=processor)

    def process(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        batch = read_batch(records, origins)
        inputs, rejected = keyed(batch)
        publish = emitter(sink, batch.stamper) if sink is not None else None
        result = engine.run(inputs, publish=publish)
        report = apply_effects(
            records, Effects(quarantined=tuple(rejected), failed=result.failed),
            sink=None, quarantine=quarantine, batch=batch,
        )
        report.duplicates += result.duplicates
        return report

    return process


def transform(
    processor: str, core: TransformCore, deps: TransformDependencies
) -> BatchFunction:
    """A stream-to-stream processor: decode, run the pure core, emit and quarantine."""
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=processor)

    def process(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        batch = read_batch(records, deps.origins)
        effects = core(batch.events, output_stream=deps.output_stream)
        return apply_effects(records, effects, sink=deps.sink, quarantine=quarantine,
                             batch=batch)

    return process
