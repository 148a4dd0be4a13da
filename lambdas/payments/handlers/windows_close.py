"""Scheduled handler of `windows-close`: final results for windows, also when the pipeline went
quiet.

EventBridge Scheduler invokes it every minute. It reads the shard items the `windows` processor
keeps in activity-view and:

1. raises the floor of every idle shard (no batch for `idle_after_s` of the functions' clock)
   to the lowest watermark of the active shards, or to the clock minus `close_grace_s` when
   all are idle: first as a PENDING raise, which the shard's processor applies at once to its
   late decisions;
2. for every shard with a pending raise, checks that the processor's committed fence is at the
   shard's tip (`ShardTip`: no record after it). Then no batch that read the old watermark can
   still apply a payment, and the raise becomes VERIFIED, i.e. part of the pipeline watermark
   readers and closers use. A shard not at its tip keeps its raise pending for the next run;
3. runs the close pass (`payments.windowing.close_windows`) until no window the
   pipeline watermark has passed is left, or the invocation's time runs short.

Everything is idempotent: a second run emits nothing new, and a re-emitted result has the same
event id. If some results could not be emitted it raises after doing all it could, so the run
lands in the schedule's dead-letter queue and the errors alarm fires; the next tick retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aws_lambda_powertools import Logger

from cascata_runtime import adapters
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.envelope import format_time
from cascata_runtime.handler import ClientFactory, Handler, lazy
from cascata_runtime.ports import Sink
from payments.adapters import DynamoWindowStore, KinesisShardTip, ShardTip, WindowStore
from payments.domain.windows import (
    ShardState,
    WindowConfig,
    from_us,
    idle_raises,
    pipeline_watermark,
    verified,
)
from payments.settings import WindowsCloseSettings
from payments.windowing import CloseReport, close_windows, read_shards, write_shard

PROCESSOR = "windows-close"
SETTINGS = WindowsCloseSettings
PASS_LIMIT = 5000
"""Windows per close pass; passes repeat while more are due and time remains."""
MAX_PASSES = 200
SAFETY_MS = 10_000
"""Stop starting passes when less than this much of the invocation's time is left."""


class WindowsCloseIncompleteError(RuntimeError):
    """Some window results could not be emitted in this run; the next run retries them."""






@dataclass(frozen=True, slots=True)
class Dependencies:
    activity_stream: str
    store: WindowStore
    sink: Sink
    tip: ShardTip | None = None
    """None: idle shards are never verified (their windows close by watermark only)."""
    now: Callable[[], float] = time.time
    """The functions' clock (epoch seconds), injected so tests and the local runtime control
    it."""
    config: WindowConfig = field(default_factory=WindowConfig)


def dependencies(
    settings: WindowsCloseSettings,
    client: ClientFactory = adapters.client,
    now: Callable[[], float] = time.time,
) -> Dependencies:
    kinesis = client("kinesis")
    return Dependencies(
        activity_stream=settings.activity_stream,
        store=DynamoWindowStore(client("dynamodb"), settings.activity_table),
        sink=KinesisSink(kinesis),
        tip=KinesisShardTip(kinesis),
        now=now,
    )


def raise_idle(deps: Dependencies, now_s: float) -> dict[str, ShardState]:
    """Steps 1 and 2 of the module doc; returns the shard states as they now stand."""
    config = deps.config
    shards = read_shards(deps.store)
    for raised in idle_raises(config, shards.values(), now_s=now_s):
        current = shards.get(raised.key)
        stored = write_shard(
            deps.store, config,
            replace(raised, version=raised.version + 1),
            current.version if current is not None else None,
        )
        if stored is not None:
            shards[stored.key] = stored
    if deps.tip is None:
        return shards
    for key, state in sorted(shards.items()):
        if state.pending_us is None:
            continue
        # The raise is stored before the tip is read: a batch that read the old watermark
        # holds records after the fence until it commits.
        if deps.tip.at_tip(state.stream, state.shard, state.fence) is not True:
            continue
        good = replace(verified(state), version=state.version + 1)
        if deps.store.put_if_version(good.to_item(config), state.version or None):
            shards[key] = good
    return shards


def close_due(deps: Dependencies, remaining_ms: Callable[[], int]) -> dict[str, Any]:
    now_s = deps.now()
    shards = raise_idle(deps, now_s)
    watermark = pipeline_watermark(deps.config, shards.values())
    total = CloseReport()
    passes = 0
    while True:
        report = close_windows(
            store=deps.store, sink=deps.sink, stream=deps.activity_stream, config=deps.config,
            watermark=watermark, limit=PASS_LIMIT,
        )
        total += report
        passes += 1
        if not report.more or report.failed or passes >= MAX_PASSES:
            break
        if remaining_ms() < SAFETY_MS:
            break
    return {
        **total.summary(),
        "passes": passes,
        "now": format_time(from_us(int(now_s * 1_000_000))),
        "watermark": None if watermark.watermark_us is None else format_time(
            from_us(watermark.watermark_us)),
        "closed_by": watermark.closed_by,
        "pending_raises": sorted(k for k, s in shards.items() if s.pending_us is not None),
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
            logger.error("window results not emitted; the next run retries them",
                         extra=summary)
            raise WindowsCloseIncompleteError(
                f"{summary['failed']} window(s) not emitted: {'; '.join(summary['errors'])}"
            )
        logger.info("windows closed", extra=summary)
        return summary

    return handle


handler = lazy(lambda: make_handler(dependencies(WindowsCloseSettings.from_env())))
