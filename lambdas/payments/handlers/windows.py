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

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from cascata_runtime import adapters
from cascata_runtime.effects import Effects
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.handler import BatchFunction, ClientFactory, Handler, lambda_handler, lazy
from cascata_runtime.ports import ObjectStore, OutRecord, Sink
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, apply_effects, read_batch
from cascata_runtime.state import StateEngine, emitter
from payments.domain.windows import (
    BOOKKEEPING_PARTITION,
    CURSOR_KEY,
    DUE_PREFIX,
    SHARD_PREFIX,
    CloseCursor,
    PaneKey,
    PaneModel,
    PaneState,
    ShardState,
    Watermark,
    WindowConfig,
    advance_cursor,
    closed_event,
    commit_shard,
    due_accounts,
    due_items,
    due_windows,
    iso_seconds,
    pane_key,
    pipeline_watermark,
    plan_batch,
    take_due,
    window_totals,
)
from payments.settings import WindowsSettings

PROCESSOR = "windows"
SETTINGS = WindowsSettings
WRITE_ATTEMPTS = 4
CLOSE_LIMIT = 2000
"""Windows one close pass emits at most (the next pass, or the schedule, takes the rest)."""
SHARD_LIST_TTL_S = 60.0
"""How long a stream's shard listing is reused (per execution environment)."""


class WindowStore(Protocol):
    """activity-view, addressed by (account_id, window_key): the state engine's item store plus
    the bookkeeping partition's reads and writes."""

    def get_many(self, keys: Sequence[PaneKey]) -> Mapping[PaneKey, Mapping[str, Any]]: ...

    def key_attributes(self, key: PaneKey) -> dict[str, Any]: ...

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool: ...

    def put(self, item: Mapping[str, Any]) -> None:
        """An unconditional write (due lists: the same key always holds the same content)."""
        ...

    def between(self, partition: str, low: str, high: str) -> list[Mapping[str, Any]]:
        """Items of one partition with `low <= window_key <= high`, strongly consistent."""
        ...


class DynamoWindowStore(adapters.DynamoItemStore):
    """`WindowStore` over boto3."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        super().__init__(dynamodb, table, key="account_id", sort_key="window_key")
        self._client = dynamodb
        self._name = table

    def put(self, item: Mapping[str, Any]) -> None:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        self.write_requests += 1
        self._client.put_item(TableName=self._name,
                              Item={k: ser.serialize(v) for k, v in item.items()})

    def between(self, partition: str, low: str, high: str) -> list[Mapping[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        out: list[Mapping[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._name,
            "KeyConditionExpression": "account_id = :pk AND window_key BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":pk": {"S": partition}, ":lo": {"S": low},
                                          ":hi": {"S": high}},
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**kwargs)
            out.extend(adapters.plain({k: des.deserialize(v) for k, v in i.items()})
                       for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def read_shards(store: WindowStore) -> dict[str, ShardState]:
    items = store.between(BOOKKEEPING_PARTITION, SHARD_PREFIX, SHARD_PREFIX + "\uffff")
    states = (ShardState.from_item(item) for item in items)
    return {s.key: s for s in states}


def write_shard(store: WindowStore, config: WindowConfig, new: ShardState,
                expected: int | None) -> ShardState | None:
    """Write a shard item, merging with the stored one after a lost race. None: gave up."""
    for _attempt in range(WRITE_ATTEMPTS):
        if store.put_if_version(new.to_item(config), expected):
            return new
        stored = read_shards(store).get(new.key)
        if stored is None:
            expected = None
            continue
        new = replace(new.merged(stored), version=stored.version + 1)
        expected = stored.version
    return None


@dataclass(frozen=True, slots=True)
class ListedShard:
    shard_id: str
    open: bool
    """False once the shard was closed (resharding): it gets no new records."""


class ShardLister(Protocol):
    """The shards of a source stream."""

    def list_shards(self, stream_arn: str) -> Sequence[ListedShard]: ...


class KinesisShardLister:
    """`ShardLister` over boto3 Kinesis `ListShards`, each stream's listing cached for `ttl_s`."""

    def __init__(self, kinesis: Any, *, ttl_s: float = SHARD_LIST_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._kinesis = kinesis
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[ListedShard, ...]]] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def list_shards(self, stream_arn: str) -> Sequence[ListedShard]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(stream_arn)
            if cached is not None and now - cached[0] < self._ttl_s:
                return cached[1]
        shards: list[ListedShard] = []
        kwargs: dict[str, Any] = {"StreamARN": stream_arn}
        while True:
            self.calls += 1
            page = self._kinesis.list_shards(**kwargs)
            shards.extend(
                ListedShard(str(s["ShardId"]),
                            "EndingSequenceNumber" not in s.get("SequenceNumberRange", {}))
                for s in page.get("Shards", [])
            )
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        listed = tuple(shards)
        with self._lock:
            self._cache[stream_arn] = (now, listed)
        return listed


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


