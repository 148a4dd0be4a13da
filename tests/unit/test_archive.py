"""The archive layout, the Firehose transformation, the republish order, and the replayed
records that carry their original arrival time (believed on replay streams only)."""

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
    declared_stream,
    decode_object,
    encode_object,
    firehose_transform,
    line_bytes,
    object_key,
)
from cascata_runtime.envelope import Envelope, Rejection
from cascata_runtime.origin import OriginPolicy, parse_origins
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import (
    Replayed,
    decode_event,
    unwrap_replayed,
    wrap_replayed,
)
from cascata_runtime.republish import (
    MAX_RECORD_BYTES,
    Bounds,
    RepublishState,
    cursor_of,
    put_in_order,
    replay_bytes,
    requests,
)
from cascata_runtime.shell import Effects, Origins, apply_effects, read_batch
from tests.support.events import kinesis_record, payment
from tests.support.fakes import MemoryMarkers, MemoryObjects


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
    named = firehose_transform(event, stream="customers")["records"][0]
    assert named["metadata"]["partitionKeys"]["stream"] == "customers"


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
    def __init__(self, failures: list[set[int]],
                 code: str = "ProvisionedThroughputExceededException") -> None:
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
    assert sorted(kinesis.stored) == sorted(replay_bytes(b) for b in batch)


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


def test_the_republish_lambda_works_in_invocations_and_marks_the_version_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    from moto import mock_aws

    from cascata.versions import Registry
    from cascata_runtime import republish as module
    from cascata_runtime.archive import group_by_partition

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="archive")
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName="raw-v2", ShardCount=1)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="versions", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "version", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "version",
                                                "AttributeType": "S"}])
        records = [raw(json.dumps({"occurred_at": "2026-11-02T09:00:00Z", "n": i}).encode(),
                       arrival_ms=1_764_064_800_000 + i, seq=str(100 + i)) for i in range(30)]
        for partition, entries in group_by_partition(archive_entry(r) for r in records).items():
            s3.put_object(Bucket="archive", Key=object_key(partition, "s", "100", "129"),
                          Body=encode_object(entries))
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("REPLAY_VERSION", "v2")
        monkeypatch.setenv("VERSIONS_TABLE", "versions")
        monkeypatch.setenv("ARCHIVE_BUCKET", "archive")
        monkeypatch.setenv("REPLAY_STREAMS", json.dumps({"payments-raw": "raw-v2"}))
        monkeypatch.setenv("REPLAY_UNTIL", "2030-01-01T00:00:00Z")

        class Context:
            def __init__(self, calls_left: int) -> None:
                self.calls = calls_left

            def get_remaining_time_in_millis(self) -> int:
                self.calls -= 1
                return 900_000 if self.calls >= 0 else 1_000

        # Time for two requests; one key throughout, so each request carries one record.
        first = module.handler({"version": "v2"}, Context(2))
        assert first == {"done": False, "published": 2}
        record = Registry(ddb, "versions").get("v2")
        assert record is not None and record.state == "building"
        second = module.handler({"version": "v2"}, Context(100))
        assert second == {"done": True, "published": 28}
        assert module.handler({"version": "v2"}, Context(100)) == {"done": True, "published": 0}
        record = Registry(ddb, "versions").get("v2")
        assert record is not None and record.state == "ready" and record.records == 30
        shard = kinesis.list_shards(StreamName="raw-v2")["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName="raw-v2", ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        stored = kinesis.get_records(ShardIterator=iterator)["Records"]
        # Each record is the producer's bytes, carrying the arrival time the archive kept
        carried = [unwrap_replayed(r["Data"]) for r in stored]
        assert carried == [Replayed(line_bytes(archive_entry(r).line), r.arrival_ms)
                           for r in records]


def test_a_record_nested_too_deeply_to_parse_is_archived_as_an_error() -> None:
    # Deeper than any supported Python parses (3.13 parses 5,000 levels; 3.11 does not).
    entry = archive_entry(raw(b"[" * 100_000 + b"]" * 100_000))
    assert entry.partition.kind == "errors" and entry.line["error"]["code"] == "too_deep"


# --- replayed records: the original arrival time, believed on replay streams only -------------

LIVE = "cascata-test-payments-raw"
REPLAY = "cascata-test-payments-raw-v2"
ORIGINAL_MS = 1_764_064_800_123  # 2025-11-25T10:00:00.123Z: when the live stream received it
REPUBLISHED_S = 1_796_000_000.0  # months later, when the republisher wrote it again


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=10**16 - 1))
def test_a_replayed_record_round_trips_the_exact_bytes_and_arrival(data: bytes,
                                                                   arrival_ms: int) -> None:
    wrapped = wrap_replayed(data, arrival_ms)
    assert unwrap_replayed(wrapped) == Replayed(data, arrival_ms)
    assert len(wrapped) - len(data) <= 35


