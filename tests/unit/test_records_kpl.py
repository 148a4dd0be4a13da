"""Decoding KPL aggregates and undecodable records (`cascata_runtime.records`), and what every
place keyed by a position makes of user records sharing one sequence number: the quarantine
key, the origin gate's marker, the lineage and the fences."""

from __future__ import annotations

import base64
import json

from cascata_runtime.envelope import Envelope, Rejection, SourcePosition
from cascata_runtime.lineage import Fences, Lineage, Stamper, input_lineages, parse_lineage
from cascata_runtime.origin import OriginPolicy, marker_position
from cascata_runtime.quarantine import QuarantineEntry, quarantine_body, quarantine_key
from cascata_runtime.records import (
    KPL_MALFORMED,
    batch_response,
    decode_event,
    replayed_input,
    wrap_replayed,
)
from cascata_runtime.shell import Origins, parse_records, read_batch
from tests.support.events import kinesis_event, kinesis_record, msk_event, payment
from tests.support.kpl import aggregate_events, sealed

RAW = "cascata-test-payments-raw"
THREE = [payment("p1", payer="alice"), payment("p2", payer="bob"), payment("p3", payer="carol")]


def test_an_aggregate_becomes_one_record_per_user_record() -> None:
    # Given an aggregate of three payments at sequence 7, between two plain records
    event = kinesis_event([payment("before"), aggregate_events(THREE), payment("after")],
                          start=6)
    # When it is decoded
    records = decode_event(event)
    # Then each user record is its own record, at the aggregate's position plus its index
    assert [r.position for r in records] == [
        SourcePosition(RAW, "shardId-000000000000", "6"),
        *(SourcePosition(RAW, "shardId-000000000000", "7", n) for n in range(3)),
        SourcePosition(RAW, "shardId-000000000000", "8"),
    ]
    assert [r.partition_key for r in records[1:4]] == ["alice", "bob", "carol"]
    assert [json.loads(r.data)["event_id"] for r in records] == [
        "before", "p1", "p2", "p3", "after"]
    # And Lambda's identifier stays the Kinesis record's: a failure retries the aggregate
    assert [r.item_identifier for r in records] == ["6", "7", "7", "7", "8"]
    assert {r.arrival_epoch_s for r in records} == {1_593_094_000.0}
    assert all(r.decode_error is None for r in records)


def test_a_malformed_aggregate_is_one_record_refused_with_its_bytes() -> None:
    blob = aggregate_events(THREE)
    broken = blob[:-1] + bytes([blob[-1] ^ 1])
    [record] = decode_event(kinesis_event([broken]))
    assert record.data == broken
    assert record.position.subsequence is None
    assert record.error_code == KPL_MALFORMED
    assert record.decode_error is not None and "MD5 digest" in record.decode_error
    [rejection] = parse_records([record])
    assert isinstance(rejection, Rejection)
    assert (rejection.code, rejection.field) == (KPL_MALFORMED, "$")
    assert "cannot be taken apart" in rejection.reason


def test_invalid_base64_keeps_what_arrived() -> None:
    # Given a record whose data is not base64
    event = kinesis_event([payment("ok")])
    event["Records"][0]["kinesis"]["data"] = "not base64 ü!"
    [record] = decode_event(event)
    # Then its data is the text that arrived, with the reason
    assert record.data == "not base64 ü!".encode()
    assert record.decode_error is not None and "not valid base64" in record.decode_error
    [rejection] = parse_records([record])
    assert isinstance(rejection, Rejection) and rejection.code == "undecodable"
    # And the quarantine body carries it
    body = json.loads(quarantine_body("validate", QuarantineEntry(record, rejection)))
    assert base64.b64decode(body["data_base64"]) == "not base64 ü!".encode()
    assert body["data_text"] == "not base64 ü!"
    assert body["reason"]["code"] == "undecodable"


def test_a_kafka_value_with_invalid_base64_keeps_what_arrived() -> None:
    event = msk_event([payment("k1")])
    event["records"]["cascata-test-payments-raw-0"][0]["value"] = "%%%"
    [record] = decode_event(event)
    assert record.data == b"%%%" and record.decode_error is not None
    assert record.partition_key == "alice"


def test_kafka_records_are_never_taken_apart() -> None:
    [record] = decode_event(msk_event([aggregate_events(THREE)]))
    assert record.position.subsequence is None and record.data.startswith(b"\xf3")


