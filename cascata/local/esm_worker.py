"""Shard workers and their lanes: where batches are formed, invoked, retried and given up.

One `ShardWorker` per (mapping, shard) reads the shard and deals records to its
ParallelizationFactor lanes by partition key. A `Lane` forms batches (batch size, 6 MB of
serialized event, batching window, tumbling window), invokes the function and applies
reference sections 2.4 to 2.7 to the outcome: ReportBatchItemFailures, bisect, retries, record
age, on-failure records, tumbling window state. `Progress` turns records done in any lane into
the shard's checkpoint, in sequence order. Internal to the engine (`esm.py`).
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
import traceback
import uuid as uuid_module
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from cascata.local.clock import SystemClock
from cascata.local.esm_config import MAX_PAYLOAD_BYTES, destination_kind
from cascata.local.esm_destinations import OnFailureDelivery, s3_failure_key
from cascata.local.esm_events import LambdaContext, WindowInfo, compact_json, iso_millis
from cascata.local.esm_model import InjectedCrash, Invocation, Outcome
from cascata.local.esm_sources import Cursor, ShardInfo, SourceRecord

if TYPE_CHECKING:
    from cascata.local.esm import EventSourceMapping

__all__ = ["Lane", "ShardWorker", "new_uuid"]

log = logging.getLogger("cascata.local.esm")

TUMBLING_STATE_LIMIT: Final = 1024 * 1024
"""Tumbling window state above 1 MB ends the window early (reference 2.7)."""
_READ_LIMIT: Final = 10_000


@dataclass(frozen=True, slots=True)
class _Item:
    """A record waiting in a lane, with its event form and serialized size precomputed."""

    record: SourceRecord
    event_record: dict[str, Any]
    size: int
    buffered_at: float


@dataclass(slots=True)
class _Batch:
    """A batch in flight: retried, shrunk by partial failures, or split by bisect."""

    items: list[_Item]
    attempts: int = 0
    request_id: str | None = None
    function_error: bool = False
    window_start: float | None = None
    final: bool = False
    terminated_early: bool = False


@dataclass(frozen=True, slots=True)
class _PendingDelivery:
    items: tuple[_Item, ...]
    body: dict[str, Any]
    condition: str
    s3_key: str


@dataclass(frozen=True, slots=True)
class _Plan:
    kind: Literal["deliver", "retry", "new", "final", "oversize"]
    count: int = 0
    window_start: float | None = None
    final: bool = False
    terminated_early: bool = False


class _Progress:
    """Checkpointing in sequence order across lanes: the checkpoint is the highest position
    such that it and everything before it in the shard is done."""

    def __init__(self, on_advance: Callable[[int], None]) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()
        self._lock = threading.Lock()
        self._on_advance = on_advance

    def add(self, position: int) -> None:
        with self._lock:
            self._order.append(position)

    def complete(self, positions: Iterable[int]) -> None:
        # The callback runs under the lock so that concurrent lanes report advances in order.
        with self._lock:
            self._done.update(positions)
            advanced: int | None = None
            while self._order and self._order[0] in self._done:
                advanced = self._order.popleft()
                self._done.discard(advanced)
            if advanced is not None:
                self._on_advance(advanced)

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._order


def new_uuid(rng: random.Random) -> str:
    return str(uuid_module.UUID(int=rng.getrandbits(128), version=4))


class Lane:
    """One ParallelizationFactor lane of a shard: records of its partition keys, in order."""

    def __init__(self, worker: ShardWorker, index: int, now: float) -> None:
        mapping = worker.mapping
        self.worker = worker
        self.mapping = mapping
        self.index = index
        self.buffer: deque[_Item] = deque()
        self.stack: list[_Batch] = []
        self.pending: deque[_PendingDelivery] = deque()
        self.anchor = now
        self.not_before = -math.inf
        self.win_start: float | None = None
        self.win_state: Any = {}
        self.win_closed_end = -math.inf
        self.terminate_early = False
        self.busy = False
        """Between taking work and finishing it (`step`): not idle, whatever the buffers say."""
        self._overhead: int | None = None
        self._ids = mapping._rng("ids", worker.shard_id, index)
        self._faults = mapping._rng("faults", worker.shard_id, index)
        day = time.strftime("%Y/%m/%d", time.gmtime(now))
        self.log_stream = f"{day}/[$LATEST]{self._ids.randbytes(16).hex()}"

    # -- planning ------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not (self.buffer or self.stack or self.pending or self.busy
                    or self.win_start is not None)

    def _window_of(self, item: _Item) -> float:
        size = self.mapping.config.tumbling_window_in_seconds
        # A record stamped inside an already closed window (a ManualClock ahead of moto's wall
        # clock stamps) joins the next window instead of reopening a closed one.
        return math.floor(max(item.record.arrival, self.win_closed_end) / size) * size

    def _event_overhead(self, window: WindowInfo | None) -> int:
        if window is None and self._overhead is not None:
            return self._overhead
        # The event with one empty record, minus that record: the bytes around the records.
        size = len(compact_json(self.mapping.format.event(self.worker.shard_id, [{}], window))) - 2
        if window is None:
            self._overhead = size
        return size

    def _take(self, window_start: float | None) -> tuple[int, bool]:
        """How many buffered records the next batch takes, and whether it is full."""
        config = self.mapping.config
        window = None
        if window_start is not None:
            window = WindowInfo(window_start, window_start, self.win_state, False, False)
        size = self._event_overhead(window)
        count = 0
        for item in self.buffer:
            if count == config.batch_size:
                return count, True
            if window_start is not None and self._window_of(item) != window_start:
                return count, True
            extra = item.size + (1 if count else 0)
            if size + extra > MAX_PAYLOAD_BYTES:
                return count, True
            size += extra
            count += 1
        return count, count == config.batch_size

    def plan(self, now: float) -> tuple[_Plan | None, float | None]:
        """What this lane would do now, or else when it will next have something to do."""
        if self.pending or self.stack:
            if now >= self.not_before:
                return _Plan("deliver" if self.pending else "retry"), None
            return None, self.not_before
        config = self.mapping.config
        tumbling = config.tumbling_window_in_seconds
        worker = self.worker
        window_start: float | None = None
        final = False
        if tumbling:
            if self.terminate_early and self.win_start is not None:
                return _Plan("final", window_start=self.win_start, final=True,
                             terminated_early=True), None
            if not self.buffer:
                if self.win_start is None:
                    return None, None
                end = self.win_start + tumbling
                if worker.ended or (worker.caught_up and now >= end):
                    return _Plan("final", window_start=self.win_start, final=True), None
                return None, (end if worker.caught_up else None)
            window_start = self._window_of(self.buffer[0])
            if self.win_start is not None and window_start != self.win_start:
                # A later record arrived: the open window ends with an empty final invoke.
                return _Plan("final", window_start=self.win_start, final=True), None
        elif not self.buffer:
            return None, None
        count, full = self._take(window_start)
        if count == 0:
            return _Plan("oversize", count=1), None
        if tumbling and window_start is not None:
            boundary = count < len(self.buffer) and self._window_of(self.buffer[count]) != (
                window_start
            )
            ended = count == len(self.buffer) and (
                worker.ended or (worker.caught_up and now >= window_start + tumbling)
            )
            final = boundary or ended
            full = full or final
        plan = _Plan("new", count=count, window_start=window_start, final=final)
        window_s = self.mapping.batching_window_s
        if full or worker.ended or window_s <= 0 or self.mapping.engine.flushing:
            due = self.not_before
        elif self.mapping.source.kind == "kafka":
            due = max(self.buffer[0].buffered_at + window_s, self.not_before)
        else:
            # Kinesis: the next batching window starts when the previous invocation completes.
            due = max(self.anchor + window_s, self.not_before)
        if now >= due:
            return plan, None
        return None, due

    # -- doing -----------------------------------------------------------------------------

    def step(self) -> bool:
        """Do one unit of work (one invocation attempt or delivery); False if nothing was due.

        What to do is decided under the shard worker's lock (the buffer is shared with the
        reader); the invocation itself runs outside it, so sibling lanes never wait on it."""
        with self.worker.lock:
            now = self.mapping.engine.clock.now()
            plan, _ = self.plan(now)
            if plan is None:
                return False
            self.busy = True
            oversize: _Item | None = None
            if plan.kind == "oversize":
                oversize = self.buffer.popleft()
            elif plan.kind in ("new", "final"):
                items = [self.buffer.popleft() for _ in range(plan.count)]
                if plan.window_start is not None and self.win_start is None:
                    self.win_start, self.win_state = plan.window_start, {}
                    self._overhead = None
                self.stack.append(
                    _Batch(
                        items,
                        window_start=plan.window_start,
                        final=plan.final,
                        terminated_early=plan.terminated_early,
                    )
                )
        try:
            if plan.kind == "deliver":
                self._retry_delivery()
            elif oversize is not None:
                self._discard(_Batch([oversize]), [oversize], "MaximumPayloadSizeExceeded")
            else:
                self._attempt(self.stack[-1], now)
        finally:
            self.busy = False
        return True

    def _attempt(self, batch: _Batch, now: float) -> None:
        mapping = self.mapping
        config = mapping.config
        engine = mapping.engine
        max_age = config.maximum_record_age_in_seconds
        if max_age != -1 and batch.items:
            # Lambda checks record age before every attempt, the first one included.
            expired = 0
            while expired < len(batch.items) and (
                now - batch.items[expired].record.arrival >= max_age
            ):
                expired += 1
            if expired:
                gone, batch.items = batch.items[:expired], batch.items[expired:]
                mapping.counters.add("expired", len(gone))
                self._discard(batch, gone, "RecordAgeExceeded")
                if not batch.items and not batch.final:
                    self.stack.pop()
                    return
        throttle = crash_before = crash_after = False
        faults = engine.faults
        if faults.active:
            draws = (self._faults.random(), self._faults.random(), self._faults.random())
            throttle = draws[0] < faults.throttle_rate
            crash_before = draws[1] < faults.crash_before_rate
            crash_after = draws[2] < faults.crash_rate
        window: WindowInfo | None = None
        if batch.window_start is not None:
            window = WindowInfo(
                start=batch.window_start,
                end=batch.window_start + config.tumbling_window_in_seconds,
                state=self.win_state,
                is_final=batch.final,
                terminated_early=batch.terminated_early,
            )
        shard_id = self.worker.shard_id
        event = mapping.format.event(shard_id, [i.event_record for i in batch.items], window)
        payload = compact_json(event)
        if len(payload) > MAX_PAYLOAD_BYTES:
            # Only a growing tumbling state gets here: batches are sized to fit. Split once more
            # without spending an attempt, or give up on a single record.
            self.stack.pop()
            if len(batch.items) > 1:
                self._split(batch)
            else:
                self._discard(batch, batch.items, "MaximumPayloadSizeExceeded")
            return
        request_id = new_uuid(self._ids)
        positions = tuple(i.record.position for i in batch.items)
        if throttle:
            mapping.counters.add("throttles")
            mapping._record(
                Invocation(
                    request_id=request_id,
                    function_name=mapping.function_name,
                    shard_id=shard_id,
                    lane=self.index,
                    classification=Outcome.INVOKE_ERROR,
                    event=event,
                    positions=positions,
                    attempt=0,
                    started_at=now,
                    duration_s=0.0,
                    error="TooManyRequestsException: Rate Exceeded. (injected throttle)",
                )
            )
            mapping.last_processing_result = "PROBLEM: Function call throttled"
            self.not_before = now + engine.throttle_backoff_s
            return
        batch.attempts += 1
        batch.request_id = request_id
        mapping.counters.add("invocations")
        if batch.attempts > 1:
            mapping.counters.add("retries")
        response, error, trace, duration = self._invoke(
            payload, request_id, crash_before, crash_after
        )
        self.anchor = engine.clock.now()
        outcome, failed_at = self._classify(batch, response, error)
        mapping._record(
            Invocation(
                request_id=request_id,
                function_name=mapping.function_name,
                shard_id=shard_id,
                lane=self.index,
                classification=outcome,
                event=event,
                positions=positions,
                attempt=batch.attempts,
                started_at=now,
                duration_s=duration,
                response=response,
                error=error,
                traceback=trace,
                failed_position=failed_at,
            )
        )
        if outcome is Outcome.SUCCESS:
            mapping.last_processing_result = "OK"
            self.stack.pop()
            self._succeed(batch.items)
            if batch.window_start is not None:
                self._window_done(batch, response)
            return
        if outcome is Outcome.FUNCTION_ERROR:
            mapping.counters.add("function_errors")
            mapping.last_processing_result = "PROBLEM: Function call failed"
            batch.function_error = True
            if config.bisect_batch_on_function_error and len(batch.items) > 1:
                self.stack.pop()
                mapping.counters.add("bisects")
                self._split(batch)
                return
        else:
            mapping.counters.add("partial_failures")
            mapping.last_processing_result = "PROBLEM: Function reported partial batch failure"
            batch.function_error = False
            split_at = 0
            if failed_at is not None:
                split_at = next(
                    i for i, item in enumerate(batch.items) if item.record.position == failed_at
                )
            done, batch.items = batch.items[:split_at], batch.items[split_at:]
            self._succeed(done)
            if (
                batch.window_start is not None
                and not batch.final
                and isinstance(response, dict)
                and response.get("state") is not None
            ):
                # The records before the failure are checkpointed: keep what they contributed.
                self._set_state(response["state"])
        retries = mapping.effective_max_retries
        if retries != -1 and batch.attempts > retries:
            self.stack.pop()
            self._discard(batch, batch.items, "RetryAttemptsExhausted")
            if batch.final:
                self._close_window(batch)
            return
        self.not_before = engine.clock.now() + engine.retry_backoff_s

    def _split(self, batch: _Batch) -> None:
        """Bisect: left half first; the halves start a fresh retry count (reference 2.6)."""
        middle = (len(batch.items) + 1) // 2
        for items, final in ((batch.items[middle:], batch.final), (batch.items[:middle], False)):
            self.stack.append(
                _Batch(
                    items,
                    window_start=batch.window_start,
                    final=final,
                    terminated_early=batch.terminated_early,
                )
            )

    def _invoke(
        self, payload: str, request_id: str, crash_before: bool, crash_after: bool
    ) -> tuple[Any, str | None, str | None, float]:
        mapping = self.mapping
        clock = mapping.engine.clock
        context = LambdaContext(
            function_name=mapping.function_name,
            function_arn=mapping.function_arn,
            memory_limit_in_mb=mapping.memory_mb,
            aws_request_id=request_id,
            log_stream_name=self.log_stream,
            clock=clock,
            timeout_s=mapping.timeout_s,
        )
        started = clock.now()
        cpu_started = time.thread_time()
        try:
            if crash_before:
                raise InjectedCrash("injected crash before the handler ran")
            response = mapping.function(json.loads(payload), context)
            if crash_after:
                raise InjectedCrash("injected crash after the handler ran, before it returned")
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any exception is a function error
            duration = clock.now() - started
            log.info("%s (%s): %s: %s", mapping.function_name, request_id, type(exc).__name__, exc)
            return None, f"{type(exc).__name__}: {exc}", traceback.format_exc(), duration
        duration = clock.now() - started
        try:
            text = compact_json(response)
        except (TypeError, ValueError) as exc:
            return None, f"Runtime.MarshalError: Unable to marshal response: {exc}", None, duration
        if len(text) > MAX_PAYLOAD_BYTES:
            return None, (
                f"Function.ResponseSizeTooLarge: response of {len(text)} bytes exceeds "
                f"{MAX_PAYLOAD_BYTES}"
            ), None, duration
        # On the wall clock a function is charged its own thread's CPU time: lanes share this
        # process's cores, and waiting for another lane's turn is not the function's time (on
        # Lambda every invocation has its own). A ManualClock is the test's to move.
        charged = duration
        if isinstance(clock, SystemClock):
            charged = time.thread_time() - cpu_started
        if charged > mapping.timeout_s:
            return None, (
                f"Sandbox.Timedout: Task timed out after {mapping.timeout_s:.2f} seconds"
            ), None, duration
        return json.loads(text), None, None, duration

    def _classify(
        self, batch: _Batch, response: Any, error: str | None
    ) -> tuple[Outcome, int | None]:
        if error is not None:
            return Outcome.FUNCTION_ERROR, None
        config = self.mapping.config
        if (
            batch.window_start is not None
            and not batch.final
            and (not isinstance(response, dict) or response.get("state") is None)
        ):
            # A tumbling-window invocation must return its state.
            return Outcome.BATCH_FAILURE, None
        if not config.report_batch_item_failures:
            return Outcome.SUCCESS, None
        # None, "", [], {} and objects without (or with a null/empty) batchItemFailures are a
        # complete success (reference 2.5, validated against AWS).
        if not isinstance(response, dict):
            return Outcome.SUCCESS, None
        failures = response.get("batchItemFailures")
        if failures is None or failures == []:
            return Outcome.SUCCESS, None
        if not isinstance(failures, list):
            return Outcome.BATCH_FAILURE, None
        positions = {item.record.position for item in batch.items}
        lowest: int | None = None
        for entry in failures:
            position = self.mapping.format.identifier_position(entry, self.worker.shard_id)
            if position is None or position not in positions:
                return Outcome.BATCH_FAILURE, None
            lowest = position if lowest is None else min(lowest, position)
        return Outcome.PARTIAL_FAILURE, lowest

    # -- tumbling windows ------------------------------------------------------------------

    def _set_state(self, state: Any) -> None:
        self.win_state = state
        if len(compact_json(state)) > TUMBLING_STATE_LIMIT:
            self.terminate_early = True

    def _window_done(self, batch: _Batch, response: Any) -> None:
        if batch.final:
            self._close_window(batch)
        else:
            self._set_state(response["state"])

    def _close_window(self, batch: _Batch) -> None:
        if batch.terminated_early:
            # The state outgrew 1 MB: the window restarts with empty state, same boundaries.
            self.win_state = {}
            self.terminate_early = False
            return
        if batch.window_start is not None:
            self.win_closed_end = max(
                self.win_closed_end,
                batch.window_start + self.mapping.config.tumbling_window_in_seconds,
            )
        self.win_start = None
        self.win_state = {}

    # -- completion and failure ------------------------------------------------------------

    def _succeed(self, items: list[_Item]) -> None:
        if items:
            self.mapping.counters.add("succeeded", len(items))
            self.worker.progress.complete(i.record.position for i in items)

    def _discard(self, batch: _Batch, items: list[_Item], condition: str) -> None:
        """Give up on records: one on-failure record if a destination is set, then move on."""
        if not items:
            return
        mapping = self.mapping
        mapping.counters.add("discarded", len(items))
        destination = mapping.config.on_failure_destination
        positions = [i.record.position for i in items]
        if destination is None:
            log.warning(
                "%s: %s, records %s..%s of %s skipped (no on-failure destination)",
                mapping.function_name, condition, positions[0], positions[-1],
                self.worker.shard_id,
            )
            self.worker.progress.complete(positions)
            return
        body, s3_key = self._failure_record(batch, items, condition, destination)
        self._deliver(_PendingDelivery(tuple(items), body, condition, s3_key))

    def _failure_record(
        self, batch: _Batch, items: list[_Item], condition: str, destination: str
    ) -> tuple[dict[str, Any], str]:
        mapping = self.mapping
        now = mapping.engine.clock.now()
        shard_id = self.worker.shard_id
        failed_event = mapping.format.event(shard_id, [i.event_record for i in items])
        payload_size = len(compact_json(failed_event))
        info_key, info = mapping.format.batch_info(
            shard_id, [i.record for i in items], payload_size
        )
        function_arn = mapping.function_arn
        if mapping.source.kind == "kafka":
            function_arn += ":$LATEST"  # as the MSK documentation's example shows
        invoke_count = batch.attempts
        if condition != "RetryAttemptsExhausted":
            # AWS reports 1 even when records expired before any invocation.
            invoke_count = max(1, invoke_count)
        body: dict[str, Any] = {
            "requestContext": {
                "requestId": batch.request_id or new_uuid(self._ids),
                "functionArn": function_arn,
                "condition": condition,
                "approximateInvokeCount": invoke_count,
            }
        }
        if condition == "RetryAttemptsExhausted":
            body["responseContext"] = {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if batch.function_error else None,
            }
        elif condition == "MaximumPayloadSizeExceeded":
            body["responseContext"] = None
        # RecordAgeExceeded: AWS omits responseContext entirely.
        body["version"] = "1.0"
        body["timestamp"] = iso_millis(now)
        body[info_key] = info
        if destination_kind(destination) == "s3":
            body["payload"] = mapping.format.failure_payload(failed_event)
        s3_key = s3_failure_key(mapping.uuid, shard_id, now, new_uuid(self._ids))
        return body, s3_key

    def _deliver(self, pending: _PendingDelivery) -> None:
        mapping = self.mapping
        destination = mapping.config.on_failure_destination
        assert destination is not None
        writer = mapping.engine.destinations
        location: str | None = None
        if writer is not None:
            try:
                location = writer.deliver(destination, pending.body, s3_key=pending.s3_key)
            except Exception as exc:  # noqa: BLE001 - any delivery failure is retried
                # Keep the records (and the shard) until the destination accepts them: an
                # on-failure record must never be lost.
                mapping.counters.add("destination_errors")
                log.warning(
                    "%s: on-failure delivery to %s failed, will retry: %s",
                    mapping.function_name, destination, exc,
                )
                self.pending.append(pending)
                self.not_before = mapping.engine.clock.now() + mapping.engine.throttle_backoff_s
                return
        log.warning(
            "%s: %s, %d record(s) of %s sent to %s",
            mapping.function_name, pending.condition, len(pending.items),
            self.worker.shard_id, location or destination,
        )
        mapping._delivered(
            OnFailureDelivery(
                destination=destination,
                kind=destination_kind(destination),
                condition=pending.condition,
                body=pending.body,
                location=location,
            )
        )
        self.worker.progress.complete(i.record.position for i in pending.items)

    def _retry_delivery(self) -> None:
        self._deliver(self.pending.popleft())

    def describe_busy(self) -> str | None:
        config = self.mapping.config
        if self.pending:
            destination = config.on_failure_destination
            return f"lane {self.index}: on-failure delivery to {destination} failing"
        if self.stack:
            batch = self.stack[-1]
            span = (
                f"{batch.items[0].record.position}..{batch.items[-1].record.position}"
                if batch.items
                else "(final window invoke)"
            )
            return (
                f"lane {self.index}: retrying records {span} (attempt {batch.attempts}; "
                f"maximum_retry_attempts={config.maximum_retry_attempts}, "
                f"maximum_record_age_in_seconds={config.maximum_record_age_in_seconds})"
            )
        if self.buffer:
            return f"lane {self.index}: {len(self.buffer)} record(s) waiting for a batch"
        if self.win_start is not None:
            return f"lane {self.index}: tumbling window open"
        return None


class ShardWorker:
    """Reads one shard for one mapping and feeds its lanes."""

    def __init__(self, mapping: EventSourceMapping, info: ShardInfo, cursor: Cursor, now: float):
        self.mapping = mapping
        self.shard_id = info.shard_id
        self.info = info
        self.cursor = cursor
        self.caught_up = False
        self.ended = False
        self.lock = threading.RLock()
        """Held while reading into the lanes' buffers and while a lane takes from them."""
        self.read_started = -math.inf
        """`time.monotonic()` when the last read of the shard began (`settle` waits for one
        that began after it started looking)."""
        self.progress = _Progress(self._advanced)
        self.lanes = [
            Lane(self, i, now) for i in range(mapping.config.parallelization_factor)
        ]

    def _advanced(self, position: int) -> None:
        # A worker dropped by disable() or update() may still finish an attempt: its records
        # are redelivered from the checkpoint, which it must not move.
        if self.mapping._workers.get(self.shard_id) is self:
            self.mapping._advance(self.shard_id, position)

    @property
    def finished(self) -> bool:
        return self.ended and self.progress.idle and all(lane.idle for lane in self.lanes)

    def fill(self, now: float) -> int:
        """Read until every lane could fill a batch, or the shard is caught up."""
        with self.lock:
            self.read_started = time.monotonic()
            return self._fill(now)

    def _fill(self, now: float) -> int:
        if self.ended:
            return 0
        mapping = self.mapping
        target = mapping.config.batch_size * len(self.lanes)
        buffered = sum(len(lane.buffer) for lane in self.lanes)
        budget = 4 * target  # bounds a round's work when filters drop most records
        read = 0
        while buffered < target and read < budget:
            result = mapping.source.read(
                self.shard_id, self.cursor, min(target - buffered, _READ_LIMIT)
            )
            self.cursor = result.cursor
            for record in result.records:
                if self._ingest(record, now):
                    buffered += 1
            read += len(result.records)
            if result.caught_up:
                self.caught_up = True
                self.ended = result.shard_ended
                return read
        self.caught_up = False
        return read

    def _ingest(self, record: SourceRecord, now: float) -> bool:
        mapping = self.mapping
        mapping.counters.add("records_in")
        event_record = mapping.format.record(record, self.shard_id)
        self.progress.add(record.position)
        if mapping.filters:
            view = mapping.format.filter_view(record, event_record)
            if not mapping.filters.matches(
                view.document, ignore=view.ignored, unavailable=view.unavailable
            ):
                # Filtered records count as done: the iterator advances past them.
                mapping.counters.add("filtered")
                self.progress.complete((record.position,))
                return False
        lanes = self.lanes
        lane = lanes[0] if len(lanes) == 1 else lanes[
            zlib.crc32(record.partition_key.encode("utf-8")) % len(lanes)
        ]
        lane.buffer.append(_Item(record, event_record, len(compact_json(event_record)), now))
        return True

    def describe_busy(self) -> list[str]:
        busy = [b for lane in self.lanes if (b := lane.describe_busy())]
        if not self.caught_up:
            busy.append("behind the end of the shard")
        return [f"{self.shard_id} {b}" for b in busy]
