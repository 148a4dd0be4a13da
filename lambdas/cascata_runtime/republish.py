"""Republish archived history into a version's replay streams, resumably.

A replay from the archive refills the version's own copies of the origin streams
(`payments-raw-v2`, ...) from S3, and the version's processors consume them exactly as they
consume the live streams. This module is that refill, the same code on AWS (a Lambda that a
Step Functions state machine invokes until it reports done) and locally (`cascata replay
--from archive`).

Order. Records of one stream are published in arrival order (ties by source shard, sequence
number and subsequence number), which keeps each source shard's order and so each key's order.
Within one PutRecords request Kinesis does not promise order, and a retry of failed entries
would overtake later ones, so a request never carries two records with the same partition key,
and the next request goes only after every entry of the previous one is stored.

Arrival time. Kinesis stamps each republished record with the time it was republished, but
history's clock is when it first arrived: event-time bounds, the dedupe horizon and idleness
are judged on it. So each record goes to the replay stream behind a header carrying its
archived arrival time (`cascata_runtime.records.wrap_replayed`, the producer's bytes after it
untouched), and the version's functions, told that these streams are replay streams, read
the record as live read it. Only there: on a live stream the same bytes are not an event.

KPL aggregates. The archive holds the user records of an aggregate as lines at one sequence
number, each with its subsequence number (`cascata_runtime.archive`). Each is its own record
here: de-duplicated, ordered and resumed by (shard, sequence, subsequence), and republished as
a plain record, so the version's processors read it as live read the user record (its own
partition key and bytes, the event id inside them) at a replay-stream position of its own.

Resuming. The cursor is the (arrival, shard, sequence, subsequence) of the last record
published, kept in the version's registry item after every request. A run that stops, by
budget or by a crash, continues after it; a crash between a request and its checkpoint
republishes at most that one request, whose records the processors recognise as duplicates
(each event id is applied once). A cursor saved before cursors had a subsequence, (arrival,
shard, sequence), resumes after the first user record at that position: its siblings, which
that run would have skipped, are published, and at worst one record again.
Lines are de-duplicated by (stream, shard, sequence, subsequence): the archiver may have
written a record twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cascata_runtime.archive import ERRORS, EVENTS, decode_object, line_bytes, line_subsequence
from cascata_runtime.envelope import parse_time
from cascata_runtime.records import wrap_replayed
from cascata_runtime.versions import KEY

MAX_REQUEST_RECORDS = 500
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
"""Kinesis' limit on one record, data and partition key together."""
_RETRYABLE = frozenset({"ProvisionedThroughputExceededException", "InternalFailure",
                        "KMSThrottlingException"})

Cursor = tuple[int, str, int, int]
"""(arrival_ms, shard_id, sequence number, subsequence number): the order records are
republished in (the subsequence is 0 for a record not aggregated)."""


@dataclass(frozen=True, slots=True)
class Bounds:
    since_ms: int | None = None
    until_ms: int | None = None

    def holds(self, arrival_ms: int) -> bool:
        if self.since_ms is not None and arrival_ms < self.since_ms:
            return False
        return self.until_ms is None or arrival_ms < self.until_ms


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def cursor_of(line: Mapping[str, Any]) -> Cursor:
    return (int(line["arrival_ms"]), str(line["shard_id"]), int(line["sequence_number"]),
            line_subsequence(line))


def parse_cursor(raw: Sequence[Any]) -> Cursor:
    """A stored cursor: `[arrival, shard, sequence, subsequence]`, or the `[arrival, shard,
    sequence]` of a run saved before cursors had a subsequence, read as subsequence 0 (what
    that run published at a position was its first line)."""
    if len(raw) not in (3, 4):
        raise ValueError(f"a republish cursor has 3 or 4 parts, got {len(raw)}")
    return (int(raw[0]), str(raw[1]), int(raw[2]), int(raw[3]) if len(raw) == 4 else 0)


