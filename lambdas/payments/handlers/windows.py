"""Lambda handler of `windows`: payments-validated -> activity-view (panes), activity,
activity-late.

Per batch (the semantics are in `payments.domain.windows`):

1. one consistent Query for the shard items (committed fences and watermarks);
2. the batch's due lists (per pane start, the accounts it touches), before any pane, so a
   closer finds every pane; a retried batch rewrites the same items;
3. the panes through the state engine (`cascata_runtime.state`): one consistent batch read,
   one version-guarded write per touched (account, pane), lineage fences against copies. The
   late side output is the pane model's output: a side's `payment.late` is emitted (before its
   pane is written) only when the pane's fences admit the side, so a copy re-emitted upstream,
   which its new position may make late where the original was on time, adds none;
4. the quarantine;
5. one write per source shard of its committed prefix (fence and watermark);
6. a close pass: the results of the windows the pipeline watermark has passed since the close
   cursor, emitted to activity. Best effort here (logged): `windows-close` runs the same pass
   every minute. Nothing is rewritten when a window closes.

Closing waits for the source's shards: for a Kinesis source the processor lists the stream's
shards (`ShardLister`, cached per execution environment) and stores them as its shard item's
peers; a shard listed but not registered yet keeps the pipeline watermark unknown. MSK events
give no cheap view of a topic's partitions: a partition counts once it delivered.

The batch flow is `payments.windowing.windows_batch`; the adapters are `payments.adapters`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cascata_runtime import adapters
from cascata_runtime.handler import ClientFactory, Handler, lambda_handler, lazy
from cascata_runtime.kafka_topics import AdminTopics
from cascata_runtime.sinks import KAFKA_ADMIN, kafka_client, stream_sink
from payments.adapters import (
    DynamoWindowStore,
    KafkaPartitionLister,
    KinesisShardLister,
    ShardLister,
)
from payments.settings import WindowsSettings
from payments.windowing import WindowsDependencies, windows_batch

PROCESSOR = "windows"
SETTINGS = WindowsSettings


# -- closing (shared with windows-close) -----------------------------------------------------


# -- the processor ---------------------------------------------------------------------------


def dependencies(
    settings: WindowsSettings,
    client: ClientFactory = adapters.client,
    now: Callable[[], float] = time.time,
) -> WindowsDependencies:
    topics = kafka_client(client, KAFKA_ADMIN, "list_topics", "list_offsets")
    lister: ShardLister = (KinesisShardLister(client("kinesis")) if topics is None
                           else KafkaPartitionLister(AdminTopics(topics)))
    return WindowsDependencies(
        activity_stream=settings.activity_stream,
        late_stream=settings.late_stream,
        quarantine_bucket=settings.quarantine_bucket,
        store=DynamoWindowStore(client("dynamodb"), settings.activity_table),
        sink=stream_sink(client),
        objects=adapters.S3ObjectStore(client("s3")),
        now=now,
        shard_lister=lister,
    )


def make_handler(deps: WindowsDependencies) -> Handler:
    return lambda_handler(PROCESSOR, windows_batch(PROCESSOR, deps))


handler = lazy(lambda: make_handler(dependencies(WindowsSettings.from_env())))
