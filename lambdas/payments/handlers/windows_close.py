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
from typing import Any

from aws_lambda_powertools import Logger

from cascata_runtime import adapters
from cascata_runtime.handler import ClientFactory, Handler, lazy
from cascata_runtime.kafka_topics import AdminTopics
from cascata_runtime.sinks import KAFKA_ADMIN, kafka_client, stream_sink
from payments.adapters import DynamoWindowStore, KafkaPartitionTip, KinesisShardTip, ShardTip
from payments.settings import WindowsCloseSettings
from payments.windowing import (
    CloseDependencies,
    WindowsCloseIncompleteError,
    close_due,
)

PROCESSOR = "windows-close"
SETTINGS = WindowsCloseSettings


def dependencies(
    settings: WindowsCloseSettings,
    client: ClientFactory = adapters.client,
    now: Callable[[], float] = time.time,
) -> CloseDependencies:
    topics = kafka_client(client, KAFKA_ADMIN, "list_topics", "list_offsets")
    tip: ShardTip = (KinesisShardTip(client("kinesis")) if topics is None
                     else KafkaPartitionTip(AdminTopics(topics)))
    return CloseDependencies(
        activity_stream=settings.activity_stream,
        store=DynamoWindowStore(client("dynamodb"), settings.activity_table),
        sink=stream_sink(client),
        tip=tip,
        now=now,
    )


def make_handler(deps: CloseDependencies) -> Handler:
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
