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

The module also holds the DynamoDB adapter of activity-view that `windows-close` uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from cascata_runtime import adapters
from cascata_runtime.effects import Effects
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.handler import BatchFunction, ClientFactory, Handler, lambda_handler, lazy
from cascata_runtime.ports import ObjectStore, Sink
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, apply_effects, read_batch
from cascata_runtime.state import StateEngine, emitter
from payments.adapters import DynamoWindowStore, KinesisShardLister, ShardLister, WindowStore
from payments.domain.windows import (
    PaneModel,
    ShardState,
    WindowConfig,
    commit_shard,
    due_items,
    pipeline_watermark,
    plan_batch,
)
from payments.settings import WindowsSettings
from payments.windowing import close_windows, read_shards, write_shard

PROCESSOR = "windows"
SETTINGS = WindowsSettings


def _kinesis_sources(event: Mapping[str, Any]) -> dict[str, str]:
    """Stream name (as in source positions) -> ARN, for the Kinesis records of an event."""
    out: dict[str, str] = {}
    records = event.get("Records")
    if not isinstance(records, list):
        return out  # MSK events carry `records` keyed by topic-partition
    for record in records:
        if isinstance(record, Mapping) and record.get("eventSource") == "aws:kinesis":
            arn = str(record.get("eventSourceARN", ""))
            if arn:
                out[arn.rsplit("/", 1)[-1]] = arn
    return out


# -- closing (shared with windows-close) -----------------------------------------------------


# -- the processor ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dependencies:
    activity_stream: str
    late_stream: str
    quarantine_bucket: str
    store: WindowStore
    sink: Sink
    objects: ObjectStore
    now: Callable[[], float] = time.time
    """The functions' clock (epoch seconds): only for shard liveness."""
    config: WindowConfig = field(default_factory=WindowConfig)
    writers: int = 8
    shard_lister: ShardLister | None = None
    """Lists a Kinesis source's shards, so closing waits for them; None: it does not wait."""


def dependencies(
    settings: WindowsSettings,
    client: ClientFactory = adapters.client,
    now: Callable[[], float] = time.time,
) -> Dependencies:
    kinesis = client("kinesis")
    return Dependencies(
        activity_stream=settings.activity_stream,
        late_stream=settings.late_stream,
        quarantine_bucket=settings.quarantine_bucket,
        store=DynamoWindowStore(client("dynamodb"), settings.activity_table),
        sink=KinesisSink(kinesis),
        objects=adapters.S3ObjectStore(client("s3")),
        now=now,
        shard_lister=KinesisShardLister(kinesis),
    )


def process(deps: Dependencies) -> BatchFunction:
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=PROCESSOR)
    logger = Logger(service=PROCESSOR)
    config = deps.config
    engine = StateEngine(deps.store, PaneModel(config, deps.late_stream), writers=deps.writers,
                         what="pane")

    def peers_of(event: Mapping[str, Any], shards: Mapping[str, ShardState]
                 ) -> dict[str, tuple[str, ...]]:
        """Stream name -> its shard ids: the open ones, and the closed ones registered."""
        lister = deps.shard_lister
        if lister is None:
            return {}
        out: dict[str, tuple[str, ...]] = {}
        for stream, arn in sorted(_kinesis_sources(event).items()):
            try:
                listed = lister.list_shards(arn)
            except Exception:  # closing then waits only for the registered shards
                logger.exception("listing the source's shards failed", extra={"stream": arn})
                continue
            out[stream] = tuple(s.shard_id for s in listed
                                if s.open or f"{stream}/{s.shard_id}" in shards)
        return out

    def commit(plan_shards: Mapping[str, ShardState], records: Any, report: BatchReport,
               now_s: float, peers: Mapping[str, tuple[str, ...]]) -> dict[str, ShardState]:
        """Each shard's committed prefix; if it cannot be written, fail the shard's first
        record beyond its old fence, so Lambda retries from it with the watermark it had."""
        written: dict[str, ShardState] = {}
        for key in sorted({r.shard_key for r in records}):
            current = plan_shards[key]
            new = commit_shard(config, current, records, report.failed, now_s=now_s,
                               peers=peers.get(current.stream))
            if new is None:
                continue
            try:
                stored = write_shard(deps.store, config, new, current.version or None)
            except Exception as exc:  # noqa: BLE001 - retried from the first record
                stored, problem = None, f"shard watermark write failed: {exc}"
            else:
                problem = "shard watermark write lost every race"
            if stored is not None:
                written[key] = stored
                continue
            first = min((r for r in records if r.shard_key == key), key=lambda r: r.sequence)
            report.failed.setdefault(first.index, problem)
        return written

    def run(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        batch = read_batch(records)
        now_s = deps.now()
        shards = read_shards(deps.store)
        peers = peers_of(event, shards)
        expected = [f"{stream}/{s}" for stream, ids in peers.items() for s in ids]
        plan = plan_batch(
            config, [r.position for r in records], [r.arrival_epoch_s for r in records],
            batch.events, batch.lineages, shards, expected=expected,
        )
        failed: dict[int, str] = {}
        applied = None
        try:
            for item in due_items(config, plan):
                deps.store.put(item)
        except Exception as exc:  # noqa: BLE001 - nothing applied; the batch is retried
            reason = f"due list write failed: {exc}"
            failed = {r.index: reason for r in plan.records}
        else:
            applied = engine.run(plan.inputs, publish=emitter(deps.sink, batch.stamper))
            failed = dict(applied.failed)
        effects = Effects(quarantined=plan.rejected, failed=failed)
        report = apply_effects(records, effects, sink=None, quarantine=quarantine, batch=batch)
        if applied is not None:
            report.emitted.extend(applied.emitted)
            report.duplicates += applied.duplicates
        shards.update(commit(plan.shards, plan.records, report, now_s, peers))
        try:
            closed = close_windows(
                store=deps.store, sink=deps.sink, stream=deps.activity_stream, config=config,
                watermark=pipeline_watermark(config, shards.values(), expected),
            )
        except Exception:  # windows-close finishes the job
            logger.exception("close pass failed; windows-close will close these windows")
        else:
            if closed.failed:
                logger.warning("close pass incomplete",
                               extra={**closed.summary(), "first": closed.failed[:3]})
        return report

    return run


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(WindowsSettings.from_env())))
