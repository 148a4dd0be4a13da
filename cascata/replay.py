"""Replay: the same processors over history, into a new version of every view (Kappa).

`run_replay` builds version V of the views on a running local deployment (`cascata up`, or any
endpoint the pipeline is provisioned on): it creates V's own tables and derived streams, then
runs the declared processors (all but those whose effects leave the pipeline, such as
notifications) over the origin streams' history with the local event source mapping engine,
exactly as they run live, only with V's resource names and V's configuration.

- `--from stream` reads the origin streams from the trim horizon, or from `--since`
  (AT_TIMESTAMP), up to `--until` (arrival time; by default the moment the replay was started,
  fixed in the registry so a resumed run stops at the same place).
- `--from archive` first republishes the archived history (S3) into V's own replay streams
  (`cascata_runtime.republish`), so history older than the streams' retention replays too.
  Each republished record carries its original arrival time, and the replay reads that, not
  the republish time: the turns between origin streams and the functions' clock below follow
  history's arrival times exactly as a replay from the stream does.

Order. Each shard is read in sequence order, so each key's events are processed in the order
they arrived; the engine runs the mappings one lane after another, which makes a replay of the
same history produce the same views every time.

Resuming. Every mapping's checkpoint (the last position all of whose effects are stored) is
written to V's registry record every few seconds, when the run stops at `--max-records`, and
on interruption. A resumed run starts each mapping after its checkpoint; anything between the
checkpoint and the interruption is delivered again and recognised by the processors' per-shard
fences, so nothing is applied twice. The functions' clock is the replay clock (the newest
arrival time replayed, also checkpointed), not the wall clock, so time-driven logic (idle
shards closing windows) sees history's own pace however long the replay pauses.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cascata.console import CliError
from cascata.local.emulator import Aws, provision
from cascata.local.esm_model import DrainTimeout
from cascata.local.esm_sources import AtTimestamp, ReadResult, ShardInfo, SourceRecord
from cascata.local.runtime import LocalRuntime, mapping_key
from cascata.local.serve import local_kafka
from cascata.pipeline import FIRST_VERSION, Pipeline, check_version
from cascata.project import current_pipeline
from cascata.versions import (
    BUILDING,
    LEASE_MS,
    READY,
    RETIRED,
    Registry,
    VersionRecord,
    lease_owner,
    now_iso,
)
from cascata_runtime.records import Replayed, unwrap_replayed
from cascata_runtime.republish import Bounds, RepublishState, epoch_ms, republish

CHECKPOINT_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    version: str
    replay_from: Literal["stream", "archive"] = "stream"
    since: datetime | None = None
    until: datetime | None = None
    config: Mapping[str, Mapping[str, str]] | None = None
    """Function name -> environment overrides (the version's configuration); None on a
    resumed replay means "as recorded"."""
    max_records: int | None = None
    """Stop after this many origin records in this run (resume by running again)."""
    timeout_s: float = 900.0
    stage: str = "local"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    version: str
    state: str
    replay_from: str
    since: str | None
    until: str
    resumed: bool
    records_this_run: int
    records_total: int
    republished: int
    duration_s: float
    config: Mapping[str, Mapping[str, str]]

    @property
    def complete(self) -> bool:
        return self.state == READY

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "state": self.state, "complete": self.complete,
            "replay_from": self.replay_from, "since": self.since, "until": self.until,
            "resumed": self.resumed, "records_this_run": self.records_this_run,
            "records_total": self.records_total, "republished": self.republished,
            "duration_s": round(self.duration_s, 3), "config": dict(self.config),
        }


class ReplayClock:
    """The functions' wall clock during a replay: the newest arrival time replayed so far."""

    def __init__(self, start_ms: int) -> None:
        self._ms = start_ms
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._ms / 1000.0

    def saw(self, arrival_s: float) -> None:
        with self._lock:
            self._ms = max(self._ms, int(arrival_s * 1000))

    @property
    def ms(self) -> int:
        with self._lock:
            return self._ms


class Budget:
    """How many more origin records this run may read (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self._left = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        with self._lock:
            granted = wanted if self._left is None else min(wanted, self._left)
            if self._left is not None:
                self._left -= granted
            self.used += granted
            return granted

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._left == 0


class Gate:
    """Arrival order across origin streams.

    Processors read other views as they go (fraud-detect reads the payer's profile, which
    profiles builds from the customers stream), so what a payment sees depends on which
    customer events were applied before it. Live, that is the order things arrived in; a
    replay keeps it: the origin streams take turns, each releasing only records that arrived
    before the next unreleased record of every other origin stream, and the driver drains all
    the work they cause before the next turn. Ties go to the stream declared first.
    """

    def __init__(self, order: list[str]) -> None:
        self._order = {name: i for i, name in enumerate(order)}
        self._open: tuple[str, float | None] | None = None

    def open_for(self, stream: str, before: float | None) -> None:
        """Let `stream` release records that arrived before `before` (None: no bound)."""
        self._open = (stream, before)

    def allows(self, stream: str, arrival: float, other: str | None) -> bool:
        if self._open is None or self._open[0] != stream:
            return False
        bound = self._open[1]
        if bound is None:
            return True
        if arrival != bound or other is None:
            return arrival < bound
        return self._order[stream] < self._order[other]

    def rank(self, stream: str) -> int:
        return self._order[stream]


def stream_arrival(record: SourceRecord) -> float:
    """A record's arrival time as the stream recorded it."""
    return record.arrival


def carried_arrival(record: SourceRecord) -> float:
    """A replay stream's record's original arrival time, which it carries
    (`cascata_runtime.records.wrap_replayed`). A record that carries none is refused by the
    functions (`not_replayed`): 0 releases it as soon as its shard reaches it, without moving
    the clock."""
    try:
        raw = base64.b64decode(record.data or "", validate=True)
    except (binascii.Error, ValueError):
        return 0.0
    inner = unwrap_replayed(raw)
    return inner.arrival_ms / 1000.0 if isinstance(inner, Replayed) else 0.0


class ReplaySource:
    """A mapping's source during a replay: resumes after the recorded checkpoint and, for the
    origin streams, starts at `since`, ends at `until`, spends the run's budget and releases
    records only as the `Gate` allows. `arrival` reads a record's arrival time: the stream's,
    or on a replay stream refilled from the archive the original one the record carries."""

    def __init__(self, inner: Any, *, stream: str, resume: Mapping[str, int], origin: bool,
                 since_s: float | None, until_s: float | None, budget: Budget,
                 clock: ReplayClock, gate: Gate,
                 arrival: Callable[[SourceRecord], float] = stream_arrival) -> None:
        self._inner = inner
        self.stream = stream
        self._resume = dict(resume)
        self._origin = origin
        self._arrival = arrival
        self._since = since_s
        self._until = until_s
        self._budget = budget
        self._clock = clock
        self._gate = gate
        self._cursors: dict[str, Any] = {}
        self.bound_other: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def kind(self) -> Any:
        return self._inner.kind

    @property
    def event_source_arn(self) -> str:
        return str(self._inner.event_source_arn)

    @property
    def name(self) -> str:
        return str(self._inner.name)

    def list_shards(self, *, refresh: bool = False) -> list[ShardInfo]:
        return list(self._inner.list_shards(refresh=refresh))

    def start_cursor(self, shard_id: str, starting_position: str, timestamp: float | None,
                     *, group: str) -> Any:
        if shard_id in self._resume:
            cursor: Any = self._resume[shard_id]
        elif self._origin and self._since is not None:
            cursor = AtTimestamp(self._since)
        else:
            cursor = None
        self._cursors.setdefault(shard_id, cursor)
        return cursor

    def _wanted(self, arrival: float) -> bool:
        return self._until is None or arrival < self._until

    def head(self) -> float | None:
        """The arrival time of the next record this origin stream would release (None: none
        left within `until`)."""
        heads = []
        for shard in self._inner.list_shards():
            cursor = self._cursors.get(shard.shard_id, self._resume.get(shard.shard_id))
            if cursor is None and self._since is not None and shard.shard_id not in self._resume:
                cursor = AtTimestamp(self._since)
            result = self._inner.read(shard.shard_id, cursor, 1)
            if result.records and self._wanted(arrival := self._arrival(result.records[0])):
                heads.append(arrival)
        return min(heads) if heads else None

    def read(self, shard_id: str, cursor: Any, limit: int) -> ReadResult:
        if not self._origin:
            passed: ReadResult = self._inner.read(shard_id, cursor, limit)
            return passed
        if self._budget.exhausted:
            return ReadResult((), cursor, caught_up=True)
        result = self._inner.read(shard_id, cursor, limit)
        records = []
        arrivals = []
        for record in result.records:
            arrival = self._arrival(record)
            if not self._wanted(arrival) or not self._gate.allows(
                    self.stream, arrival, self.bound_other):
                break
            records.append(record)
            arrivals.append(arrival)
        records = records[:self._budget.take(len(records))]
        for arrival in arrivals[:len(records)]:
            self._clock.saw(arrival)
        next_cursor = records[-1].position if records else cursor
        self._cursors[shard_id] = next_cursor
        if len(records) == len(result.records):
            return ReadResult(tuple(records), result.cursor if records else cursor,
                              caught_up=result.caught_up, shard_ended=result.shard_ended)
        return ReadResult(tuple(records), next_cursor, caught_up=True)

    def commit(self, shard_id: str, checkpoint: int, *, group: str) -> None:
        self._inner.commit(shard_id, checkpoint, group=group)


def drain_in_arrival_order(runtime: LocalRuntime, origins: list[ReplaySource], gate: Gate,
                           budget: Budget, timeout_s: float) -> None:
    """Give the origin streams turns in arrival order and drain after each (see `Gate`)."""
    deadline = time.monotonic() + timeout_s
    # A resumed run may find work still queued on the derived streams: it goes first, before
    # any origin stream releases records that arrived later.
    gate.open_for("", None)
    runtime.drain(timeout_s)
    while not budget.exhausted:
        heads = [(head, gate.rank(src.stream), src) for src in origins
                 if (head := src.head()) is not None]
        if not heads:
            break
        heads.sort(key=lambda h: (h[0], h[1]))
        _, _, first = heads[0]
        if len(heads) > 1:
            bound, _, other = heads[1]
            first.bound_other = other.stream
            gate.open_for(first.stream, bound)
        else:
            first.bound_other = None
            gate.open_for(first.stream, None)
        left = deadline - time.monotonic()
        if left <= 0:
            raise CliError(f"the replay did not finish within {timeout_s:.0f} s; run it "
                           "again to continue")
        runtime.drain(left)
    gate.open_for("", None)
    runtime.drain(max(1.0, deadline - time.monotonic()))


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def registry_for(aws: Aws, stage: str, pipeline: Pipeline | None = None) -> Registry:
    pipeline = pipeline or current_pipeline()
    control = pipeline.control_table
    if control is None:
        raise CliError(f"pipeline {pipeline.app!r} declares no version registry (a Table with "
                       "role='control'): replay, versions, diff, promote and retire need one")
    table = pipeline.physical_name(control.name, stage=stage, account=aws.account,
                                   region=aws.region)
    ddb = aws.client("dynamodb")
    try:
        ddb.describe_table(TableName=table)
    except ddb.exceptions.ResourceNotFoundException:
        raise CliError(f"no pipeline of stage {stage!r} at {aws.where('dynamodb')} in "
                       f"{aws.region} (no {table} table): start it with `cascata up`") from None
    return Registry(ddb, table)


def _open_record(registry: Registry, options: ReplayOptions, owner: str
                 ) -> tuple[VersionRecord, bool]:
    """The version's record, new or resumed, with this process holding its lease."""
    record = registry.get(options.version)
    if record is None:
        started = datetime.now(UTC)
        until = options.until or started
        if until > started:
            raise CliError(f"--until {_iso(until)} is in the future; history ends now")
        if options.since and options.since >= until:
            raise CliError(f"--since {_iso(options.since)} is not before --until {_iso(until)}")
        record = VersionRecord(
            version=options.version, state=BUILDING, replay_from=options.replay_from,
            since=_iso(options.since), until=_iso(until) or "",
            config={k: dict(v) for k, v in (options.config or {}).items()},
            created_at=now_iso(), updated_at=now_iso(),
            clock_ms=epoch_ms(options.since) if options.since else 0,
            lease_owner=owner, lease_until_ms=int(time.time() * 1000) + LEASE_MS,
        )
        registry.create(record)
        return record, False
    if record.state == READY:
        raise CliError(f"{options.version} is already built; diff it, promote it, or retire "
                       "it and replay again")
    if record.state == RETIRED:
        raise CliError(f"{options.version} was retired; replay into a new version")
    conflicts = []
    if options.replay_from != record.replay_from:
        conflicts.append(f"--from {record.replay_from}")
    if options.since and _iso(options.since) != record.since:
        conflicts.append(f"--since {record.since}")
    if options.until and _iso(options.until) != record.until:
        conflicts.append(f"--until {record.until}")
    if options.config is not None and {k: dict(v) for k, v in options.config.items()} \
            != record.config:
        conflicts.append("the same --set values")
    if conflicts:
        raise CliError(f"{options.version} is a replay in progress started with "
                       f"{', '.join(conflicts)}; resume it with those, or choose another version")
    registry.acquire(record, owner)
    return record, True


def run_replay(
    aws: Aws,
    options: ReplayOptions,
    *,
    pipeline: Pipeline | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> ReplayResult:
    """Build (or continue building) `options.version`; see the module docstring. A complete
    version holds the views as they stood at `until`: after the last record, the scheduled
    functions run once with the clock at `until` (closing the windows the live schedule had
    closed by then)."""
    pipeline = pipeline or current_pipeline()
    check_version(options.version)
    if options.version == FIRST_VERSION:
        raise CliError("v1 is the deployed pipeline's version; replay into v2, v3, ...")
    if options.max_records is not None and options.max_records < 1:
        raise CliError("--max-records must be at least 1")
    registry = registry_for(aws, options.stage, pipeline)
    owner = lease_owner()
    record, resumed = _open_record(registry, options, owner)
    started = time.monotonic()
    built = pipeline.for_version(record.version, replay_from=record.replay_from)  # type: ignore[arg-type]
    kafka = local_kafka(aws, pipeline, stage=options.stage)
    if kafka is not None and record.replay_from == "archive":
        raise CliError("the pipeline runs on Kafka (`up --broker msk`), where nothing is "
                       "archived (Firehose reads Kinesis): replay it --from stream")
    provision(built, aws, stage=options.stage, kinesis_streams=kafka is None)
    since = parse_time_option(record.since, "since")
    until = parse_time_option(record.until, "until")
    assert until is not None
    republished = 0
    if record.replay_from == "archive":
        if not pipeline.archives:
            raise CliError(f"pipeline {pipeline.app!r} archives no stream: replay it "
                           "--from stream")
        republished = _republish(aws, registry, record, built, pipeline.archives[0].bucket,
                                 options.stage,
                                 Bounds(epoch_ms(since) if since else None, epoch_ms(until)),
                                 on_progress)
    clock = ReplayClock(record.clock_ms)
    budget = Budget(options.max_records)
    sources: dict[str, ReplaySource] = {}
    origins = [s.name for s in pipeline.streams if s.origin]
    gate = Gate(origins)

    def wrap(processor: str, stream: str, source: Any) -> Any:
        key = mapping_key(processor, stream)
        wrapped = ReplaySource(
            source, stream=stream, resume=record.checkpoints.get(key, {}),
            origin=stream in origins, gate=gate,
            # From the archive, history is bounded when republished; the replay streams
            # hold nothing else.
            since_s=since.timestamp() if since and record.replay_from == "stream" else None,
            until_s=until.timestamp() if record.replay_from == "stream" else None,
            budget=budget, clock=clock,
            # A replay stream's records carry their original arrival time: the turns and the
            # clock follow it, as the functions do (their origin policy says `replayed`).
            arrival=carried_arrival if record.replay_from == "archive" and stream in origins
            else stream_arrival,
        )
        sources[key] = wrapped
        return wrapped

    runtime = LocalRuntime(built, aws, stage=options.stage, environment=record.config,
                           source_wrapper=wrap, batching_windows=False,
                           broker="kinesis" if kafka is None else "msk",
                           kafka_bootstrap_servers=kafka)
    runtime.clock = clock  # type: ignore[assignment]
    stop = threading.Event()
    records_before = record.records

    def checkpoint() -> None:
        # A mapping reports only the shards it has processed in this run: keep the rest.
        for key, mapping in runtime.mappings.items():
            shards = record.checkpoints.setdefault(key, {})
            for shard, position in mapping.checkpoints.items():
                shards[shard] = max(int(position), shards.get(shard, -1))
        record.records = records_before + budget.used
        record.clock_ms = clock.ms
        registry.save(record)

    def keep_checkpointing() -> None:
        while not stop.wait(CHECKPOINT_EVERY_S):
            checkpoint()
            if on_progress:
                on_progress("replay", budget.used)

    saver = threading.Thread(target=keep_checkpointing, daemon=True)
    record.runs += 1
    try:
        runtime.start()
        saver.start()
        # One source per origin stream decides the turns (every reader of a stream sees the
        # same history; the others follow the gate the same way).
        leaders: dict[str, ReplaySource] = {}
        for source in sources.values():
            if source.stream in origins:
                leaders.setdefault(source.stream, source)
        drain_in_arrival_order(runtime, list(leaders.values()), gate, budget,
                               options.timeout_s)
        stop.set()
        saver.join()
        complete = not budget.exhausted
        if complete:
            # The version is the views as they stood at `until`: the schedule's close runs
            # once more, at that time (the same close whenever the last run happens).
            clock.saw(until.timestamp())
            for scheduled in built.scheduled:
                runtime.run_scheduled(scheduled.name, now=until.timestamp())
            runtime.drain(options.timeout_s)
        checkpoint()
        if complete:
            record.state = READY
            record.completed_at = now_iso()
            registry.save(record)
    except DrainTimeout as exc:
        stop.set()
        with contextlib.suppress(Exception):  # the timeout is the error to report
            if runtime.engine is not None:
                runtime.engine.stop()
            checkpoint()
        raise CliError(f"the replay did not finish within {options.timeout_s:.0f} s; its "
                       f"progress is saved: run it again to continue ({str(exc).splitlines()[0]})"
                       ) from None
    except BaseException:
        stop.set()
        if runtime.engine is not None:
            with contextlib.suppress(Exception):  # the original error is the one to report
                runtime.engine.stop()
                checkpoint()
        raise
    finally:
        stop.set()
        if saver.is_alive():
            saver.join(timeout=30)
        runtime.close()
        with contextlib.suppress(Exception):  # a lost lease was reported already
            registry.release(record)
    if on_progress:
        on_progress("replay", budget.used)
    return ReplayResult(
        version=record.version, state=record.state, replay_from=record.replay_from,
        since=record.since, until=record.until, resumed=resumed,
        records_this_run=budget.used, records_total=record.records,
        republished=republished, duration_s=time.monotonic() - started,
        config=record.config,
    )


def _republish(aws: Aws, registry: Registry, record: VersionRecord, built: Pipeline,
               archive_bucket: str, stage: str, bounds: Bounds,
               on_progress: Callable[[str, int], None] | None) -> int:
    state = RepublishState.from_json(record.republish)
    if state.done:
        return 0
    before = state.published
    targets = {s.name: built.physical_name(s.name, stage=stage)
               for s in built.streams if s.origin}
    archive = built.physical_name(archive_bucket, stage=stage, account=aws.account,
                                  region=aws.region)

    def save(current: RepublishState) -> None:
        record.republish = current.to_json()
        registry.save(record)

    final = republish(
        s3=aws.client("s3"), kinesis=aws.client("kinesis"), archive_bucket=archive,
        targets=targets, bounds=bounds, state=state, save=save,
        on_progress=(lambda n: on_progress("republish", n)) if on_progress else None,
    )
    return final.published - before


def parse_time_option(value: str | None, option: str) -> datetime | None:
    """An RFC 3339 time (a trailing Z or an offset; a bare date means midnight UTC)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{option} must be a time like 2026-11-25T09:00:00Z, got {value!r}") \
            from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