@dataclass(frozen=True, slots=True)
class CloseReport:
    due: int = 0
    emitted: int = 0
    failed: tuple[str, ...] = ()
    more: bool = False
    """Windows past the watermark are left for the next pass."""
    watermark: str | None = None

    def __add__(self, other: CloseReport) -> CloseReport:
        return CloseReport(self.due + other.due, self.emitted + other.emitted,
                           self.failed + other.failed, other.more,
                           other.watermark or self.watermark)

    def summary(self) -> dict[str, Any]:
        return {"due": self.due, "emitted": self.emitted, "failed": len(self.failed),
                "more": self.more, "watermark": self.watermark}


def close_windows(
    *,
    store: WindowStore,
    sink: Sink,
    stream: str,
    config: WindowConfig,
    watermark: Watermark,
    limit: int = CLOSE_LIMIT,
) -> CloseReport:
    """Emit the results of the windows `watermark` made final since the close cursor, then
    move the cursor (a lost race on it means another closer emitted the same events, with the
    same ids)."""
    if watermark.watermark_us is None:
        return CloseReport()
    through_s = watermark.watermark_us // 1_000_000
    shown = iso_seconds(through_s)
    cursor = CloseCursor.from_item(
        store.get_many([(BOOKKEEPING_PARTITION, CURSOR_KEY)]).get(
            (BOOKKEEPING_PARTITION, CURSOR_KEY)))
    if cursor.through_s is not None and cursor.through_s >= through_s:
        return CloseReport(watermark=shown)
    low = DUE_PREFIX
    if cursor.through_s is not None:
        # Panes a window closing after the cursor can span start at most max_size before it.
        earliest = cursor.through_s - config.allowed_lateness_s - config.max_size_s
        low = DUE_PREFIX + iso_seconds(max(0, earliest))
    high = DUE_PREFIX + iso_seconds(through_s) + "\uffff"
    accounts = due_accounts(store.between(BOOKKEEPING_PARTITION, low, high))
    due = due_windows(config, cursor, through_s, accounts)
    taken = take_due(due, limit)
    keys = sorted({(d.account, pane_key(s)) for d in taken for s in config.panes_of(d.window)
                   if d.account in accounts.get(s, set())})
    stored = store.get_many(keys) if keys else {}
    panes: dict[str, dict[int, PaneState]] = {}
    for item in stored.values():
        pane = PaneState.from_item(item, config)
        panes.setdefault(pane.account, {})[pane.start_s] = pane
    out: list[OutRecord] = []
    which: list[int] = []
    for n, d in enumerate(taken):
        totals = window_totals(config, d.window, panes.get(d.account, {}))
        if not totals:
            continue  # every payment of the window was late: no result
        event = closed_event(config, d.account, d.window, totals, watermark)
        out.append(OutRecord(partition_key=d.account, data=event.to_bytes(), tag=n))
        which.append(n)
    failures = {f.tag: f.reason for f in sink.emit(stream, out)} if out else {}
    done = taken
    if failures:
        first_failed = min(failures)
        group = taken[first_failed].group
        done = [d for d in taken[:first_failed] if d.group != group]
    emitted = sum(1 for n in which if n not in failures and n < len(done))
    new_cursor = advance_cursor(cursor, done, due, through_s)
    if new_cursor is not cursor:
        store.put_if_version(new_cursor.to_item(), cursor.version or None)
    return CloseReport(
        due=len(due), emitted=emitted,
        failed=tuple(f"{taken[n].account} {taken[n].window.key}: emit failed: {r}"
                     for n, r in sorted(failures.items())),
        more=len(done) < len(due), watermark=shown,
    )


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
