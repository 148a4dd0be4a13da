"""The user records of KPL aggregates in the archive and in a replay from it.

Firehose de-aggregates before its transformation (and the local archiver reads through
`decode_event`), so the archive holds several user records at one sequence number, each with
its subsequence number. Every one of them must be republished, once, in order, and a republish
cursor saved before cursors had a subsequence must still resume.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from cascata_runtime.archive import (
    RawRecord,
    archive_entry,
    encode_object,
    firehose_transform,
    group_by_partition,
    line_bytes,
    line_subsequence,
    object_key,
    sort_key,
)
from cascata_runtime.envelope import Envelope
from cascata_runtime.origin import OriginPolicy
from cascata_runtime.records import Replayed, decode_event, unwrap_replayed
from cascata_runtime.republish import (
    Bounds,
    RepublishState,
    archived_lines,
    parse_cursor,
    replay_bytes,
    republish,
)
from cascata_runtime.shell import Origins, read_batch
from tests.support.events import kinesis_record, payment
from tests.support.fakes import MemoryMarkers

SHARD = "shardId-000000000000"
SEQUENCE = "49546986683135544286507457936321625675700192471156785154"
ARRIVAL_MS = 1_764_064_800_000
PAYMENTS = [payment(f"agg-{i}", payer=f"payer-{i}", payee="payee",
                    occurred_at="2025-11-25T09:59:00Z") for i in range(3)]


def user_record(index: int, *, sequence: str = SEQUENCE, arrival_ms: int = ARRIVAL_MS,
                sub: int | None = None) -> RawRecord:
    event = PAYMENTS[index]
    return RawRecord("payments-raw", SHARD, sequence, str(event["key"]), arrival_ms,
                     json.dumps(event).encode(), index if sub is None else sub)


def plain(event_id: str, sequence: str, arrival_ms: int = ARRIVAL_MS) -> RawRecord:
    event = payment(event_id, payer="plain", payee="payee", occurred_at="2025-11-25T09:59:00Z")
    return RawRecord("payments-raw", SHARD, sequence, "plain", arrival_ms,
                     json.dumps(event).encode())


# --- the line format -------------------------------------------------------------------------


def test_a_line_without_a_subsequence_is_byte_identical_to_the_format_before() -> None:
    # The line the archive wrote for this record before lines could carry a subsequence
    data = b'{"event_id":"e1","type":"payment.made","occurred_at":"2025-11-25T09:59:00Z"}'
    record = RawRecord("payments-raw", SHARD, "42", "alice", ARRIVAL_MS, data)
    assert archive_entry(record).encoded() == (
        b'{"arrival_ms":1764064800000,"data":"{\\"event_id\\":\\"e1\\",\\"type\\":'
        b'\\"payment.made\\",\\"occurred_at\\":\\"2025-11-25T09:59:00Z\\"}",'
        b'"event_id":"e1","occurred_at":"2025-11-25T09:59:00Z","partition_key":"alice",'
        b'"sequence_number":"42","shard_id":"shardId-000000000000","stream":"payments-raw",'
        b'"type":"payment.made"}\n')
    assert "subsequence_number" not in archive_entry(plain("p1", "42")).line


def test_a_user_record_of_an_aggregate_keeps_its_subsequence_number() -> None:
    line = archive_entry(user_record(2)).line
    assert line["subsequence_number"] == 2 and line["sequence_number"] == SEQUENCE
    assert line["partition_key"] == "payer-2" and line["event_id"] == "agg-2"
    assert line_subsequence(line) == 2
    assert line_subsequence(archive_entry(plain("p1", "42")).line) == 0
    # First in its aggregate is 0, not absent: it is still told apart from its siblings
    assert archive_entry(user_record(0)).line["subsequence_number"] == 0


def test_sort_key_orders_user_records_of_one_aggregate_by_subsequence() -> None:
    lines = [archive_entry(user_record(i)).line for i in (2, 0, 1)]
    later = archive_entry(plain("p1", str(int(SEQUENCE) + 1))).line
    ordered = sorted([later, *lines], key=sort_key)
    assert [line_subsequence(line) for line in ordered] == [0, 1, 2, 0]
    assert ordered[-1] is later


def firehose_event(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "invocationId": "i", "region": "eu-west-1",
        "deliveryStreamArn": "arn:aws:firehose:eu-west-1:1:deliverystream/archive",
        "sourceKinesisStreamArn": "arn:aws:kinesis:eu-west-1:1:stream/cascata-prod-payments-raw",
        "records": list(records),
    }


def firehose_record(n: int, data: bytes, metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {"recordId": str(n), "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": ARRIVAL_MS,
            "kinesisRecordMetadata": {"shardId": SHARD, "sequenceNumber": SEQUENCE,
                                      "approximateArrivalTimestamp": ARRIVAL_MS, **metadata}}


def transformed(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(base64.b64decode(r["data"]))
            for r in firehose_transform(event, stage="prod")["records"]]


def test_firehose_user_records_keep_the_subsequence_its_metadata_gives() -> None:
    # Given Firehose's transformation event for one aggregate of three payments, which Firehose
    # has de-aggregated: three records at one sequence number, subsequence 0, 1, 2
    event = firehose_event([
        firehose_record(i, json.dumps(p).encode(),
                        {"partitionKey": str(p["key"]), "subsequenceNumber": i})
        for i, p in enumerate(PAYMENTS)
    ])
    # Then each becomes its own line, told apart by its subsequence number
    lines = transformed(event)
    assert [line["subsequence_number"] for line in lines] == [0, 1, 2]
    assert {line["sequence_number"] for line in lines} == {SEQUENCE}
    assert [line["event_id"] for line in lines] == ["agg-0", "agg-1", "agg-2"]
    assert [line_bytes(line) for line in lines] == [json.dumps(p).encode() for p in PAYMENTS]


@pytest.mark.parametrize(("given", "kept"), [
    (3, 3), ("3", 3), (0, 0), ("0", 0),
    ("", None), (None, None), (-1, None), ("x", None), (True, None), (1.5, None),
])
def test_firehose_subsequence_numbers_as_numbers_or_text_and_only_when_present(
    given: object, kept: int | None,
) -> None:
    metadata: dict[str, Any] = {"partitionKey": "alice"}
    if given is not None:
        metadata["subsequenceNumber"] = given
    [line] = transformed(firehose_event([firehose_record(0, b"{}", metadata)]))
    assert line.get("subsequence_number") == kept
    assert ("subsequence_number" in line) == (kept is not None)


# --- republish: every user record once, in order, resumable ------------------------------------


class ArchiveBucket:
    """The two S3 calls the republisher makes, over objects kept in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def add(self, records: Sequence[RawRecord], *, name: str = "") -> None:
        for partition, entries in group_by_partition(archive_entry(r) for r in records).items():
            first, last = records[0].sequence_number, records[-1].sequence_number
            self.objects[object_key(partition, SHARD, first, last) + name] = \
                encode_object(entries)

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_objects_v2"
        bucket = self

        class Paginator:
            def paginate(self, *, Bucket: str, Prefix: str) -> Iterator[dict[str, Any]]:
                yield {"Contents": [{"Key": k} for k in sorted(bucket.objects)
                                    if k.startswith(Prefix)]}

        return Paginator()

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[Key])}