def test_the_republisher_writes_the_archived_arrival_time_with_the_bytes() -> None:
    entry = archive_entry(raw(EVENT, arrival_ms=ORIGINAL_MS))
    assert unwrap_replayed(replay_bytes(entry.line)) == Replayed(EVENT, ORIGINAL_MS)


def test_a_record_too_large_with_its_header_is_an_error_not_a_silent_loss() -> None:
    huge = line("a", 1, 1, size=MAX_RECORD_BYTES - 5)
    with pytest.raises(ValueError, match="cannot be republished"):
        list(requests([huge]))


def read(data: bytes, *, stream: str, replayed: bool) -> tuple[Any, Any]:
    """One record delivered from `stream`, read by a processor whose declaration says whether
    `stream` is a replay stream: the batch, and the marker claims of its duplicate gate."""
    markers = MemoryMarkers()
    origins = Origins({stream: OriginPolicy(replayed=replayed)}, markers)
    event = {"Records": [kinesis_record(data, sequence=7, stream=stream,
                                        arrival=REPUBLISHED_S)]}
    return read_batch(decode_event(event), origins), markers


def test_on_a_replay_stream_the_record_is_read_as_live_read_it() -> None:
    # Given a payment republished from the archive into a replay stream
    event = json.dumps(payment("e1", occurred_at="2025-11-25T09:59:00Z")).encode()
    # When a processor told that the stream is a replay stream reads it
    batch, markers = read(wrap_replayed(event, ORIGINAL_MS), stream=REPLAY, replayed=True)
    # Then it sees the producer's bytes and their original arrival time
    [record] = batch.records
    assert record.data == event and record.arrival_epoch_s == ORIGINAL_MS / 1000
    assert record.position.stream == REPLAY and record.position.sequence == "7"
    [envelope] = batch.events
    assert isinstance(envelope, Envelope) and envelope.event_id == "e1"
    # ... and the dedupe horizon runs from the original arrival, not the republish
    [(marker, _, expires_at, now)] = markers.claims
    assert marker == f"{REPLAY}#e1" and now == ORIGINAL_MS // 1000
    assert expires_at == now + OriginPolicy().dedupe_horizon_s


def test_a_forged_replayed_record_on_a_live_stream_is_only_bytes() -> None:
    # Given a producer writing a replay header with an arrival time of its choosing
    event = json.dumps(payment("e1", occurred_at="2020-01-01T00:00:00Z")).encode()
    forged = wrap_replayed(event, 1_577_836_800_000)
    # When validate reads it from the live origin stream
    batch, markers = read(forged, stream=LIVE, replayed=False)
    # Then it is not an event, its arrival is the stream's, and the gate claims nothing
    [record] = batch.records
    assert record.data == forged and record.arrival_epoch_s == REPUBLISHED_S
    [rejection] = batch.events
    assert isinstance(rejection, Rejection) and rejection.code == "not_json"
    assert markers.claims == []


