"""Scheduled handler of `windows-close`: final results for windows whose keys went quiet.

EventBridge Scheduler invokes it every minute. It reads the shard items the `windows` processor
keeps in activity-view, computes how far windows may close (the pipeline watermark, or, when
every shard is idle, the wall clock minus the grace: see `payments.domain.windows`), and runs
the same close pass as the processor over the `open-by-close` index: freeze, emit
`window.closed` to activity, mark final. It also finishes any close a processor left half
done (`closing` items). Everything it does is idempotent: a second run emits nothing new, and
re-emitting an interrupted close yields the same event id and content.

It returns a small summary. If some windows could not be closed it raises after doing all it
could, so the run lands in the schedule's dead-letter queue and the errors alarm fires; the
next tick retries those windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from cascata_runtime import adapters
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.envelope import format_time
from cascata_runtime.handler import ClientFactory, Handler, lazy
from cascata_runtime.ports import Sink
from payments.domain.windows import WindowConfig, close_bound, from_us
from payments.handlers.windows import (
    CloseReport,
    DynamoWindowStore,
    WindowStore,
    close_windows,
    read_shards,
)
from payments.settings import WindowsCloseSettings

PROCESSOR = "windows-close"
SETTINGS = WindowsCloseSettings
PASS_LIMIT = 1000
"""Windows per pass; passes repeat while the index has more and time remains."""
MAX_PASSES = 50
SAFETY_MS = 10_000
"""Stop starting passes when less than this much of the invocation's time is left."""
RECOVER_AFTER_S = 10.0
"""A `closing` item frozen longer ago than this is re-emitted (its closer was interrupted)."""


class WindowsCloseIncompleteError(RuntimeError):
    """Some windows could not be closed in this run; the next run retries them."""


@dataclass(frozen=True, slots=True)
class Dependencies:
    activity_stream: str
    store: WindowStore
    sink: Sink
    now: Callable[[], float] = time.time
    """The wall clock (epoch seconds), injected so tests and the local runtime control it."""
    config: WindowConfig = field(default_factory=WindowConfig)


def dependencies(
    settings: WindowsCloseSettings,
    client: ClientFactory = adapters.client,
    now: Callable[[], float] = time.time,
) -> Dependencies:
    return Dependencies(
        activity_stream=settings.activity_stream,
        store=DynamoWindowStore(client("dynamodb"), settings.activity_table),
        sink=KinesisSink(client("kinesis")),
        now=now,
    )


def close_due(deps: Dependencies, remaining_ms: Callable[[], int]) -> dict[str, Any]:
    now_s = deps.now()
    shards = read_shards(deps.store)
    bound = close_bound(deps.config, shards.values(), now_s=now_s)
    total = CloseReport()
    passes = 0
    while True:
        report = close_windows(
            store=deps.store, sink=deps.sink, stream=deps.activity_stream, bound=bound,
            now_s=now_s, limit=PASS_LIMIT, recover_after_s=RECOVER_AFTER_S,
        )
        total += report
        passes += 1
        progressed = report.frozen or report.finalized
        if not (report.more and progressed) or passes >= MAX_PASSES:
            break
        if remaining_ms() < SAFETY_MS:
            break
    bound_us = bound.bound_us
    return {
        **total.summary(),
        "passes": passes,
        "now": format_time(from_us(int(now_s * 1_000_000))),
        "watermark": None if bound.watermark_us is None else format_time(
            from_us(bound.watermark_us)),
        "bound": None if bound_us is None else format_time(from_us(bound_us)),
        "active_shards": len(bound.active),
        "errors": list(total.failed[:5]),
    }


def make_handler(deps: Dependencies) -> Handler:
    logger = Logger(service=PROCESSOR)

    @logger.inject_lambda_context(clear_state=True)
    def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        remaining: Callable[[], int] = getattr(
            context, "get_remaining_time_in_millis", lambda: 60_000
        )
        summary = close_due(deps, remaining)
        if summary["failed"]:
            logger.error("windows left unclosed; the next run retries them", extra=summary)
            raise WindowsCloseIncompleteError(
                f"{summary['failed']} window(s) not closed: {'; '.join(summary['errors'])}"
            )
        logger.info("windows closed", extra=summary)
        return summary

    return handle


handler = lazy(lambda: make_handler(dependencies(WindowsCloseSettings.from_env())))