class RecordingKinesis:
    def __init__(self) -> None:
        self.stored: list[tuple[str, bytes]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.stored.extend((r["PartitionKey"], r["Data"]) for r in Records)
        return {"Records": [{"SequenceNumber": "1", "ShardId": SHARD} for _ in Records],
                "FailedRecordCount": 0}


def archive_with_an_aggregate() -> tuple[ArchiveBucket, list[RawRecord]]:
    """A plain record, an aggregate of three (archived twice: a retried batch), a plain one."""
    before = plain("p-before", str(int(SEQUENCE) - 1), ARRIVAL_MS - 1)
    users = [user_record(i) for i in range(3)]
    after = plain("p-after", str(int(SEQUENCE) + 1), ARRIVAL_MS + 1)
    bucket = ArchiveBucket()
    bucket.add([before, *users, after])
    bucket.add(users, name=".retried")
    return bucket, [before, *users, after]


def test_archived_lines_keep_every_user_record_once_in_order() -> None:
    bucket, records = archive_with_an_aggregate()
    lines = archived_lines(bucket, "archive", "payments-raw", Bounds())
    assert [line_bytes(line) for line in lines] == [r.data for r in records]
    assert [line.get("subsequence_number") for line in lines] == [None, 0, 1, 2, None]


def published(kinesis: RecordingKinesis) -> list[str]:
    """The event ids republished, in order (each record is a replayed record)."""
    out = []
    for _, data in kinesis.stored:
        inner = unwrap_replayed(data)
        assert isinstance(inner, Replayed), inner
        out.append(json.loads(inner.data)["event_id"])
    return out


def run(bucket: ArchiveBucket, state: RepublishState, *, stop_after: int | None = None
        ) -> tuple[RepublishState, RecordingKinesis]:
    kinesis = RecordingKinesis()
    saved: list[str] = []
    requests_made = [0]

    def save(current: RepublishState) -> None:
        saved.append(current.to_json())
        requests_made[0] += 1

    republish(
        s3=bucket, kinesis=kinesis, archive_bucket="archive",
        targets={"payments-raw": "payments-raw-v2"}, bounds=Bounds(), state=state, save=save,
        should_stop=lambda: stop_after is not None and requests_made[0] >= stop_after,
        sleep=lambda _s: None,
    )
    # What the registry holds is what the next run starts from
    return RepublishState.from_json(saved[-1]), kinesis


def test_a_replay_republishes_every_user_record_of_an_aggregate() -> None:
    bucket, _ = archive_with_an_aggregate()
    state, kinesis = run(bucket, RepublishState())
    assert state.done and state.published == 5
    assert published(kinesis) == ["p-before", "agg-0", "agg-1", "agg-2", "p-after"]
    # ... each under its own partition key, as the user record had it
    assert [key for key, _ in kinesis.stored] == ["plain", "payer-0", "payer-1", "payer-2",
                                                  "plain"]


def test_a_replay_stopped_inside_an_aggregate_resumes_after_its_last_published_record(
) -> None:
    # Given an aggregate whose user records share one partition key, so each goes in its own
    # request, and a republish that stops after two requests: inside the aggregate
    users = [replace(user_record(i), partition_key="payer") for i in range(3)]
    before = plain("p-before", str(int(SEQUENCE) - 1), ARRIVAL_MS - 1)
    after = plain("p-after", str(int(SEQUENCE) + 1), ARRIVAL_MS + 1)
    bucket = ArchiveBucket()
    bucket.add([before, *users, after])
    stopped, first = run(bucket, RepublishState(), stop_after=2)
    assert not stopped.done and published(first) == ["p-before", "agg-0", "agg-1"]
    assert stopped.cursors["payments-raw"] == (ARRIVAL_MS, SHARD, int(SEQUENCE), 1)
    # When it resumes from the state it saved
    final, second = run(bucket, stopped)
    # Then it goes on with the next user record, and nothing is published twice or lost
    assert final.done and final.published == 5
    assert published(second) == ["agg-2", "p-after"]


def test_a_cursor_saved_before_cursors_had_a_subsequence_still_resumes() -> None:
    # Given the registry's state of a replay in progress when this version was deployed: its
    # cursor is (arrival, shard, sequence), at the aggregate (that run published one line
    # there, the first, and would have skipped the rest)
    bucket, _ = archive_with_an_aggregate()
    stored = json.dumps({"cursors": {"payments-raw": [ARRIVAL_MS, SHARD, int(SEQUENCE)]},
                         "published": 2, "done": False})
    state = RepublishState.from_json(stored)
    assert state.cursors == {"payments-raw": (ARRIVAL_MS, SHARD, int(SEQUENCE), 0)}
    # When it resumes
    final, kinesis = run(bucket, state)
    # Then the aggregate's other user records are published, then what follows, and the
    # records before the cursor are not published again
    assert final.done and final.published == 2 + 3
    assert published(kinesis) == ["agg-1", "agg-2", "p-after"]
    # ... and what it saves is the four-part form
    assert json.loads(final.to_json())["cursors"]["payments-raw"] == [
        ARRIVAL_MS + 1, SHARD, int(SEQUENCE) + 1, 0]


def test_a_cursor_before_any_record_and_malformed_cursors() -> None:
    assert RepublishState.from_json(json.dumps(
        {"cursors": {"payments-raw": None}})).cursors == {"payments-raw": None}
    assert parse_cursor([1, "s", "7"]) == (1, "s", 7, 0)
    assert parse_cursor([1, "s", 7, 3]) == (1, "s", 7, 3)
    for bad in ([1, "s"], [1, "s", 7, 3, 4]):
        with pytest.raises(ValueError, match="3 or 4 parts"):
            parse_cursor(bad)


# --- a replayed user record is read as live read it -------------------------------------------


def test_replayed_user_records_are_each_an_event_with_its_own_marker() -> None:
    # Given the three user records of an aggregate, republished to a replay stream: three
    # plain records, each at its own replay-stream position
    lines = [archive_entry(user_record(i)).line for i in range(3)]
    stream = "cascata-test-payments-raw-v2"
    event = {"Records": [kinesis_record(replay_bytes(line), sequence=100 + n,
                                        partition_key=str(line["partition_key"]),
                                        stream=stream, arrival=1_796_000_000.0)
                         for n, line in enumerate(lines)]}
    markers = MemoryMarkers()
    # When the version's validate reads them (the stream declared a replay stream)
    batch = read_batch(decode_event(event),
                       Origins({stream: OriginPolicy(replayed=True)}, markers))
    # Then each is the user record's event, at its original arrival time, none a copy
    assert [e.event_id for e in batch.events if isinstance(e, Envelope)] == [
        "agg-0", "agg-1", "agg-2"]
    assert all(r.arrival_epoch_s == ARRIVAL_MS / 1000 for r in batch.records)
    assert [m for m, *_ in markers.claims] == [f"{stream}#agg-{i}" for i in range(3)]
    assert len({pos for _, pos, *_ in markers.claims}) == 3
