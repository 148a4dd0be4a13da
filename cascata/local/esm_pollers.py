"""The engine's background mode: every lane on its own thread, as Lambda's pollers run.

A `Pollers` supervisor discovers shards (and reshards) every poll interval and keeps one thread
per lane of every shard worker. A lane thread reads its shard when its buffer runs low, invokes
when its next batch is due, and otherwise sleeps until its next deadline, the next poll, or a
write to a stream (`WriteSignal`), whichever comes first: no lane waits for another one, and a
batching window holds only its own lane.

`settle()` is the drain of a running engine: batching windows are flushed (nothing more is
coming, so waiting to fill a batch only delays), and it returns once every shard has been read
to its end after the last write and every lane is idle, with the lanes still running side by
side. Internal to the engine (`esm.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from cascata.local.esm_model import DrainTimeout, WriteSignal

if TYPE_CHECKING:
    from cascata.local.esm import EventSourceMappingEngine
    from cascata.local.esm_worker import Lane, ShardWorker

log = logging.getLogger("cascata.local.esm")

_NEVER_RAN = -1.0


class Pollers:
    def __init__(self, engine: EventSourceMappingEngine, wake: WriteSignal) -> None:
        self._engine = engine
        self._wake = wake
        self._stop = threading.Event()
        self._threads: dict[int, threading.Thread] = {}
        self._supervisor: threading.Thread | None = None
        self._lock = threading.Lock()
        self._kick = threading.Event()
        self.discovered_at = -1.0
        """`time.monotonic()` when the last discovery pass began."""
        self.work = 0
        """Units of work done by all lanes (invocations, deliveries, records read)."""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._supervisor = threading.Thread(target=self._supervise, name="cascata-esm",
                                            daemon=True)
        self._supervisor.start()

    @property
    def running(self) -> bool:
        return self._supervisor is not None and self._supervisor.is_alive()

    def stop(self, timeout: float | None) -> None:
        """Stop every thread; each finishes the attempt it is in (bounded work) first."""
        self._stop.set()
        self._kick.set()
        self._wake.notify()
        deadline = None if timeout is None else time.monotonic() + timeout
        threads = [self._supervisor] if self._supervisor else []
        with self._lock:
            threads += list(self._threads.values())
        for thread in threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
            if thread.is_alive():
                raise TimeoutError(f"the engine's polling threads did not stop within {timeout}s")
        with self._lock:
            self._threads.clear()
        self._supervisor = None

    # -- supervisor ------------------------------------------------------------------------

    def _supervise(self) -> None:
        engine = self._engine
        while not self._stop.is_set():
            self._kick.clear()
            started = time.monotonic()
            try:
                with engine._lock:
                    now = engine.clock.now()
                    for mapping in [m for m in engine._mappings.values() if m.enabled]:
                        mapping._discover(now, refresh=True)
                        for worker in list(mapping._workers.values()):
                            for lane in worker.lanes:
                                self._ensure_thread(worker, lane)
            except Exception as exc:  # keep supervising; the error is logged and kept
                engine.last_error = exc
                log.exception("event source mapping discovery failed")
            else:
                self.discovered_at = started
            self._kick.wait(engine.poll_interval)

    def _ensure_thread(self, worker: ShardWorker, lane: Lane) -> None:
        with self._lock:
            thread = self._threads.get(id(lane))
            if thread is not None and thread.is_alive():
                return
            if worker.finished:
                return
            thread = threading.Thread(
                target=self._run_lane, args=(worker, lane),
                name=f"cascata-esm-{worker.mapping.function_name}-{worker.shard_id}-{lane.index}",
                daemon=True,
            )
            self._threads[id(lane)] = thread
        thread.start()

    # -- lanes -----------------------------------------------------------------------------

    def _current(self, worker: ShardWorker) -> bool:
        mapping = worker.mapping
        return (
            mapping.enabled
            and mapping._workers.get(worker.shard_id) is worker
            and self._engine._mappings.get(mapping.uuid) is mapping
        )

    def _run_lane(self, worker: ShardWorker, lane: Lane) -> None:
        engine = self._engine
        batch_size = worker.mapping.config.batch_size
        while not self._stop.is_set() and self._current(worker) and not worker.finished:
            seen = self._wake.generation
            try:
                now = engine.clock.now()
                read = 0
                if len(lane.buffer) < batch_size:
                    read = worker.fill(now)
                did = lane.step()
            except Exception as exc:  # keep polling; the error is logged and kept for callers
                engine.last_error = exc
                log.exception("event source mapping lane failed")
                self._stop.wait(engine.poll_interval)
                continue
            if read or did:
                with self._lock:
                    self.work += read + int(did)
                if did or not worker.caught_up:
                    continue
            with worker.lock:
                _, deadline = lane.plan(engine.clock.now())
            wait = engine.idle_poll_s
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - engine.clock.now()))
            if wait > 0:
                self._wake.wait(seen, wait)

    # -- drain -----------------------------------------------------------------------------

    def _records_done(self) -> int:
        """Records read and records finished (processed, filtered, given up): what moves when
        the pipeline progresses. A batch retried forever moves none of it."""
        return sum(s.records_in + s.succeeded + s.filtered + s.discarded
                   for s in (m.stats for m in self._engine.mappings))

    def settle(self, timeout: float, stall_s: float | None = None) -> int:
        """Flush batching windows and wait until everything written has been processed.
        Returns the work done meanwhile. DrainTimeout after `timeout` wall-clock seconds, or
        after `stall_s` seconds in which no lane did anything."""
        engine = self._engine
        start = last_progress = time.monotonic()
        before = self.work
        seen = self._records_done()
        engine.flushing = True
        try:
            while True:
                mark = time.monotonic()
                work = self.work
                self._kick.set()  # shards are listed again, now
                self._wake.notify()  # and every lane reads its shard again
                while True:
                    now = time.monotonic()
                    done = self._records_done()
                    if done != seen:
                        seen, last_progress = done, now
                    stalled = stall_s is not None and now - last_progress > stall_s
                    if now - start > timeout or stalled:
                        busy = [line for m in engine.mappings for line in m._busy_report()]
                        why = (f"made no progress for {stall_s}s" if stalled
                               else f"did not finish within {timeout}s")
                        raise DrainTimeout(
                            f"drain() {why}; still busy:\n  "
                            + "\n  ".join(busy or ["(nothing reported)"])
                        )
                    mappings = [m for m in engine.mappings if m.enabled]
                    if self.discovered_at > mark and all(
                        m._idle(read_after=mark) for m in mappings
                    ):
                        break
                    time.sleep(0.005)
                if self.work == work:
                    return self.work - before
        finally:
            engine.flushing = False