def test_a_failed_aggregate_is_named_once_in_the_response() -> None:
    records = decode_event(kinesis_event([aggregate_events(THREE), payment("x")], start=3))
    assert batch_response([records[0], records[2], records[3]]) == {
        "batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "4"}]}
    kafka = decode_event(msk_event([payment("a"), payment("b")], start=5))
    assert batch_response(kafka) == {"batchItemFailures": [
        {"itemIdentifier": {"partition": f"{RAW}-0", "offset": 5}},
        {"itemIdentifier": {"partition": f"{RAW}-0", "offset": 6}}]}


def test_positions_without_a_subsequence_are_as_they_were() -> None:
    [plain] = decode_event(kinesis_event([payment("p")], start=12))
    assert plain.position.as_dict() == {"stream": RAW, "shard": "shardId-000000000000",
                                        "sequence": "12"}
    assert quarantine_key("validate", plain) == (
        f"quarantine/validate/2020/06/25/{RAW}/shardId-000000000000/00000000000000000012.json")
    assert marker_position(plain.position) == "shardId-000000000000:12"


def test_user_records_have_their_own_quarantine_objects_and_markers() -> None:
    records = decode_event(kinesis_event([aggregate_events(THREE)], start=12))
    keys = [quarantine_key("validate", r) for r in records]
    assert keys[1].endswith("/00000000000000000012-000001.json")
    assert len(set(keys)) == 3
    assert [marker_position(r.position) for r in records] == [
        f"shardId-000000000000:12:{n}" for n in range(3)]
    assert records[2].position.as_dict()["subsequence"] == "2"


class MemoryMarkers:
    def __init__(self) -> None:
        self.held: dict[str, str] = {}

    def claim(self, marker: str, position: str, expires_at: int, now: int) -> bool:
        return self.held.setdefault(marker, position) == position


def test_the_gate_tells_user_records_apart_and_suppresses_a_retried_aggregate() -> None:
    origins = Origins({RAW: OriginPolicy()}, MemoryMarkers())
    blob = aggregate_events([*THREE, payment("p1", payer="alice")])  # a copy inside it too
    first = read_batch(decode_event(kinesis_event([blob], start=1)), origins)
    assert [e.event_id if isinstance(e, Envelope) else e for e in first.events] == [
        "p1", "p2", "p3", None]
    # A redelivery of the aggregate claims its own markers again
    again = read_batch(decode_event(kinesis_event([blob], start=1)), origins)
    assert [e.event_id if isinstance(e, Envelope) else e for e in again.events] == [
        "p1", "p2", "p3", None]
    # The producer's retry of the whole aggregate, at a new sequence, is all copies
    retry = read_batch(decode_event(kinesis_event([blob], start=2)), origins)
    assert retry.events == [None] * 4 and retry.duplicates == 4


def test_lineages_of_user_records_are_distinct_facts_for_the_fences() -> None:
    # Given a consumer reading the origin stream: three user records of one aggregate, all
    # for the same item
    records = decode_event(kinesis_event([aggregate_events(THREE), payment("x")], start=40))
    lineages = input_lineages([r.position for r in records], [None] * 4, origins=[RAW])
    assert [lin.low_water for lin in lineages] == [40] * 4
    # Then the fences admit each once, and turn away a redelivery of any of them
    fences = Fences()
    assert [fences.admit(lin) for lin in lineages] == [True] * 4
    stored = Fences(fences.to_item())
    assert [stored.admit(lin) for lin in lineages] == [False] * 4
    # And the outputs derived from them (same part: same event id) stay distinct
    stamper = Stamper(lineages)
    outs = [stamper.stamp(i, "same-role-id") for i in range(3)]
    assert len({o.fence_part for o in outs}) == 3
    assert [parse_lineage(o.as_dict()) for o in outs] == outs


def test_lineage_without_a_subsequence_is_byte_identical() -> None:
    lineage = Lineage(SourcePosition(RAW, "shardId-000000000000", "7"), ("v/s",), 5, "abc")
    assert lineage.as_dict() == {
        "origin": {"stream": RAW, "shard": "shardId-000000000000", "sequence": "7"},
        "low_water": "5", "path": ["v/s"], "part": "abc"}
    assert lineage.fence_part == "abc"
    fences = Fences()
    fences.admit(lineage)
    fences.admit(Lineage(lineage.origin, ("v/s",), 5, ""))
    assert fences.to_item() == {lineage.chain: "5 2 2.abc"}


def test_a_forged_lineage_is_ignored_not_raised() -> None:
    origin = {"stream": RAW, "shard": "s", "sequence": "7"}
    for bad in ({**origin, "sequence": "²"}, {**origin, "subsequence": "-1"},
                {**origin, "subsequence": 3}, {**origin, "subsequence": "01"}):
        assert parse_lineage({"origin": bad, "low_water": "1"}) is None
    assert parse_lineage({"origin": origin, "low_water": "¹"}) is None


def test_an_aggregate_inside_a_replayed_record_is_refused_as_live_refused_it() -> None:
    blob = aggregate_events(THREE)
    broken = blob[:-1] + b"\x00"
    for inner, expected in ((broken, "MD5 digest"), (blob, "replay stream")):
        record = decode_event(kinesis_event([wrap_replayed(inner, 1_593_094_000_000)]))[0]
        refused = replayed_input(record)
        assert isinstance(refused, Rejection) and refused.code == KPL_MALFORMED
        assert expected in refused.reason


def test_an_aggregate_of_garbage_keeps_the_batch_going() -> None:
    event = {"Records": [kinesis_record(sealed(b"\x1a\xff"), sequence=1),
                         kinesis_record(payment("ok"), sequence=2)]}
    parsed = parse_records(decode_event(event))
    assert isinstance(parsed[0], Rejection) and parsed[0].code == KPL_MALFORMED
    assert isinstance(parsed[1], Envelope)
