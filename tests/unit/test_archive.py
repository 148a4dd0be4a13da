"""The archive layout, the Firehose transformation and the republish order."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascata_runtime.archive import (
    RawRecord,
    archive_entry,
    decode_object,
    declared_stream,
    encode_object,
    firehose_transform,
    line_bytes,
    object_key,
)
from cascata_runtime.republish import (
    Bounds,
    RepublishState,
    cursor_of,
    put_in_order,
    requests,
)


def raw(data: bytes, *, arrival_ms: int = 1_764_064_800_000, seq: str = "42") -> RawRecord:
    return RawRecord("payments-raw", "shardId-000000000001", seq, "alice", arrival_ms, data)


EVENT = json.dumps({"event_id": "e1", "type": "payment.made", "version": 1, "key": "alice",
                    "occurred_at": "2026-11-02T09:15:00.123Z", "data": {}}).encode()


def test_an_event_is_partitioned_by_its_event_date_and_hour_and_keeps_its_bytes() -> None:
    entry = archive_entry(raw(EVENT))
    assert entry.partition.prefix == "events/stream=payments-raw/date=2026-11-02/hour=09/"
    assert entry.line["event_id"] == "e1" and entry.line["type"] == "payment.made"
    assert entry.line["shard_id"] == "shardId-000000000001"
    assert entry.line["sequence_number"] == "42"
    assert line_bytes(entry.line) == EVENT


@pytest.mark.parametrize(("data", "code"), [
    (b"not json", "not_json"),
    (b"[1, 2]", "not_object"),
    (b'{"occurred_at": "yesterday"}', "invalid_time"),
    (b'{"event_id": "x"}', "invalid_time"),
    (b"\xff\xfe", "not_utf8"),
])
def test_anything_else_goes_to_errors_by_arrival_time_with_the_reason(data: bytes,
                                                                      code: str) -> None:
    entry = archive_entry(raw(data, arrival_ms=1_764_064_800_000))  # 2025-11-25T10:00Z
    assert entry.partition.prefix == "errors/stream=payments-raw/date=2025-11-25/hour=10/"
    assert entry.line["error"]["code"] == code
    assert line_bytes(entry.line) == data


@given(st.binary(max_size=300))
def test_no_bytes_are_lost_or_changed(data: bytes) -> None:
    entry = archive_entry(raw(data))
    [line] = list(decode_object(encode_object([entry])))
    assert line_bytes(line) == data


def test_object_names_are_deterministic_so_a_retried_batch_overwrites() -> None:
    entry = archive_entry(raw(EVENT))
    assert object_key(entry.partition, "shardId-1", "10", "20") == object_key(
        entry.partition, "shardId-1", "10", "20")
    assert encode_object([entry]) == encode_object([entry])


def test_the_firehose_transformation_returns_partition_keys_and_never_fails() -> None:
    event = {
        "sourceKinesisStreamArn": "arn:aws:kinesis:eu-west-1:1:stream/cascata-prod-payments-raw",
        "records": [
            {"recordId": "1", "data": base64.b64encode(EVENT).decode(),
             "approximateArrivalTimestamp": 1_764_064_800_000,
             "kinesisRecordMetadata": {"shardId": "shardId-000000000000", "partitionKey": "alice",
                                       "sequenceNumber": "495", "approximateArrivalTimestamp":
                                       1_764_064_800_000}},
            {"recordId": "2", "data": base64.b64encode(b"junk").decode(),
             "approximateArrivalTimestamp": 1_764_064_800_000},
        ],
    }
    result = firehose_transform(event, stage="prod")
    first, second = result["records"]
    assert first["result"] == second["result"] == "Ok"
    assert first["metadata"]["partitionKeys"] == {
        "kind": "events", "stream": "payments-raw", "date": "2026-11-02", "hour": "09"}
    line = json.loads(base64.b64decode(first["data"]))
    assert line["sequence_number"] == "495" and line_bytes(line) == EVENT
    assert second["metadata"]["partitionKeys"]["kind"] == "errors"
    with pytest.raises(ValueError):
        firehose_transform({"no": "records"})


def test_declared_stream_names_are_recovered_from_physical_ones() -> None:
    assert declared_stream("cascata-dev-customers", app="cascata", stage="dev") == "customers"
    assert declared_stream("other", app="cascata", stage="dev") == "other"


def line(key: str, arrival: int, seq: int, size: int = 10) -> dict[str, Any]:
    return {"stream": "payments-raw", "shard_id": "s", "sequence_number": str(seq),
            "partition_key": key, "arrival_ms": arrival, "data": "x" * size}


def test_a_request_never_holds_one_key_twice_and_keeps_the_order() -> None:
    lines = [line(k, i, i) for i, k in enumerate("aabcaab")]
    batches = list(requests(lines))
    assert [b for batch in batches for b in batch] == lines
    for batch in batches:
        keys = [b["partition_key"] for b in batch]
        assert len(keys) == len(set(keys))


def test_requests_respect_the_put_records_limits() -> None:
    lines = [line(f"k{i}", i, i) for i in range(1200)]
    assert [len(b) for b in requests(lines)] == [500, 500, 200]
    big = [line(f"k{i}", i, i, size=1_000_000) for i in range(9)]
    assert all(sum(len(b["data"]) for b in batch) <= 4 * 1024 * 1024
               for batch in requests(big))


class FlakyKinesis:
    def __init__(self, failures: list[set[int]], code: str = "ProvisionedThroughputExceededException"
                 ) -> None:
        self.failures = failures
        self.code = code
        self.stored: list[bytes] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        fail = self.failures.pop(0) if self.failures else set()
        out = []
        for i, record in enumerate(Records):
            if i in fail:
                out.append({"ErrorCode": self.code, "ErrorMessage": "slow down"})
            else:
                self.stored.append(record["Data"])
                out.append({"SequenceNumber": "1", "ShardId": "s"})
        return {"Records": out, "FailedRecordCount": len(fail)}


def test_throttled_entries_are_retried_until_stored() -> None:
    kinesis = FlakyKinesis([{0, 2}, {1}])
    batch = [line(k, i, i) for i, k in enumerate("abc")]
    put_in_order(kinesis, "s", batch, sleep=lambda s: None)
    assert sorted(kinesis.stored) == sorted(line_bytes(b) for b in batch)


def test_a_refused_entry_is_an_error_not_a_silent_loss() -> None:
    kinesis = FlakyKinesis([{0}], code="ValidationException")
    with pytest.raises(RuntimeError, match="refused"):
        put_in_order(kinesis, "s", [line("a", 1, 1)], sleep=lambda s: None)


def test_the_republish_state_survives_a_round_trip() -> None:
    state = RepublishState(cursors={"payments-raw": cursor_of(line("a", 5, 9)),
                                    "customers": None}, published=3)
    again = RepublishState.from_json(state.to_json())
    assert again == state and RepublishState.from_json(None) == RepublishState()


def test_bounds_are_half_open() -> None:
    bounds = Bounds(since_ms=10, until_ms=20)
    assert [bounds.holds(t) for t in (9, 10, 19, 20)] == [False, True, True, False]
