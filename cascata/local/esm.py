"""The local event source mapping engine: Lambda's stream pollers, in-process.

This emulates what Lambda does between a stream (Kinesis, or Kafka standing in for MSK) and a
function, following `reference/lambda-esm.md` sections 2, 5, 6, 7, 8 and 10: per (mapping,
shard) workers, ParallelizationFactor lanes keyed by partition key, batches bounded by size,
6 MB of serialized event and the batching window, filters, ReportBatchItemFailures with
lowest-sequence checkpointing, bisect on function error, bounded retries, maximum record age,
on-failure destinations, tumbling windows, and checkpoints that survive disable/enable.

Handlers are plain callables `handler(event, context)` run in this process. Each one receives
its own JSON round-tripped copy of the event (the only copy made per invocation) and a Lambda
context; its response is round-tripped too, so a response Lambda could not serialize is a
function error here as well.

Time comes only from the injected `Clock`: with a `ManualClock`, `drain()` jumps over batching
windows, back-off and window ends instantly. `drain()` runs every lane in a fixed order in the
calling thread (deterministic for tests); `start()` runs every lane on its own thread, as
Lambda's pollers do (`esm_pollers.py`), and `settle()` drains the running engine.

Public API (import everything from here): `EventSourceMappingEngine`, `EventSourceMapping`,
`MappingConfig`, the sources (`KinesisBackendSource`, `KinesisApiSource`, `KafkaSource`),
`DestinationWriter`, `Faults`, `Invocation`, `Outcome`, `MappingStats`, `DrainSummary`,
`DrainTimeout`, the clocks. The batch machinery lives in `esm_worker.py`, the reported values
in `esm_model.py`, settings in `esm_config.py`, event shapes in `esm_events.py`, sources in
`esm_sources.py` and on-failure destinations in `esm_destinations.py`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from cascata.aws_env import arn, partition_for
from cascata.local.clock import Clock, ManualClock, SystemClock
from cascata.local.esm_config import MappingConfig, destination_kind
from cascata.local.esm_destinations import DestinationWriter, OnFailureDelivery
from cascata.local.esm_events import EventFormat, KafkaFormat, KinesisFormat, LambdaContext
from cascata.local.esm_model import (
    Counters,
    DrainSummary,
    DrainTimeout,
    Faults,
    Handler,
    InjectedCrash,
    Invocation,
    MappingStats,
    Outcome,
    WriteSignal,
)
from cascata.local.esm_pollers import Pollers
from cascata.local.esm_sources import (
    AtTimestamp,
    Cursor,
    IteratorToken,
    KafkaSource,
    KinesisApiSource,
    KinesisBackendSource,
    ShardInfo,
    Source,
    SourceNotFoundError,
    SourceRecord,
)
from cascata.local.esm_worker import Lane, ShardWorker, new_uuid
from cascata.local.filters import FilterCriteria

__all__ = [
    "AtTimestamp",
    "Clock",
    "DestinationWriter",
    "DrainSummary",
    "DrainTimeout",
    "EventSourceMapping",
    "EventSourceMappingEngine",
    "Faults",
    "Handler",
    "InjectedCrash",
    "Invocation",
    "IteratorToken",
    "KafkaSource",
    "KinesisApiSource",
    "KinesisBackendSource",
    "LambdaContext",
    "ManualClock",
    "MappingConfig",
    "MappingStats",
    "OnFailureDelivery",
    "Outcome",
    "ShardInfo",
    "Source",
    "SourceNotFoundError",
    "SourceRecord",
    "SystemClock",
]

log = logging.getLogger(__name__)

_KAFKA_RETRY_CAP_WITH_DESTINATION: Final = 10
"""Kafka mappings with infinite retries and an on-failure destination retry 10 times."""


class EventSourceMapping:
    """One mapping: a function, a source, settings, and per-shard checkpoints and counters.

    Create it with `EventSourceMappingEngine.create_mapping`.
    """

    def __init__(
        self,
        engine: EventSourceMappingEngine,
        *,
        mapping_uuid: str,
        function: Handler,
        function_name: str,
        source: Source,
        config: MappingConfig,
        memory_mb: int,
        timeout_s: float,
        role_arn: str,
    ) -> None:
        self.engine = engine
        self.uuid = mapping_uuid
        self.function = function
        self.function_name = function_name
        self.source = source
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.role_arn = role_arn
        self.arn = (
            arn("lambda", f"event-source-mapping:{mapping_uuid}", region=engine.region,
                account=engine.account)
        )
        self.function_arn = (
            arn("lambda", f"function:{function_name}", region=engine.region,
                account=engine.account)
        )
        self.format: EventFormat
        # By kind, not class: a wrapped source (a replay's) reads Kafka as well.
        if source.kind == "kafka":
            kafka: Any = source
            self.format = KafkaFormat(
                topic=kafka.topic,
                cluster_arn=kafka.event_source_arn,
                bootstrap_servers=kafka.bootstrap_servers,
            )
        else:
            self.format = KinesisFormat(
                stream_arn=source.event_source_arn, region=engine.region, role_arn=role_arn
            )
        self.counters = Counters()
        self.last_processing_result = "No records processed"
        self.last_modified = engine.clock.now()
        self._config = config
        self.filters = FilterCriteria(config.filters)
        self._workers: dict[str, ShardWorker] = {}
        self._resume: dict[str, Cursor] = {}
        self._checkpoints: dict[str, int] = {}
        self._initialized = False
        self._enabled = config.enabled
        self._invocations: list[Invocation] = []
        self._deliveries: list[OnFailureDelivery] = []
        self._rngs: dict[tuple[str, str, int], random.Random] = {}
        self._lock = threading.Lock()
        if self._enabled:
            self._initialize()

    # -- public ----------------------------------------------------------------------------

    @property
    def config(self) -> MappingConfig:
        return self._config

    @property
    def state(self) -> str:
        return "Enabled" if self._enabled else "Disabled"

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def invocations(self) -> list[Invocation]:
        """Every invocation attempt so far, in order (empty if the engine keeps none)."""
        with self._lock:
            return list(self._invocations)

    @property
    def checkpoints(self) -> dict[str, int]:
        """Shard -> highest position done (processed, filtered or discarded)."""
        with self._lock:
            return dict(self._checkpoints)

    @property
    def stats(self) -> MappingStats:
        return self.counters.snapshot()

    @property
    def on_failure_deliveries(self) -> list[OnFailureDelivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def on_failure_records(self) -> list[dict[str, Any]]:
        """The JSON bodies sent to the on-failure destination (reference section 6)."""
        with self._lock:
            return [d.body for d in self._deliveries]

    @property
    def batching_window_s(self) -> float:
        return self._config.batching_window_for(self.source.kind)

    @property
    def effective_max_retries(self) -> int:
        retries = self._config.maximum_retry_attempts
        if (
            self.source.kind == "kafka"
            and retries == -1
            and self._config.on_failure_destination is not None
        ):
            # Kafka: infinite retries combined with a destination are capped at 10.
            return _KAFKA_RETRY_CAP_WITH_DESTINATION
        return retries

    def enable(self) -> None:
        """Resume from the checkpoints (the starting position applies only to a new mapping)."""
        with self.engine._lock:
            self._enabled = True
            if not self._initialized:
                self._initialize()
            self.last_modified = self.engine.clock.now()

    def disable(self) -> None:
        """Stop polling; in-flight batches are dropped and redelivered after `enable()`."""
        with self.engine._lock:
            self._enabled = False
            self._workers.clear()
            self.last_modified = self.engine.clock.now()

    def update(self, **changes: Any) -> None:
        """UpdateEventSourceMapping: new settings, same checkpoints (in-flight work restarts)."""
        create_only = {"starting_position", "starting_position_timestamp"} & set(changes)
        if create_only:
            raise ValueError(f"{', '.join(sorted(create_only))} cannot be updated")
        with self.engine._lock:
            config = self._config.with_changes(**changes)
            _check_source_config(self.source, config)
            self._config = config
            self.filters = FilterCriteria(config.filters)
            self._workers.clear()
            self.last_modified = self.engine.clock.now()
            if "enabled" in changes:
                if config.enabled:
                    self.enable()
                else:
                    self.disable()

    def describe(self) -> dict[str, Any]:
        """The mapping as GetEventSourceMapping returns it (reference 1.1)."""
        description: dict[str, Any] = {
            "UUID": self.uuid,
            "EventSourceMappingArn": self.arn,
            "EventSourceArn": self.source.event_source_arn,
            "FunctionArn": self.function_arn,
        }
        description.update(self._config.to_api(source_kind=self.source.kind))
        if self.source.kind == "kafka":
            kafka: Any = self.source
            description["Topics"] = [kafka.topic]
            description["AmazonManagedKafkaEventSourceConfig"] = {
                "ConsumerGroupId": kafka.consumer_group_id or self.uuid
            }
        description.update(
            LastModified=self.last_modified,
            LastProcessingResult=self.last_processing_result,
            State=self.state,
            StateTransitionReason="User action",
        )
        return description

    def __repr__(self) -> str:
        return f"EventSourceMapping({self.function_name!r} <- {self.source!r}, {self.state})"

    # -- engine side -----------------------------------------------------------------------

    def _rng(self, purpose: str, shard_id: str, lane: int) -> random.Random:
        # Kept per mapping, not per lane object, so that a disable/enable does not replay the
        # same fault decisions; seeded by strings, which Python hashes stably (sha512).
        key = (purpose, shard_id, lane)
        rng = self._rngs.get(key)
        if rng is None:
            seed = self.engine.seed
            if purpose == "faults" and self.engine.faults.seed is not None:
                seed = self.engine.faults.seed
            rng = self._rngs[key] = random.Random(f"{purpose}:{seed}:{self.uuid}:{shard_id}:{lane}")
        return rng

    def _initialize(self) -> None:
        """Take the starting position of every existing shard, now (LATEST means now)."""
        config = self._config
        for info in self.source.list_shards(refresh=True):
            self._resume.setdefault(
                info.shard_id,
                self.source.start_cursor(
                    info.shard_id,
                    config.starting_position,
                    config.starting_position_timestamp,
                    group=self.uuid,
                ),
            )
        self._initialized = True

    def _advance(self, shard_id: str, position: int) -> None:
        with self._lock:
            self._checkpoints[shard_id] = position
            self._resume[shard_id] = position
        self.source.commit(shard_id, position, group=self.uuid)

    def _record(self, invocation: Invocation) -> None:
        if self.engine.keep_invocations:
            with self._lock:
                self._invocations.append(invocation)

    def _delivered(self, delivery: OnFailureDelivery) -> None:
        self.counters.add("on_failure_records")
        with self._lock:
            self._deliveries.append(delivery)

    def _parents_finished(self, info: ShardInfo, known: set[str]) -> bool:
        for parent in info.parent_ids:
            if parent not in known:
                continue  # trimmed away: nothing left to read before the child
            worker = self._workers.get(parent)
            if worker is None or not worker.finished:
                return False
        return True

    def _discover(self, now: float, refresh: bool) -> int:
        """Start workers for shards whose parents are done. Returns how many started."""
        if not self._enabled:
            return 0
        shards = self.source.list_shards(refresh=refresh)
        known = {s.shard_id for s in shards}
        started = 0
        for info in shards:
            worker = self._workers.get(info.shard_id)
            if worker is None:
                if not self._parents_finished(info, known):
                    continue
                # Shards found after the mapping started hold only post-reshard records.
                cursor = self._resume.get(info.shard_id)
                self._workers[info.shard_id] = ShardWorker(self, info, cursor, now)
                started += 1
            else:
                worker.info = info
        return started

    def _poll(self, now: float, refresh: bool) -> int:
        """Discover shards, start workers whose parents are done, and read. Returns work done."""
        work = self._discover(now, refresh)
        if self._enabled:
            work += sum(worker.fill(now) for worker in list(self._workers.values()))
        return work

    def _lanes(self) -> list[Lane]:
        return [lane for worker in self._workers.values() for lane in worker.lanes]

    def _idle(self, read_after: float | None = None) -> bool:
        """Nothing buffered, in flight or pending; with `read_after`, also every shard read to
        its end by a read that began after that `time.monotonic()` instant."""
        if not self._enabled:
            return True
        for worker in list(self._workers.values()):
            with worker.lock:
                if read_after is not None and not worker.ended and (
                    worker.read_started <= read_after
                ):
                    return False
                if not worker.caught_up or not worker.progress.idle:
                    return False
                if not all(lane.idle for lane in worker.lanes):
                    return False
        return True

    def _busy_report(self) -> list[str]:
        if not self._enabled:
            return []
        return [
            f"{self.function_name} {line}"
            for worker in self._workers.values()
            for line in worker.describe_busy()
        ]


def _check_source_config(source: Source, config: MappingConfig) -> None:
    if source.kind == "kafka":
        if config.parallelization_factor != 1:
            raise ValueError("parallelization_factor applies to Kinesis and DynamoDB only")
        if config.tumbling_window_in_seconds:
            raise ValueError("tumbling_window_in_seconds applies to Kinesis and DynamoDB only")
    if source.kind == "kinesis" and config.filters:
        keys = FilterCriteria(config.filters).keys - {"data"}
        if keys:
            log.warning(
                "Kinesis filters should only filter on `data`; %s evaluated against the record "
                "metadata (partitionKey, sequenceNumber, ...)", ", ".join(sorted(keys)),
            )


@dataclass(frozen=True, slots=True)
class _RoundResult:
    progress: bool
    deadline: float | None
    idle: bool


class EventSourceMappingEngine:
    """Runs event source mappings in-process: `create_mapping`, then `drain()` or `start()`.

    - `clock`: the only source of time (default `SystemClock`).
    - `destinations`: sends on-failure records; without one, records are only kept in
      `mapping.on_failure_records`.
    - `faults`: seeded fault injection (`Faults`); `seed` makes mapping UUIDs, request ids and
      faults reproducible.
    - `retry_backoff_s`: pause before retrying a failed batch (AWS backs off exponentially; the
      default 0 keeps tests fast). `throttle_backoff_s`: pause after an invoke error or a failed
      on-failure delivery.
    - `max_workers`: lanes run concurrently in the background loop (and in
      `drain(parallel=True)`) when above 1.
    - `keep_invocations`: record every invocation in `mapping.invocations` (turn off for long
      runs; the counters are always kept).
    - `wake`: signalled on every write to the sources (the embedded emulator's
      `STREAM_WRITES`): idle lanes of the background mode wake on it instead of polling.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        region: str = "us-east-1",
        account: str = "123456789012",
        destinations: DestinationWriter | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        poll_interval: float = 0.1,
        retry_backoff_s: float = 0.0,
        throttle_backoff_s: float = 1.0,
        max_workers: int = 1,
        keep_invocations: bool = True,
        wake: WriteSignal | None = None,
    ) -> None:
        if not 0 < poll_interval <= 60:
            raise ValueError(f"poll_interval must be in (0, 60] seconds, got {poll_interval}")
        if retry_backoff_s < 0 or throttle_backoff_s < 0:
            raise ValueError("back-off durations cannot be negative")
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.clock: Clock = clock or SystemClock()
        self.region = region
        self.account = account
        self.destinations = destinations
        self.faults = faults or Faults()
        self.seed = seed
        self.poll_interval = poll_interval
        self.retry_backoff_s = retry_backoff_s
        self.throttle_backoff_s = throttle_backoff_s
        self.max_workers = max_workers
        self.keep_invocations = keep_invocations
        self.last_error: BaseException | None = None
        self.flushing = False
        """True while a drain is on: batching windows do not hold a batch back."""
        self.idle_poll_s = poll_interval if wake is None else max(poll_interval, 1.0)
        """How long an idle lane of the background mode sleeps before reading again."""
        self._rng = random.Random(f"engine:{seed}")
        self._lock = threading.RLock()
        self._mappings: dict[str, EventSourceMapping] = {}
        self._pollers = Pollers(self, wake or WriteSignal())
        self._executor: ThreadPoolExecutor | None = None

    # -- mappings --------------------------------------------------------------------------

    def create_mapping(
        self,
        *,
        function: Handler,
        function_name: str,
        source: Source,
        config: MappingConfig | None = None,
        memory_mb: int = 512,
        timeout_s: float = 60.0,
        role_arn: str | None = None,
        mapping_uuid: str | None = None,
    ) -> EventSourceMapping:
        """CreateEventSourceMapping: validate, resolve starting positions now, return it."""
        config = config or MappingConfig()
        if not callable(function):
            raise TypeError(f"function must be callable, got {function!r}")
        _check_source_config(source, config)
        if config.on_failure_destination and self.destinations is not None:
            kind = destination_kind(config.on_failure_destination)
            if not self.destinations.supports(kind):
                raise ValueError(
                    f"the engine's DestinationWriter has no {kind} client for "
                    f"{config.on_failure_destination}"
                )
        with self._lock:
            for existing in self._mappings.values():
                if (
                    existing.function_name == function_name
                    and existing.source.event_source_arn == source.event_source_arn
                    and existing.source.name == source.name
                ):
                    raise ValueError(
                        "ResourceConflictException: an event source mapping for "
                        f"{source.name!r} and function {function_name!r} already exists "
                        f"(UUID {existing.uuid})"
                    )
            try:
                source.list_shards(refresh=True)
            except SourceNotFoundError as exc:
                raise ValueError(f"InvalidParameterValueException: {exc}") from exc
            mapping_uuid = mapping_uuid or new_uuid(self._rng)
            mapping = EventSourceMapping(
                self,
                mapping_uuid=mapping_uuid,
                function=function,
                function_name=function_name,
                source=source,
                config=config,
                memory_mb=memory_mb,
                timeout_s=timeout_s,
                role_arn=role_arn
                or f"arn:{partition_for(self.region)}:iam::{self.account}:role/"
                f"{function_name}-role",
            )
            self._mappings[mapping_uuid] = mapping
            return mapping

    def delete_mapping(self, mapping: EventSourceMapping | str) -> None:
        mapping_uuid = mapping if isinstance(mapping, str) else mapping.uuid
        with self._lock:
            if self._mappings.pop(mapping_uuid, None) is None:
                raise KeyError(f"no event source mapping {mapping_uuid}")

    @property
    def mappings(self) -> tuple[EventSourceMapping, ...]:
        with self._lock:
            return tuple(self._mappings.values())

    def get_mapping(self, mapping_uuid: str) -> EventSourceMapping:
        with self._lock:
            try:
                return self._mappings[mapping_uuid]
            except KeyError:
                raise KeyError(f"no event source mapping {mapping_uuid}") from None

    # -- running ---------------------------------------------------------------------------

    def _round(self, *, parallel: bool, refresh: bool = False) -> _RoundResult:
        with self._lock:
            mappings = [m for m in self._mappings.values() if m.enabled]
            now = self.clock.now()
            work = sum(m._poll(now, refresh) for m in mappings)
            lanes = [lane for m in mappings for lane in m._lanes()]
            now = self.clock.now()
            due = [lane for lane in lanes if lane.plan(now)[0] is not None]
            if parallel and len(due) > 1:
                executor = self._pool()
                work += sum(executor.map(lambda lane: lane.step(), due))
            else:
                work += sum(lane.step() for lane in due)
            now = self.clock.now()
            deadlines = [d for lane in lanes if (d := lane.plan(now)[1]) is not None]
            return _RoundResult(
                progress=work > 0,
                deadline=min(deadlines) if deadlines else None,
                idle=all(m._idle() for m in mappings),
            )

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="cascata-esm-lane"
            )
        return self._executor

    def poll_once(self, *, parallel: bool = False) -> bool:
        """One round: read every shard, run every due lane once. True if anything happened."""
        return self._round(parallel=parallel).progress

    def drain(self, timeout: float = 30.0, *, parallel: bool = False) -> DrainSummary:
        """Run every enabled mapping until all shards are caught up and nothing is pending.

        Waits for batching windows, back-off and tumbling windows on the engine's clock (a
        `ManualClock` jumps). `timeout` is wall-clock seconds; on expiry `DrainTimeout` says
        which shards are still busy (e.g. a poison record retried forever with the default
        MaximumRetryAttempts -1). Lanes run one after another in a fixed order unless
        `parallel` is true.
        """
        wall_start = time.monotonic()
        clock_start = self.clock.now()
        before = {m.uuid: m.stats for m in self.mappings}
        rounds = 0
        refreshed = False
        while True:
            remaining = timeout - (time.monotonic() - wall_start)
            if remaining <= 0:
                busy = [line for m in self.mappings for line in m._busy_report()]
                raise DrainTimeout(
                    f"drain() did not finish within {timeout}s; still busy:\n  "
                    + "\n  ".join(busy or ["(nothing reported)"])
                )
            result = self._round(parallel=parallel, refresh=refreshed)
            rounds += 1
            if result.progress:
                refreshed = False
                continue
            if result.deadline is not None:
                wait = result.deadline - self.clock.now()
                if wait > 0:
                    # A real clock must not sleep past the timeout; a manual one jumps.
                    if isinstance(self.clock, SystemClock):
                        wait = min(wait, remaining)
                    self.clock.sleep(wait)
                continue
            if result.idle:
                if refreshed:
                    break
                refreshed = True  # one more round with a fresh shard listing before stopping
                continue
            time.sleep(min(self.poll_interval, 0.01))
        after = {m.uuid: m.stats for m in self.mappings}
        zero = MappingStats()
        return DrainSummary(
            rounds=rounds,
            invocations=sum(
                s.invocations - before.get(u, zero).invocations for u, s in after.items()
            ),
            records_in=sum(s.records_in - before.get(u, zero).records_in for u, s in after.items()),
            wall_seconds=time.monotonic() - wall_start,
            clock_seconds=self.clock.now() - clock_start,
            mappings=after,
            names={m.uuid: m.function_name for m in self.mappings},
        )

    def start(self) -> None:
        """Run every lane on its own thread (`esm_pollers.py`) until `stop()`."""
        with self._lock:
            if self._pollers.running:
                return
            self._pollers.start()

    @property
    def running(self) -> bool:
        return self._pollers.running

    def settle(self, timeout: float = 30.0, *, stall_s: float | None = None) -> int:
        """The drain of a running engine: batching windows flushed, lanes still side by side;
        returns once everything written has been processed. DrainTimeout after `timeout`, or
        after `stall_s` seconds without progress."""
        if not self._pollers.running:
            raise RuntimeError("settle() drains a running engine: start() it first")
        return self._pollers.settle(timeout, stall_s)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background threads. Each finishes its current attempt first, however long
        it takes on a loaded machine (an attempt is bounded work); with `timeout`,
        TimeoutError after it."""
        self._pollers.stop(timeout)

    def close(self) -> None:
        self.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> EventSourceMappingEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
