"""Building blocks for thin Lambda handlers.

`lambda_handler` wraps a batch function with Powertools logging and metrics and returns the
partial batch response; `lazy` builds a handler's dependencies (settings, clients) on the first
invocation rather than at import, and once per execution environment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from cascata_runtime.envelope import Envelope, Rejection
from cascata_runtime.observability import NAMESPACE, publish
from cascata_runtime.ports import ObjectStore, Sink
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, Effects, apply_effects, parse_records

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


def transform_dependencies(
    *, output_stream: str, quarantine_bucket: str, client: ClientFactory
) -> TransformDependencies:
    """What a stream-to-stream processor needs, over boto3 clients from `client`."""
    from cascata_runtime.adapters import S3ObjectStore
    from cascata_runtime.emitter import KinesisSink

    return TransformDependencies(
        output_stream=output_stream,
        quarantine_bucket=quarantine_bucket,
        sink=KinesisSink(client("kinesis")),
        objects=S3ObjectStore(client("s3")),
    )


def transform(
    processor: str, core: TransformCore, deps: TransformDependencies
) -> BatchFunction:
    """A stream-to-stream processor: decode, run the pure core, emit and quarantine."""
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=processor)

    def process(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        events: Sequence[Envelope | Rejection] = parse_records(records)
        effects = core(events, output_stream=deps.output_stream)
        return apply_effects(records, effects, sink=deps.sink, quarantine=quarantine)

    return process
