"""KPL aggregated records: several user records packed into one Kinesis record.

The Kinesis Producer Library (and the aws-kinesis-agg libraries) may pack many small user
records into one Kinesis record: the 4 magic bytes `F3 89 9A C2`, a protobuf message, and the
16-byte MD5 digest of the protobuf bytes (the format is `aggregation-format.md` of
awslabs/amazon-kinesis-producer):

    message AggregatedRecord {
      repeated string partition_key_table     = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records                 = 3;
    }
    message Record {
      required uint64 partition_key_index     = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes  data                    = 3;
      repeated Tag    tags                    = 4;
    }
    message Tag { required string key = 1; optional string value = 2; }

`deaggregate` reads it with a small, strict reader of the protobuf wire format (the Lambda
asset carries no protobuf library): no recursion (a record is read inside its parent's byte
range, tags are skipped whole), every length checked against the bytes left, at most
`MAX_RECORDS` user records. It never raises on bad bytes: whatever is wrong (a digest that does
not match, a truncated or overlong field, a key index outside its table) comes back as a
`Malformed` naming it, so the caller can quarantine the aggregate, bytes intact. No valid event
is ever taken for an aggregate: the magic bytes cannot begin UTF-8 text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_BYTES = 16
MAX_RECORDS = 100_000
"""User records one aggregate may hold. A 10 MiB Kinesis record holds at most about 100,000
events of the smallest envelope (about 100 bytes); more is not a batch of events."""
_MAX_VARINT_BYTES = 10
_U64 = 1 << 64

# Wire types of the protobuf encoding. Groups (3, 4) are long deprecated and never written by
# an aggregator: they are refused, not skipped.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One record a producer put, as it was before aggregation."""

    partition_key: str
    data: bytes
    explicit_hash_key: str | None = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """Why bytes starting with the magic are not an aggregate that can be taken apart."""

    reason: str


class _Bad(Exception):
    """Raised inside the reader only; `deaggregate` turns it into `Malformed`."""


def is_aggregated(data: bytes) -> bool:
    return data.startswith(MAGIC)


def deaggregate(data: bytes) -> list[UserRecord] | Malformed:
    """The user records of an aggregated record, in order, or why it cannot be read."""
    if not is_aggregated(data):
        return Malformed("it does not start with the KPL magic bytes F3 89 9A C2")
    if len(data) < len(MAGIC) + DIGEST_BYTES:
        return Malformed(f"it is {len(data)} bytes, too short for the magic bytes and the "
                         f"{DIGEST_BYTES}-byte MD5 digest")
    message = data[len(MAGIC):-DIGEST_BYTES]
    digest = data[-DIGEST_BYTES:]
    if hashlib.md5(message, usedforsecurity=False).digest() != digest:
        return Malformed("its MD5 digest does not match its protobuf message")
    try:
        records = _aggregated_record(message)
    except _Bad as exc:
        return Malformed(str(exc))
    if not records:
        return Malformed("it holds no user records")
    return records


def _aggregated_record(message: bytes) -> list[UserRecord]:
    keys: list[str] = []
    hash_keys: list[str] = []
    spans: list[tuple[int, int]] = []
    reader = _Reader(message, 0, len(message))
    while not reader.done():
        field, wire = reader.tag()
        if field in (1, 2, 3):
            start, end = reader.bytes_span(field, wire, "AggregatedRecord")
            if field == 1:
                keys.append(_text(message[start:end], "a partition key"))
            elif field == 2:
                hash_keys.append(_text(message[start:end], "an explicit hash key"))
            else:
                if len(spans) == MAX_RECORDS:
                    raise _Bad(f"it holds more than {MAX_RECORDS} user records")
                spans.append((start, end))
        else:
            reader.skip(field, wire)
    # Fields may come in any order: records are read once both key tables are known.
    return [_record(message, start, end, index, keys, hash_keys)
            for index, (start, end) in enumerate(spans)]


def _record(message: bytes, start: int, end: int, index: int, keys: list[str],
            hash_keys: list[str]) -> UserRecord:
    reader = _Reader(message, start, end)
    key_index: int | None = None
    hash_index: int | None = None
    data: bytes | None = None
    while not reader.done():
        field, wire = reader.tag()
        if field in (1, 2):
            if wire != _VARINT:
                raise _Bad(f"user record {index}: field {field} has wire type {wire}, "
                           f"not a varint")
            value = reader.varint()
            if field == 1:
                key_index = value
            else:
                hash_index = value
        elif field == 3:
            data_start, data_end = reader.bytes_span(field, wire, f"user record {index}")
            data = message[data_start:data_end]
        else:
            reader.skip(field, wire)  # tags (4) and any field a later format adds
    if key_index is None:
        raise _Bad(f"user record {index} has no partition_key_index")
    if data is None:
        raise _Bad(f"user record {index} has no data")
    if key_index >= len(keys):
        raise _Bad(f"user record {index}: partition key index {key_index} is outside the "
                   f"table of {len(keys)} partition keys")
    hash_key = None
    if hash_index is not None:
        if hash_index >= len(hash_keys):
            raise _Bad(f"user record {index}: explicit hash key index {hash_index} is outside "
                       f"the table of {len(hash_keys)} explicit hash keys")
        hash_key = hash_keys[hash_index]
    return UserRecord(keys[key_index], data, hash_key)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"{what} is not UTF-8: {exc.reason}") from None


class _Reader:
    """Reads protobuf wire format from `data[pos:end]`, never past `end`."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self._data = data
        self._pos = pos
        self._end = end

    def done(self) -> bool:
        return self._pos >= self._end

    def varint(self) -> int:
        value = 0
        for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
            if self._pos >= self._end:
                raise _Bad(f"a varint is truncated at byte {self._pos}")
            byte = self._data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value >= _U64:
                    raise _Bad(f"a varint ending at byte {self._pos} overflows 64 bits")
                return value
        raise _Bad(f"a varint ending at byte {self._pos} is longer than "
                   f"{_MAX_VARINT_BYTES} bytes")

    def tag(self) -> tuple[int, int]:
        at = self._pos
        key = self.varint()
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Bad(f"field number 0 at byte {at}")
        if wire not in (_VARINT, _FIXED64, _BYTES, _FIXED32):
            raise _Bad(f"field {field} at byte {at} has wire type {wire}, which no aggregate "
                       f"uses")
        return field, wire

    def bytes_span(self, field: int, wire: int, where: str) -> tuple[int, int]:
        """The byte range of a length-delimited field's value."""
        if wire != _BYTES:
            raise _Bad(f"{where}: field {field} has wire type {wire}, not length-delimited")
        length = self.varint()
        start = self._pos
        if length > self._end - start:
            raise _Bad(f"{where}: field {field} at byte {start} claims {length} bytes, "
                       f"{self._end - start} are left")
        self._pos = start + length
        return start, self._pos

    def skip(self, field: int, wire: int) -> None:
        if wire == _VARINT:
            self.varint()
            return
        if wire == _BYTES:
            self.bytes_span(field, wire, "a skipped field")
            return
        size = 8 if wire == _FIXED64 else 4
        if size > self._end - self._pos:
            raise _Bad(f"a fixed-size field at byte {self._pos} is truncated")
        self._pos += size