@pytest.mark.parametrize(("data", "why"), [
    (json.dumps(payment("e1")).encode(), "does not start with"),
    (b"CASCATA-REPLAY/1 \n{}", "no arrival time"),
    (b"CASCATA-REPLAY/1 -5\n{}", "no arrival time"),
    (b"CASCATA-REPLAY/1 0017\n{}", "no arrival time"),
    (b"CASCATA-REPLAY/1 12345678901234567890\n{}", "no arrival time"),
    (b"CASCATA-REPLAY/2 1764064800123\n{}", "does not start with"),
    (wrap_replayed(b"{}", int(REPUBLISHED_S * 1000) + 60_000), "after the record's own"),
])
def test_a_bad_record_on_a_replay_stream_is_quarantined_with_the_reason(data: bytes,
                                                                        why: str) -> None:
    # Given a record on a replay stream that carries no (believable) original arrival
    batch, markers = read(data, stream=REPLAY, replayed=True)
    # Then it is refused, not crashed on, and nothing is claimed for it
    [rejection] = batch.events
    assert isinstance(rejection, Rejection) and rejection.code == "not_replayed"
    assert why in rejection.reason and markers.claims == []
    # ... and the quarantine keeps exactly what was delivered, with the reason
    objects = MemoryObjects()
    report = apply_effects(batch.records, Effects(quarantined=((0, rejection),)), sink=None,
                           quarantine=QuarantineWriter(objects, bucket="q", processor="validate"),
                           batch=batch)
    assert report.failed == {} and len(report.quarantined) == 1
    [body] = [json.loads(b) for b in objects.objects.values()]
    assert body["reason"]["code"] == "not_replayed"
    assert base64.b64decode(body["data_base64"]) == data


def test_a_replayed_event_refused_downstream_is_quarantined_as_live_saw_it() -> None:
    event = b'{"event_id": "e1"}'
    batch, _ = read(wrap_replayed(event, ORIGINAL_MS), stream=REPLAY, replayed=True)
    [rejection] = batch.events
    assert isinstance(rejection, Rejection) and rejection.code != "not_replayed"
    objects = MemoryObjects()
    apply_effects(batch.records, Effects(quarantined=((0, rejection),)), sink=None,
                  quarantine=QuarantineWriter(objects, bucket="q", processor="validate"),
                  batch=batch)
    [(key, body)] = objects.objects.items()
    assert "/2025/11/25/" in key[1]
    assert base64.b64decode(json.loads(body)["data_base64"]) == event


def test_only_a_version_replaying_from_the_archive_declares_replay_streams() -> None:
    from cascata.pipeline import ORIGIN_STREAMS_ENV
    from payments.pipeline import PIPELINE

    def policies(pipeline: Any, processor: str) -> dict[str, OriginPolicy]:
        return parse_origins(pipeline.environment(processor, stage="dev")[ORIGIN_STREAMS_ENV])

    from_archive = PIPELINE.for_version("v2", replay_from="archive")
    assert {name: p.replayed for name, p in policies(from_archive, "validate").items()} == {
        "cascata-dev-payments-raw-v2": True}
    assert {name: p.replayed for name, p in policies(from_archive, "profiles").items()} == {
        "cascata-dev-customers-v2": True}
    for pipeline in (PIPELINE, PIPELINE.for_version("v2", replay_from="stream")):
        for processor in ("validate", "profiles"):
            assert not any(p.replayed for p in policies(pipeline, processor).values())
    # A replay stream is history already archived: a version archives nothing
    assert from_archive.archives == ()


def test_a_replayed_flag_that_is_not_a_boolean_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="replayed"):
        parse_origins(json.dumps({REPLAY: {"replayed": "yes"}}))
    assert OriginPolicy(replayed=True).as_dict()["replayed"] is True
    assert parse_origins(json.dumps({REPLAY: OriginPolicy(replayed=True).as_dict()})) == {
        REPLAY: OriginPolicy(replayed=True)}


def test_the_archive_keeps_a_replayed_record_on_a_live_stream_as_the_bytes_it_is() -> None:
    forged = wrap_replayed(EVENT, ORIGINAL_MS)
    entry = archive_entry(raw(forged, arrival_ms=1_764_064_900_000))
    assert entry.partition.kind == "errors" and entry.line["arrival_ms"] == 1_764_064_900_000
    assert line_bytes(entry.line) == forged


def test_the_local_replay_orders_and_clocks_a_replay_stream_by_the_carried_arrival() -> None:
    from cascata.local.esm_sources import SourceRecord
    from cascata.replay import carried_arrival

    def source(data: bytes) -> SourceRecord:
        return SourceRecord(position=1, partition_key="k", arrival=REPUBLISHED_S,
                            data=base64.b64encode(data).decode())

    assert carried_arrival(source(wrap_replayed(EVENT, ORIGINAL_MS))) == ORIGINAL_MS / 1000
    # One that carries none is released without moving the clock (the functions refuse it)
    assert carried_arrival(source(EVENT)) == 0.0
