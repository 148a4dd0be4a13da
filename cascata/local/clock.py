"""Time for the local runtime, injectable so that age limits and windows are testable.

Everything in the event source mapping engine that depends on time (record age, batching windows,
tumbling windows, retry back-off, the Lambda context's remaining time) reads it from a `Clock`.
`SystemClock` is the wall clock; `ManualClock` only moves when told to, so a test can age records
by an hour in no real time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Epoch seconds and a way to wait; the only source of time the engine uses."""

    def now(self) -> float:
        """Current time as epoch seconds (UTC)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let `seconds` pass."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when `advance` (or `sleep`) is called.

    It starts at the current wall time by default, not at zero, because moto stamps Kinesis
    records with the wall clock: records and the clock then agree on "now" and a test ages them
    with `advance`. `sleep` advances instead of blocking, so an engine waiting for a batching
    window or a tumbling window to close does so instantly.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, epoch_seconds: float) -> None:
        """Jump to an absolute time, which must not be in the clock's past."""
        with self._lock:
            if epoch_seconds < self._now:
                raise ValueError(
                    f"a clock cannot go backwards (from {self._now} to {epoch_seconds})"
                )
            self._now = float(epoch_seconds)

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
