"""Lambda handler of `windows`: payments-validated -> activity-view, activity, activity-late.

Per batch: one consistent Query for the shard items (their committed fences and watermarks),
one consistent BatchGetItem per 100 touched (account, window) items, one version-guarded put
per changed window item (a batch is coalesced per item, whatever the number of payments), the
late payments to activity-late, the quarantine, one put for the shard's new committed prefix,
then a close pass: windows the pipeline watermark has passed are frozen, their final results
emitted to activity and the items marked final. The semantics are in `payments.domain.windows`.

Closing waits for the source's shards: for a Kinesis source the processor lists the stream's
shards (`ShardLister`, cached per execution environment for `SHARD_LIST_TTL_S`) and a shard
not registered yet holds the close back until it is idle (see `close_bound`), so the first
shard to deliver cannot close windows the others still have payments for. MSK events give no
cheap view of a topic's partitions: for Kafka sources a partition counts once it delivered,
as before. If listing fails, the batch closes as before too (logged).

The close pass is best effort here (a failure is logged, no record is failed for it):
`windows-close` runs the same pass every minute and finishes whatever was left, including an
interrupted close. The module also holds the DynamoDB adapter of activity-view (composite key,
the `open-by-close` index) that `windows-close` uses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from cascata_runtime import adapters
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.handler import BatchFunction, ClientFactory, Handler, lambda_handler, lazy
from cascata_runtime.ports import ObjectStore, OutRecord, Sink
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, Effects, Emission, apply_effects, parse_records
from payments.domain.windows import (
    SHARDS_PARTITION,
    US,
    BatchPlan,
    CloseBound,
    Contribution,
    LateHit,
    ShardState,
    WindowConfig,
    WindowState,
    apply_window,
    close_bound,
    closed_event,
    commit_shard,
    iso_seconds,
    late_events,
    merge_shard,
    owns,
    plan_batch,
)
from payments.settings import WindowsSettings

PROCESSOR = "windows"
SETTINGS = WindowsSettings
OPEN_INDEX = "open-by-close"
WRITE_ATTEMPTS = 4
CLOSE_LIMIT = 500
"""Windows one processor invocation closes at most (the schedule takes the rest)."""
RECOVER_AFTER_S = 60.0
SHARD_LIST_TTL_S = 60.0
"""How long a stream's shard listing is reused (per execution environment)."""
"""A `closing` item older than this was abandoned by its closer: the processor re-emits it."""

ItemKey = tuple[str, str]
"""(account_id, window_key)."""


class WindowStore(Protocol):
    """Items of activity-view, addressed by (account_id, window_key), guarded by `version`."""

    def get_many(self, keys: Sequence[ItemKey]) -> Mapping[ItemKey, Mapping[str, Any]]:
        """Strongly consistent reads; absent items are left out."""
        ...

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        """Write if the stored version is `expected_version` (None: absent); False if not."""
        ...

    def partition(self, account_id: str) -> list[Mapping[str, Any]]:
        """Every item of one partition, strongly consistent."""
        ...

    def due(self, status: str, closes_at_max: str | None, limit: int) -> list[ItemKey]:
        """Keys of items with this status (and `closes_at <= closes_at_max`), from the index."""
        ...


