"""Values the event source mapping engine reports: outcomes, invocations, stats, faults.

Frozen dataclasses and enums shared by the engine (`esm.py`) and its shard workers
(`esm_worker.py`); users import them from `cascata.local.esm`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

__all__ = [
    "Counters",
    "DrainSummary",
    "DrainTimeout",
    "Faults",
    "Handler",
    "InjectedCrash",
    "Invocation",
    "MappingStats",
    "Outcome",
]

Handler = Callable[[dict[str, Any], Any], Any]
"""A Lambda handler: `handler(event, context) -> response`."""


class Outcome(StrEnum):
    """How an invocation attempt is classified (reference 2.4, 2.5)."""

    SUCCESS = "success"
    PARTIAL_FAILURE = "partial_failure"
    """ReportBatchItemFailures listed records: retry from the lowest one."""
    BATCH_FAILURE = "batch_failure"
    """The response fails the whole batch without a function error (an invalid item
    identifier, or a tumbling-window response without `state`)."""
    FUNCTION_ERROR = "function_error"
    """The handler raised, crashed, timed out or returned something Lambda cannot serialize."""
    INVOKE_ERROR = "invoke_error"
    """The invocation never reached the function (throttled)."""


class InjectedCrash(RuntimeError):
    """A fault-injected crash of the function (before or after the handler ran)."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Seeded fault injection for chaos runs; deterministic for a given seed and config.

    - `crash_rate`: the handler runs (its side effects happen), then the invocation fails as if
      the runtime died before returning: the batch is redelivered although its effects landed.
    - `crash_before_rate`: the invocation fails before the handler runs.
    - `throttle_rate`: an invoke error that never reaches the function; retried regardless of
      MaximumRetryAttempts until the records exceed MaximumRecordAgeInSeconds.

    `seed` defaults to the engine's seed.
    """

    crash_rate: float = 0.0
    crash_before_rate: float = 0.0
    throttle_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for f in ("crash_rate", "crash_before_rate", "throttle_rate"):
            value = getattr(self, f)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{f} must be a probability in 0..1, got {value!r}")

    @property
    def active(self) -> bool:
        return bool(self.crash_rate or self.crash_before_rate or self.throttle_rate)


@dataclass(frozen=True, slots=True)
class Invocation:
    """One invocation attempt as the function (or the throttle) saw it."""

    request_id: str
    function_name: str
    shard_id: str
    lane: int
    classification: Outcome
    event: dict[str, Any]
    """The event as built (the handler got its own JSON round-tripped copy)."""
    positions: tuple[int, ...]
    """Sequence numbers (Kinesis) or offsets (Kafka) of the records in the event."""
    attempt: int
    """Invocations of this batch so far, this one included (0 for a throttled attempt)."""
    started_at: float
    duration_s: float
    response: Any = None
    error: str | None = None
    """`ErrorType: message` of a function or invoke error."""
    traceback: str | None = None
    failed_position: int | None = None
    """For a partial failure: the lowest position the response listed."""

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records of the event (Kinesis `Records`, or Kafka records of every partition)."""
        if "Records" in self.event:
            records: list[dict[str, Any]] = self.event["Records"]
            return records
        return [r for group in self.event.get("records", {}).values() for r in group]


@dataclass(frozen=True, slots=True)
class MappingStats:
    """Counters of one mapping (a snapshot)."""

    invocations: int = 0
    """Attempts that reached the function."""
    records_in: int = 0
    """Records read from the source (re-reads after disable/enable count again)."""
    succeeded: int = 0
    retries: int = 0
    """Invocations that redelivered a batch (attempt > 1)."""
    bisects: int = 0
    discarded: int = 0
    """Records given up after failure handling (sent to the on-failure destination if any)."""
    expired: int = 0
    """Of the discarded records, those that exceeded MaximumRecordAgeInSeconds."""
    filtered: int = 0
    on_failure_records: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    """Invocations classified PARTIAL_FAILURE or BATCH_FAILURE."""
    throttles: int = 0
    destination_errors: int = 0


class Counters:
    """Thread-safe counters behind `MappingStats` (lanes may run concurrently)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = {f.name: 0 for f in fields(MappingStats)}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> MappingStats:
        with self._lock:
            return MappingStats(**self._values)


class DrainTimeout(TimeoutError):
    """`drain()` did not finish in time; the message says which shards are still busy."""


@dataclass(frozen=True, slots=True)
class DrainSummary:
    """What one `drain()` did. `mappings` maps each mapping's UUID to its (total) stats."""

    rounds: int
    invocations: int
    records_in: int
    wall_seconds: float
    clock_seconds: float
    mappings: Mapping[str, MappingStats]
    names: Mapping[str, str]
    """Mapping UUID -> function name."""

    def stats_for(self, function_name: str) -> MappingStats:
        """The stats of the (only) mapping of `function_name`."""
        found = [u for u, n in self.names.items() if n == function_name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} mappings for function {function_name!r}")
        return self.mappings[found[0]]

    def __str__(self) -> str:
        lines = [
            f"drained in {self.rounds} rounds, {self.invocations} invocations, "
            f"{self.records_in} records read, {self.wall_seconds:.3f}s wall, "
            f"{self.clock_seconds:.3f}s clock"
        ]
        for mapping_uuid, stats in self.mappings.items():
            lines.append(
                f"  {self.names[mapping_uuid]}: {stats.succeeded} ok, {stats.filtered} filtered, "
                f"{stats.discarded} discarded, {stats.retries} retries"
            )
        return "\n".join(lines)


class WriteSignal:
    """Tells pollers that something was written to a stream, so that an idle lane wakes at
    once instead of at its next poll: `generation` moves on every write."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.generation = 0

    def notify(self) -> None:
        with self._condition:
            self.generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until a write after `seen`, or `timeout` seconds; the current generation."""
        with self._condition:
            if self.generation == seen and timeout > 0:
                self._condition.wait(timeout)
            return self.generation
