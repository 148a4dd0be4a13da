"""The windows' imperative shell, shared by the `windows` and `windows-close` handlers.

Reading and writing the shard watermark items (a lost race merged and retried), and closing
the windows that are due: each due account's panes read, its final results emitted, its due
entries taken, at most `CLOSE_LIMIT` windows per pass. The rules (which windows are due, what
a result holds) are the pure `payments.domain.windows`; this module only moves them through
the ports in `payments.adapters`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aws_lambda_powertools import Logger

from cascata_runtime.effects import Effects
from cascata_runtime.envelope import format_time
from cascata_runtime.handler import BatchFunction
from cascata_runtime.ports import ObjectStore, OutRecord, Sink
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, apply_effects, read_batch
from cascata_runtime.state import StateEngine, emitter
from payments.adapters import (
    ShardLister,
    ShardTip,
    WindowStore,
)
from payments.domain.windows import (
    BOOKKEEPING_PARTITION,
    CURSOR_KEY,
    DUE_PREFIX,
    SHARD_PREFIX,
    CloseCursor,
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
    from_us,
    idle_raises,
    iso_seconds,
    pane_key,
    pipeline_watermark,
    plan_batch,
    take_due,
    verified,
    window_totals,
)

WRITE_ATTEMPTS = 4
CLOSE_LIMIT = 2000
"""Windows one close pass of the windows processor emits at most (the next pass, or the
schedule, takes the rest)."""
PASS_LIMIT = 5000
"""Windows per close pass of windows-close; passes repeat while more are due and time remains."""
MAX_PASSES = 200
SAFETY_MS = 10_000
"""windows-close stops starting passes when less than this much of its time is left."""


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


# The windows processor's batch


@dataclass(frozen=True, slots=True)
class WindowsDependencies:
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
    """Lists a source's shards (Kinesis) or partitions (Kafka), so closing waits for them;
    None: it does not wait."""


def _sources(event: Mapping[str, Any]) -> dict[str, str]:
    """Stream name (as in source positions) -> what the shard lister takes: a Kinesis
    stream's ARN, or a Kafka topic's name (an MSK event's `records` are keyed by
    topic-partition)."""
    out: dict[str, str] = {}
    records = event.get("Records")
    if not isinstance(records, list):
        groups = event.get("records")
        if isinstance(groups, Mapping):
            for group in groups.values():
                for record in group if isinstance(group, list) else ():
                    topic = record.get("topic") if isinstance(record, Mapping) else None
                    if isinstance(topic, str) and topic:
                        out[topic] = topic
        return out
    for record in records:
        if isinstance(record, Mapping) and record.get("eventSource") == "aws:kinesis":
            arn = str(record.get("eventSourceARN", ""))
            if arn:
                out[arn.rsplit("/", 1)[-1]] = arn
    return out


def windows_batch(processor: str, deps: WindowsDependencies) -> BatchFunction:
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=processor)
    logger = Logger(service=processor)
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
        for stream, arn in sorted(_sources(event).items()):
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


# windows-close's pass


class WindowsCloseIncompleteError(RuntimeError):
    """Some window results could not be emitted in this run; the next run retries them."""


@dataclass(frozen=True, slots=True)
class CloseDependencies:
    activity_stream: str
    store: WindowStore
    sink: Sink
    tip: ShardTip | None = None
    """None: idle shards are never verified (their windows close by watermark only)."""
    now: Callable[[], float] = time.time
    """The functions' clock (epoch seconds), injected so tests and the local runtime control
    it."""
    config: WindowConfig = field(default_factory=WindowConfig)


def raise_idle(deps: CloseDependencies, now_s: float) -> dict[str, ShardState]:
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


def close_due(deps: CloseDependencies, remaining_ms: Callable[[], int]) -> dict[str, Any]:
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
