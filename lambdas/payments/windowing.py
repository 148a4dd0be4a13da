"""The windows' imperative shell, shared by the `windows` and `windows-close` handlers.

Reading and writing the shard watermark items (a lost race merged and retried), and closing
the windows that are due: each due account's panes read, its final results emitted, its due
entries taken, at most `CLOSE_LIMIT` windows per pass. The rules (which windows are due, what
a result holds) are the pure `payments.domain.windows`; this module only moves them through
the ports in `payments.adapters`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cascata_runtime.ports import OutRecord, Sink
from payments.adapters import WindowStore
from payments.domain.windows import (
    BOOKKEEPING_PARTITION,
    CURSOR_KEY,
    DUE_PREFIX,
    SHARD_PREFIX,
    CloseCursor,
    PaneState,
    ShardState,
    Watermark,
    WindowConfig,
    advance_cursor,
    closed_event,
    due_accounts,
    due_windows,
    iso_seconds,
    pane_key,
    take_due,
    window_totals,
)

WRITE_ATTEMPTS = 4
CLOSE_LIMIT = 2000
"""Windows one close pass emits at most (the next pass, or the schedule, takes the rest)."""


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
