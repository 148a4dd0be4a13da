"""A small KPL aggregator for tests: the bytes the KPL or aws-kinesis-agg would put.

Written from the format (magic, protobuf `AggregatedRecord`, MD5 of the protobuf bytes), not
from the runtime's reader, so the two check each other. The helpers below also build the
broken variants tests need: raw protobuf fields, any message behind a correct digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

MAGIC = b"\xf3\x89\x9a\xc2"


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def length_delimited(field: int, payload: bytes) -> bytes:
    return key(field, 2) + varint(len(payload)) + payload


def varint_field(field: int, value: int) -> bytes:
    return key(field, 0) + varint(value)


def user_record(key_index: int, data: bytes, *, hash_key_index: int | None = None,
                tags: Sequence[tuple[str, str | None]] = ()) -> bytes:
    out = varint_field(1, key_index)
    if hash_key_index is not None:
        out += varint_field(2, hash_key_index)
    out += length_delimited(3, data)
    for tag_key, tag_value in tags:
        tag = length_delimited(1, tag_key.encode())
        if tag_value is not None:
            tag += length_delimited(2, tag_value.encode())
        out += length_delimited(4, tag)
    return out


def message(records: Sequence[tuple[str, bytes] | tuple[str, bytes, str]]) -> bytes:
    """The protobuf `AggregatedRecord` of (partition key, data[, explicit hash key]) records,
    each key stored once in its table."""
    keys: list[str] = []
    hash_keys: list[str] = []
    body = b""
    for record in records:
        partition_key, data = record[0], record[1]
        if partition_key not in keys:
            keys.append(partition_key)
        hash_index = None
        if len(record) == 3:
            hash_key = record[2]  # type: ignore[misc]
            if hash_key not in hash_keys:
                hash_keys.append(hash_key)
            hash_index = hash_keys.index(hash_key)
        body += length_delimited(3, user_record(keys.index(partition_key), data,
                                                hash_key_index=hash_index))
    tables = b"".join(length_delimited(1, k.encode()) for k in keys)
    tables += b"".join(length_delimited(2, k.encode()) for k in hash_keys)
    return tables + body


def sealed(protobuf: bytes) -> bytes:
    """Magic, `protobuf` and its correct digest, whatever `protobuf` holds."""
    return MAGIC + protobuf + hashlib.md5(protobuf).digest()


def aggregate(records: Sequence[tuple[str, bytes] | tuple[str, bytes, str]]) -> bytes:
    return sealed(message(records))


def aggregate_events(events: Sequence[Mapping[str, Any]]) -> bytes:
    """One aggregated record of JSON events, each under its own `key` as partition key."""
    return aggregate([(str(e["key"]), json.dumps(e, separators=(",", ":")).encode())
                      for e in events])