def archived_lines(s3: Any, bucket: str, stream: str, bounds: Bounds) -> list[dict[str, Any]]:
    """Every archived record of `stream` within `bounds`, de-duplicated, in replay order."""
    seen: dict[tuple[str, str, int], dict[str, Any]] = {}
    # No partition pruning: partitions are by event time, and events may be dated any time
    # before or after they arrived; only the arrival time decides.
    for kind in (EVENTS, ERRORS):
        for key in _keys(s3, bucket, f"{kind}/stream={stream}/"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            for line in decode_object(body):
                if line.get("stream") != stream or not bounds.holds(int(line["arrival_ms"])):
                    continue
                identity = (str(line["shard_id"]), str(line["sequence_number"]),
                            line_subsequence(line))
                seen.setdefault(identity, line)
    return sorted(seen.values(), key=cursor_of)


def _keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield str(obj["Key"])


def replay_bytes(line: Mapping[str, Any]) -> bytes:
    """What the replay stream receives for an archive line: the producer's exact bytes behind
    a header carrying their original arrival time."""
    return wrap_replayed(line_bytes(line), int(line["arrival_ms"]))


def requests(lines: Sequence[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Consecutive runs of `lines`, each at most one record per partition key and within the
    PutRecords limits."""
    batch: list[Mapping[str, Any]] = []
    keys: set[str] = set()
    size = 0
    for line in lines:
        key = str(line["partition_key"])
        record_size = len(replay_bytes(line)) + len(key.encode())
        if record_size > MAX_RECORD_BYTES:
            # The live stream took it, so the producer's bytes were within the limit: only
            # the header can push a record over (by at most 35 bytes).
            raise ValueError(
                f"archived record {line.get('stream')}/{line.get('shard_id')}/"
                f"{line.get('sequence_number')}{_sub_text(line)} is {record_size} bytes "
                f"with its replay header; Kinesis takes {MAX_RECORD_BYTES}: it cannot be "
                f"republished")
        if batch and (key in keys or len(batch) == MAX_REQUEST_RECORDS
                      or size + record_size > MAX_REQUEST_BYTES):
            yield batch
            batch, keys, size = [], set(), 0
        batch.append(line)
        keys.add(key)
        size += record_size
    if batch:
        yield batch


def _sub_text(line: Mapping[str, Any]) -> str:
    sub = line.get("subsequence_number")
    return "" if sub is None else f":{sub}"


def put_in_order(kinesis: Any, stream: str, batch: Sequence[Mapping[str, Any]],
                 *, attempts: int = 8, sleep: Callable[[float], None] = time.sleep) -> None:
    """Store every record of `batch` (retrying throttled entries) or raise."""
    pending = list(batch)
    for attempt in range(attempts):
        response = kinesis.put_records(StreamName=stream, Records=[
            {"Data": replay_bytes(line), "PartitionKey": str(line["partition_key"])}
            for line in pending
        ])
        failed = [line for line, result in zip(pending, response["Records"], strict=True)
                  if result.get("ErrorCode")]
        if not failed:
            return
        codes = {r.get("ErrorCode") for r in response["Records"] if r.get("ErrorCode")}
        if not codes <= _RETRYABLE:
            raise RuntimeError(f"PutRecords to {stream} refused records: {sorted(codes)}")
        pending = failed
        sleep(min(2.0, 0.05 * 2 ** attempt))
    raise RuntimeError(f"PutRecords to {stream}: {len(pending)} records still throttled after "
                       f"{attempts} attempts")


@dataclass
class RepublishState:
    """Per origin stream, the cursor of the last record published (None: nothing yet)."""

    cursors: dict[str, Cursor | None] = field(default_factory=dict)
    published: int = 0
    done: bool = False

    def to_json(self) -> str:
        return json.dumps({"cursors": {k: list(v) if v else None
                                       for k, v in self.cursors.items()},
                           "published": self.published, "done": self.done})

    @classmethod
    def from_json(cls, text: str | None) -> RepublishState:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(cursors={k: parse_cursor(v) if v else None
                            for k, v in raw.get("cursors", {}).items()},
                   published=int(raw.get("published", 0)), done=bool(raw.get("done")))


def republish(
    *,
    s3: Any,
    kinesis: Any,
    archive_bucket: str,
    targets: Mapping[str, str],
    bounds: Bounds,
    state: RepublishState,
    save: Callable[[RepublishState], None],
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RepublishState:
    """Publish what is left of the archived history of the streams in `targets` (declared
    origin stream -> replay stream) after the state's cursors; `save` after every request.

    The streams are merged in arrival order and published run by run (a run: consecutive
    records of one stream), with the clock moving on between runs, so the replay streams'
    own arrival times keep the original order across streams too. A replay that follows
    arrival order (a customer registered before a payment) reads the original arrival times
    the records carry; the replay streams' own order is a second line of defence for a
    reader that does not."""
    merged: list[tuple[Cursor, str, dict[str, Any]]] = []
    for stream in targets:
        cursor = state.cursors.get(stream)
        merged.extend((cursor_of(line), stream, line)
                      for line in archived_lines(s3, archive_bucket, stream, bounds)
                      if cursor is None or cursor_of(line) > cursor)
    merged.sort(key=lambda entry: (entry[0], list(targets).index(entry[1])))
    previous: str | None = None
    for stream, run in _runs(merged):
        if previous is not None and stream != previous:
            sleep(RUN_GAP_S)
        previous = stream
        for batch in requests(run):
            if should_stop():
                save(state)
                return state
            put_in_order(kinesis, targets[stream], batch)
            state.cursors[stream] = cursor_of(batch[-1])
            state.published += len(batch)
            save(state)
            if on_progress:
                on_progress(len(batch))
    state.done = True
    save(state)
    return state


RUN_GAP_S = 0.005
"""Between runs of different streams: later than the last arrival time of the run before,
even at Kinesis' millisecond resolution."""


def _runs(merged: Sequence[tuple[Cursor, str, dict[str, Any]]]
          ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    run: list[dict[str, Any]] = []
    stream: str | None = None
    for _, name, line in merged:
        if stream is not None and name != stream:
            yield stream, run
            run = []
        stream = name
        run.append(line)
    if stream is not None and run:
        yield stream, run


# --- Lambda entry point (AWS: invoked by the replay state machine until done) -----------------


def _time(name: str, value: str | None) -> int | None:
    if not value:
        return None
    parsed = parse_time(value, name)
    if not isinstance(parsed, datetime):
        raise ValueError(parsed.reason)
    return epoch_ms(parsed)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _open_record(dynamodb: Any, table: str, version: str, since: str | None,
                 until: str | None) -> dict[str, Any]:
    """The version's registry record, created on the first invocation (the same attributes
    `cascata versions` reads; `until` fixed now when not given, so later invocations stop at
    the same place)."""
    key = {KEY: {"S": version}}
    item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    if item:
        return dict(item)
    now = _now_iso()
    fresh = {
        KEY: {"S": version}, "state": {"S": "building"}, "replay_from": {"S": "archive"},
        "until": {"S": until or now}, "config": {"S": "{}"}, "created_at": {"S": now},
        "updated_at": {"S": now}, "records": {"N": "0"}, "checkpoints": {"S": "{}"},
        "clock_ms": {"N": "0"}, "runs": {"N": "0"},
    }
    if since:
        fresh["since"] = {"S": since}
    # A concurrent first invocation may have created it: then that record stands.
    with contextlib.suppress(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.put_item(TableName=table, Item=fresh,
                          ConditionExpression="attribute_not_exists(#k)",
                          ExpressionAttributeNames={"#k": KEY})
    return dict(dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"])


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Republish for the time this invocation has, then report `{"done", "published"}`.

    The state machine invokes it until `done`; the version's registry record holds the
    cursor between invocations and is marked ready (promotable) when everything is published.
    The version's processors consume the replay streams meanwhile: their iterator age on the
    version's dashboard tells when they have caught up.
    """
    import boto3

    env = os.environ
    version = env["REPLAY_VERSION"]
    table = env["VERSIONS_TABLE"]
    targets = json.loads(env["REPLAY_STREAMS"])
    dynamodb = boto3.client("dynamodb")
    item = _open_record(dynamodb, table, version, env.get("REPLAY_SINCE") or None,
                        env.get("REPLAY_UNTIL") or None)
    bounds = Bounds(_time("REPLAY_SINCE", item.get("since", {}).get("S")),
                    _time("REPLAY_UNTIL", item["until"]["S"]))
    state = RepublishState.from_json(item.get("republish", {}).get("S"))
    if state.done:
        return {"done": True, "published": 0}
    before = state.published

    def save(current: RepublishState) -> None:
        names = {"#s": "state"}
        values = {":r": {"S": current.to_json()}, ":t": {"S": _now_iso()},
                  ":n": {"N": str(current.published)}}
        update = "SET republish = :r, updated_at = :t, records = :n"
        if current.done:
            update += ", #s = :ready, completed_at = :t"
            values[":ready"] = {"S": "ready"}
        extra = {"ExpressionAttributeNames": names} if current.done else {}
        dynamodb.update_item(TableName=table, Key={KEY: {"S": version}},
                             UpdateExpression=update, ExpressionAttributeValues=values, **extra)

    remaining = getattr(context, "get_remaining_time_in_millis", lambda: 900_000)
    final = republish(
        s3=boto3.client("s3"), kinesis=boto3.client("kinesis"),
        archive_bucket=env["ARCHIVE_BUCKET"], targets=targets, bounds=bounds, state=state,
        save=save, should_stop=lambda: remaining() < 120_000,
    )
    return {"done": final.done, "published": final.published - before}