class DynamoWindowStore:
    """`WindowStore` over boto3. The index is read for keys only and every item is then read
    consistently, so the index may project keys only (no index write when aggregates change)."""

    def __init__(self, dynamodb: Any, table: str, *, index: str = OPEN_INDEX) -> None:
        self._ddb = dynamodb
        self._table = table
        self._index = index
        self.write_requests = 0
        self.read_units = 0.0

    def get_many(self, keys: Sequence[ItemKey]) -> Mapping[ItemKey, Mapping[str, Any]]:
        items, units = adapters.batch_get_consistent(
            self._ddb,
            self._table,
            [{"account_id": a, "window_key": w} for a, w in dict.fromkeys(keys)],
        )
        self.read_units += units
        return {(str(i["account_id"]), str(i["window_key"])): i for i in items}

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        kwargs: dict[str, Any] = {}
        if expected_version is None:
            kwargs["ConditionExpression"] = "attribute_not_exists(account_id)"
        else:
            kwargs["ConditionExpression"] = "#v = :expected"
            kwargs["ExpressionAttributeNames"] = {"#v": "version"}
            kwargs["ExpressionAttributeValues"] = {":expected": {"N": str(expected_version)}}
        try:
            self.write_requests += 1
            self._ddb.put_item(
                TableName=self._table,
                Item={k: ser.serialize(v) for k, v in item.items()},
                **kwargs,
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def partition(self, account_id: str) -> list[Mapping[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        out: list[Mapping[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "account_id = :pk",
            "ExpressionAttributeValues": {":pk": {"S": account_id}},
            "ConsistentRead": True,
        }
        while True:
            page = self._ddb.query(**kwargs)
            out.extend(adapters.plain({k: des.deserialize(v) for k, v in i.items()})
                       for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def due(self, status: str, closes_at_max: str | None, limit: int) -> list[ItemKey]:
        values: dict[str, Any] = {":s": {"S": status}}
        condition = "#s = :s"
        if closes_at_max is not None:
            condition += " AND closes_at <= :max"
            values[":max"] = {"S": closes_at_max}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": self._index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": values,
            "ProjectionExpression": "account_id, window_key",
        }
        keys: list[ItemKey] = []
        while len(keys) < limit:
            page = self._ddb.query(**kwargs, Limit=min(1000, limit - len(keys)))
            keys.extend(
                (i["account_id"]["S"], i["window_key"]["S"]) for i in page.get("Items", [])
            )
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return keys[:limit]


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
                ListedShard(
                    str(s["ShardId"]),
                    "EndingSequenceNumber" not in s.get("SequenceNumberRange", {}),
                )
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
    frozen: int = 0
    emitted: int = 0
    finalized: int = 0
    failed: tuple[str, ...] = ()
    more: bool = False
    """The index had more due windows than the pass took."""

    def __add__(self, other: CloseReport) -> CloseReport:
        return CloseReport(
            due=self.due + other.due,
            frozen=self.frozen + other.frozen,
            emitted=self.emitted + other.emitted,
            finalized=self.finalized + other.finalized,
            failed=self.failed + other.failed,
            more=other.more,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "frozen": self.frozen,
            "emitted": self.emitted,
            "finalized": self.finalized,
            "failed": len(self.failed),
            "more": self.more,
        }


def close_windows(
    *,
    store: WindowStore,
    sink: Sink,
    stream: str,
    bound: CloseBound,
    now_s: float,
    limit: int,
    recover_after_s: float,
    share: Callable[[str], bool] | None = None,
    writers: int = 8,
) -> CloseReport:
    """Freeze every open window `bound` allows, emit the result of every frozen window, and
    mark them final. Each step is conditional on the item's version, so concurrent closers
    (processors, the schedule) never produce two different results for one window."""
    bound_us = bound.bound_us
    closing = store.due("closing", None, limit)
    open_due = (
        store.due("open", iso_seconds(bound_us // US), limit) if bound_us is not None else []
    )
    candidates = [
        k for k in dict.fromkeys([*closing, *open_due]) if share is None or share(k[0])
    ]
    items = store.get_many(candidates) if candidates else {}
    to_emit: list[WindowState] = []
    to_freeze: list[tuple[WindowState, WindowState]] = []
    for key in candidates:
        item = items.get(key)
        if item is None:
            continue
        state = WindowState.from_item(item)
        if state.status == "closing":
            # Its closer may be emitting it right now; take over only an abandoned close.
            if state.closed_at_s is None or now_s - state.closed_at_s >= recover_after_s:
                to_emit.append(state)
        elif state.status == "open" and bound.allows(state.closes_at_s):
            to_freeze.append((state, state.freeze(
                closed_by=bound.closed_by(state.closes_at_s),
                watermark_us=bound.watermark_us,
                now_s=now_s,
            )))

    def freeze(pair: tuple[WindowState, WindowState]) -> str | bool:
        old, new = pair
        try:
            # A lost race means another closer froze it, or a payment was just added: either
            # way the next pass sees the current item.
            return store.put_if_version(new.to_item(), old.version)
        except Exception as exc:  # noqa: BLE001 - the window stays open; the next pass retries
            return f"{old.account} {old.window.key}: freeze failed: {exc}"

    def finalize(state: WindowState) -> str | bool:
        try:
            # False: another closer finalized it first, which is just as good.
            return store.put_if_version(state.finalize().to_item(), state.version)
        except Exception as exc:  # noqa: BLE001 - stays `closing`: re-emitted, same id
            return f"{state.account} {state.window.key}: finalize failed: {exc}"

    failed: list[str] = []
    frozen = 0
    # Items are independent: their conditional writes go out concurrently.
    with ThreadPoolExecutor(max_workers=writers) as pool:
        for (_old, new), outcome in zip(to_freeze, pool.map(freeze, to_freeze), strict=True):
            if isinstance(outcome, str):
                failed.append(outcome)
            elif outcome:
                frozen += 1
                to_emit.append(new)
        out = [
            OutRecord(partition_key=s.account, data=closed_event(s).to_bytes(), tag=n)
            for n, s in enumerate(to_emit)
        ]
        failures = {f.tag: f.reason for f in sink.emit(stream, out)} if out else {}
        emitted = [s for n, s in enumerate(to_emit) if n not in failures]
        failed.extend(
            f"{s.account} {s.window.key}: emit failed: {failures[n]}"
            for n, s in enumerate(to_emit) if n in failures
        )
        finalized = 0
        for outcome in pool.map(finalize, emitted):
            if isinstance(outcome, str):
                failed.append(outcome)
            elif outcome:
                finalized += 1
    return CloseReport(
        due=len(candidates),
        frozen=frozen,
        emitted=len(emitted),
        finalized=finalized,
        failed=tuple(failed),
        more=len(closing) >= limit or len(open_due) >= limit,
    )


def read_shards(store: WindowStore) -> dict[str, ShardState]:
    states = (ShardState.from_item(item) for item in store.partition(SHARDS_PARTITION))
    return {s.key: s for s in states}


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
    """Wall clock (epoch seconds): only for shard liveness and the close stamps."""
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


@dataclass(frozen=True, slots=True)
class _Written:
    failed: dict[int, str]
    late: tuple[LateHit, ...]


def process(deps: Dependencies) -> BatchFunction:
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=PROCESSOR)
    logger = Logger(service=PROCESSOR)
    config = deps.config

    def write_window(
        key: ItemKey, plan: BatchPlan, contributions: Sequence[Contribution],
        item: Mapping[str, Any] | None,
    ) -> _Written:
        indexes = sorted({c.index for c in contributions})
        for _attempt in range(WRITE_ATTEMPTS):
            state = (
                WindowState.from_item(item) if item
                else WindowState.fresh(key[0], plan.windows[key], config)
            )
            result = apply_window(state, contributions, recent_ids=config.recent_ids)
            if not result.changed:
                return _Written({}, result.late)
            try:
                if deps.store.put_if_version(result.state.to_item(), state.version or None):
                    return _Written({}, result.late)
            except Exception as exc:  # noqa: BLE001 - fail this window's records only
                return _Written({i: f"window write failed: {exc}" for i in indexes}, ())
            item = deps.store.get_many([key]).get(key)
        reason = "window write lost every race for the item"
        return _Written({i: reason for i in indexes}, ())

    def peers_of(
        event: Mapping[str, Any], shards: Mapping[str, ShardState]
    ) -> dict[str, tuple[str, ...]]:
        """Stream name -> its shard ids: the open ones, and the closed ones registered."""
        lister = deps.shard_lister
        if lister is None:
            return {}
        registered = set(shards)
        out: dict[str, tuple[str, ...]] = {}
        for stream, arn in sorted(_kinesis_sources(event).items()):
            try:
                listed = lister.list_shards(arn)
            except Exception:  # close without waiting, as before
                logger.exception("listing the source's shards failed", extra={"stream": arn})
                continue
            out[stream] = tuple(
                s.shard_id for s in listed
                if s.open or f"{stream}/{s.shard_id}" in registered
            )
        return out

    def commit(
        plan: BatchPlan, report: BatchReport, now_s: float,
        peers: Mapping[str, tuple[str, ...]],
    ) -> dict[str, ShardState]:
        """Write each shard's committed prefix; if that fails, fail the shard's first record
        beyond its old fence, so Lambda retries from it with the watermark it had."""
        written: dict[str, ShardState] = {}
        in_batch = {f"{r.position.stream}/{r.position.shard}" for r in report.records}
        for key in sorted(in_batch):
            records = [r for r in plan.records if r.shard_key == key]
            current = plan.shards[key]
            new = commit_shard(config, current, records, report.failed, now_s=now_s,
                               peers=peers.get(current.stream))
            problem: str | None = "shard watermark write lost every race"
            for _attempt in range(WRITE_ATTEMPTS):
                if new is None:
                    problem = None
                    break
                try:
                    won = deps.store.put_if_version(new.to_item(), current.version or None)
                except Exception as exc:  # noqa: BLE001 - retried from the first record
                    problem = f"shard watermark write failed: {exc}"
                    break
                if won:
                    written[key], problem = new, None
                    break
                stored = read_shards(deps.store).get(key)
                if stored is None:
                    break
                current, new = stored, merge_shard(new, stored)
            if problem and records:
                report.failed.setdefault(records[0].index, problem)
        return written

    def run(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        parsed = parse_records(records)
        now_s = deps.now()
        shards = read_shards(deps.store)
        plan = plan_batch(config, [r.position for r in records], parsed, shards)
        stored = deps.store.get_many(list(plan.contributions)) if plan.contributions else {}
        failed: dict[int, str] = {}
        late: list[LateHit] = []
        # Window items are independent: their writes go out concurrently.
        with ThreadPoolExecutor(max_workers=deps.writers) as pool:
            futures = [
                pool.submit(write_window, key, plan, contributions, stored.get(key))
                for key, contributions in plan.contributions.items()
            ]
            for future in futures:
                written = future.result()
                for index, reason in written.failed.items():
                    failed.setdefault(index, reason)
                late.extend(written.late)
        emissions = tuple(
            Emission(deps.late_stream, envelope, index)
            for index, envelope in late_events(late, config)
        )
        effects = Effects(emissions=emissions, quarantined=plan.rejected, failed=failed)
        report = apply_effects(records, effects, sink=deps.sink, quarantine=quarantine)
        peers = peers_of(event, shards)
        shards.update(commit(plan, report, now_s, peers))
        try:
            bound = close_bound(
                config, shards.values(), now_s=now_s,
                expected=[f"{stream}/{shard}" for stream, ids in peers.items() for shard in ids],
            )
            in_batch = {f"{r.position.stream}/{r.position.shard}" for r in records}
            mine = sorted(in_batch & set(bound.active))
            closed = close_windows(
                store=deps.store, sink=deps.sink, stream=deps.activity_stream, bound=bound,
                now_s=now_s, limit=CLOSE_LIMIT, recover_after_s=RECOVER_AFTER_S,
                writers=deps.writers,
                share=lambda account: not mine or any(owns(account, k, bound.active)
                                                      for k in mine),
            )
        except Exception:  # windows-close finishes the job
            logger.exception("close pass failed; windows-close will close these windows")
        else:
            if closed.failed:
                logger.warning("close pass incomplete", extra={**closed.summary(),
                                                               "first": closed.failed[:3]})
        return report

    return run


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(WindowsSettings.from_env())))
