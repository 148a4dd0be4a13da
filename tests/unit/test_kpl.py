"""The KPL aggregate reader (`cascata_runtime.kpl`): the format's records come back exactly,
and anything else comes back as `Malformed` with the reason, never as an exception."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascata_runtime import kpl
from cascata_runtime.kpl import Malformed, UserRecord, deaggregate
from tests.support.kpl import (
    MAGIC,
    aggregate,
    key,
    length_delimited,
    message,
    sealed,
    user_record,
    varint,
    varint_field,
)


def reason(result: object) -> str:
    assert isinstance(result, Malformed), result
    return result.reason


def test_three_records_come_back_in_order_with_their_own_keys() -> None:
    blob = aggregate([("alice", b'{"n":1}'), ("bob", b'{"n":2}'), ("alice", b'{"n":3}')])
    assert deaggregate(blob) == [UserRecord("alice", b'{"n":1}'), UserRecord("bob", b'{"n":2}'),
                                 UserRecord("alice", b'{"n":3}')]


def test_explicit_hash_keys_and_tags_are_read_and_skipped() -> None:
    body = (length_delimited(1, b"k") + length_delimited(2, b"1234")
            + length_delimited(3, user_record(0, b"x", hash_key_index=0,
                                              tags=[("a", "b"), ("c", None)])))
    assert deaggregate(sealed(body)) == [UserRecord("k", b"x", "1234")]


def test_fields_in_any_order_and_unknown_fields_of_every_wire_type_are_skipped() -> None:
    # Records before the key table, and fields 9 (varint), 10 (fixed64), 11 (bytes),
    # 12 (fixed32) at both levels: a later format may add fields
    unknown = (varint_field(9, 300) + key(10, 1) + b"\x00" * 8 + length_delimited(11, b"zz")
               + key(12, 5) + b"\x00" * 4)
    body = (length_delimited(3, unknown + user_record(1, b"second-key"))
            + unknown + length_delimited(1, b"a") + length_delimited(1, b"b"))
    assert deaggregate(sealed(body)) == [UserRecord("b", b"second-key")]


def test_an_empty_data_field_is_a_record() -> None:
    assert deaggregate(aggregate([("k", b"")])) == [UserRecord("k", b"")]


MALFORMED = [
    (MAGIC + b"\x00" * 15, "too short"),
    (aggregate([("k", b"x")])[:-1] + b"\x00", "MD5 digest does not match"),
    (sealed(b""), "holds no user records"),
    (sealed(length_delimited(1, b"k")), "holds no user records"),
    # truncated: the record claims more bytes than are left
    (sealed(message([("k", b"abcdef")])[:-3]), "claims"),
    # a varint that never ends
    (sealed(length_delimited(1, b"k") + b"\x1a\xff\xff"), "truncated"),
    # 2**64 does not fit a uint64; eleven bytes is no varint
    (sealed(length_delimited(1, b"k") + length_delimited(3, key(1, 0) + varint(2**64)
                                                          + length_delimited(3, b"x"))),
     "overflows 64 bits"),
    (sealed(key(9, 0) + b"\x80" * 10 + b"\x00"), "longer than 10 bytes"),
    (sealed(length_delimited(1, b"k") + length_delimited(3, user_record(1, b"x"))),
     "partition key index 1 is outside the table of 1"),
    (sealed(length_delimited(1, b"k") + length_delimited(3, user_record(0, b"x",
                                                                        hash_key_index=0))),
     "explicit hash key index 0 is outside the table of 0"),
    (sealed(length_delimited(1, b"k") + length_delimited(3, length_delimited(3, b"x"))),
     "no partition_key_index"),
    (sealed(length_delimited(1, b"k") + length_delimited(3, varint_field(1, 0))),
     "has no data"),
    (sealed(length_delimited(1, b"\xff") + length_delimited(3, user_record(0, b"x"))),
     "partition key is not UTF-8"),
    (sealed(varint_field(3, 1)), "not length-delimited"),
    (sealed(length_delimited(1, b"k") + length_delimited(3, length_delimited(1, b"0")
                                                          + length_delimited(3, b"x"))),
     "not a varint"),
    (sealed(key(5, 3) + key(5, 4)), "wire type 3"),
    (sealed(key(0, 0) + b"\x00"), "field number 0"),
    (sealed(key(12, 5) + b"\x00"), "fixed-size field"),
]


@pytest.mark.parametrize(("blob", "expected"), MALFORMED, ids=[e for _, e in MALFORMED])
def test_a_malformed_aggregate_says_what_is_wrong(blob: bytes, expected: str) -> None:
    assert expected in reason(deaggregate(blob))


def test_more_records_than_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kpl, "MAX_RECORDS", 3)
    assert deaggregate(aggregate([("k", b"x")] * 3)) == [UserRecord("k", b"x")] * 3
    assert "more than 3 user records" in reason(deaggregate(aggregate([("k", b"x")] * 4)))


def test_bytes_without_the_magic_are_not_an_aggregate() -> None:
    assert not kpl.is_aggregated(b'{"event_id":"e1"}')
    assert "magic" in reason(deaggregate(b'{"event_id":"e1"}'))


def test_no_utf8_text_starts_with_the_magic() -> None:
    # Why the magic alone may decide: no JSON event can be taken for an aggregate
    with pytest.raises(UnicodeDecodeError):
        (MAGIC + b"{}").decode("utf-8")


records_strategy = st.lists(
    st.tuples(st.text(max_size=20), st.binary(max_size=64),
              st.none() | st.text(alphabet="0123456789", min_size=1, max_size=39)),
    min_size=1, max_size=30,
)


@given(records_strategy)
@settings(max_examples=200, deadline=None)
def test_round_trip(records: list[tuple[str, bytes, str | None]]) -> None:
    shaped = [(k, d) if h is None else (k, d, h) for k, d, h in records]
    assert deaggregate(aggregate(shaped)) == [UserRecord(k, d, h) for k, d, h in records]


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_after_the_magic_never_raise(tail: bytes) -> None:
    result = deaggregate(MAGIC + tail)
    assert isinstance(result, Malformed | list)


@given(st.binary(max_size=300))
@settings(max_examples=1000, deadline=None)
def test_an_arbitrary_message_behind_a_correct_digest_never_raises(protobuf: bytes) -> None:
    result = deaggregate(MAGIC + protobuf + hashlib.md5(protobuf).digest())
    if isinstance(result, list):
        assert result and all(isinstance(r, UserRecord) for r in result)
    else:
        assert result.reason


@given(records_strategy, st.data())
@settings(max_examples=300, deadline=None)
def test_a_valid_message_cut_or_corrupted_anywhere_never_raises(
    records: list[tuple[str, bytes, str | None]], data: st.DataObject
) -> None:
    protobuf = message([(k, d) for k, d, _ in records])
    cut = data.draw(st.integers(0, len(protobuf)))
    flip = data.draw(st.integers(0, max(0, cut - 1)))
    broken = bytearray(protobuf[:cut])
    if broken:
        broken[flip] ^= data.draw(st.integers(1, 255))
    result = deaggregate(sealed(bytes(broken)))
    assert isinstance(result, Malformed | list)
