"""Lambda handler of `ingest`: `POST /events` -> the raw stream, with a status per event.

The pure core (`payments.domain.ingest`) checks the route, the content type, the body and the
shape of every envelope; this shell writes the accepted ones to the raw stream through its
sink (`stream_sink`: PutRecords chunked, failed entries retried with backoff; or Kafka) and
answers with what was written. An event that still could not be written is reported
`rejected` with reason "not written, retry" and the answer is a 503, so the client resends
exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools import Logger

from cascata_runtime import adapters
from cascata_runtime.handler import ClientFactory, Handler, lazy
from cascata_runtime.http import HttpRequest, Response, api_handler
from cascata_runtime.ports import OutRecord, Sink
from cascata_runtime.sinks import stream_sink
from payments.domain.ingest import Accepted, outcome, plan
from payments.settings import IngestSettings

PROCESSOR = "ingest"
SETTINGS = IngestSettings

@dataclass(frozen=True, slots=True)
class Dependencies:
    raw_stream: str
    sink: Sink


def dependencies(settings: IngestSettings, client: ClientFactory = adapters.client) -> Dependencies:
    return Dependencies(raw_stream=settings.raw_stream, sink=stream_sink(client))


def answer(deps: Dependencies, request: HttpRequest, logger: Logger) -> Response:
    checked = plan(request)
    if isinstance(checked, Response):
        return checked
    records = [
        OutRecord(partition_key=c.key, data=c.data, tag=c.index)
        for c in checked
        if isinstance(c, Accepted)
    ]
    not_written: set[int] = set()
    if records:
        try:
            failures = deps.sink.emit(deps.raw_stream, records)
        except Exception:  # nothing is known to be written: all are retried
            logger.exception("writing to the raw stream failed")
            not_written = {r.tag for r in records}
        else:
            for failure in failures:
                logger.warning("event not written", extra={"index": failure.tag,
                                                           "reason": failure.reason})
            not_written = {f.tag for f in failures}
    return outcome(checked, frozenset(not_written))


def make_handler(deps: Dependencies) -> Handler:
    logger = Logger(service=PROCESSOR)
    return api_handler(PROCESSOR, lambda request: answer(deps, request, logger), logger=logger)


handler = lazy(lambda: make_handler(dependencies(IngestSettings.from_env())))
