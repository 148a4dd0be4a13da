"""The input policy (`cascata_runtime.policy`) and the time format every processor shares.

What one entry point accepts, every later one accepts: these tests hold the policy to that with
arbitrary inputs, and hold every time the processors write to what `parse_time` reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascata_runtime.envelope import (
    Rejection,
    date_text,
    decode_json,
    format_time,
    parse_time,
    seconds_text,
)
from cascata_runtime.policy import (
    MAX_DEPTH,
    MAX_RECORD_BYTES,
    PARSE_DEPTH,
    check_value,
    nesting,
    parse_json,
)
from payments.domain.fraud import sortable_time
from payments.domain.profiles import time_text
from payments.domain.windows import iso_seconds, parse_seconds

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=30,
)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


@given(json_values)
def test_the_bracket_scan_measures_the_depth_the_parser_sees(value: Any) -> None:
    text = json.dumps(value).encode()
    assert nesting(text) == depth_of(value)
    assert nesting(json.dumps(value, ensure_ascii=False).encode()) == depth_of(value)


def test_brackets_inside_strings_and_escapes_do_not_count() -> None:
    assert nesting(b'{"a":"[[[{{{","b":"\\"[","c":"\\\\","d":[1]}') == 2
    assert nesting(b'["\\\\\\"[[["]') == 1


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_no_bytes_make_the_policy_raise(data: bytes) -> None:
    value = parse_json(data)
    assert isinstance(value, Rejection) or check_value(value) is None


@pytest.mark.parametrize(("raw", "code"), [
    (b"[" * 1530, "too_deep"),
    (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "too_deep"),
    (b'{"a":"\\ud800"}', "invalid_text"),
    (b'{"\\udfff":1}', "invalid_text"),
    (b'{"a":NaN}', "not_json"),
    (b'{"a":-Infinity}', "not_json"),
    (b'{"a":' + b"9" * 5000 + b"}", "not_json"),
    (b'{"a":"\xff"}', "not_utf8"),
    (b'{"a":"' + b"x" * MAX_RECORD_BYTES + b'"}', "too_large"),
])
def test_what_the_policy_refuses(raw: bytes, code: str) -> None:
    value = parse_json(raw)
    assert isinstance(value, Rejection) and value.code == code, value
    refused = decode_json(raw)
    assert isinstance(refused, Rejection) and refused.code == code


def test_what_the_policy_accepts_at_its_limits() -> None:
    nested: Any = 1
    for _ in range(MAX_DEPTH):
        nested = [nested]
    assert parse_json(json.dumps(nested)) == nested
    assert isinstance(parse_json(json.dumps([nested])), Rejection)
    assert parse_json('{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}  # a valid pair
    assert parse_json(json.dumps({"a": "x" * (MAX_RECORD_BYTES - 20)}).encode()) is not None


def test_a_container_is_parsed_deeper_and_its_parts_held_to_the_policy() -> None:
    deep: Any = {"v": 1}
    for _ in range(500):
        deep = {"x": deep}
    body = json.dumps([{"ok": 1}, deep, {"s": "\ud800"}], ensure_ascii=True)
    items = parse_json(body, max_bytes=10**7, max_depth=PARSE_DEPTH, values=False)
    assert isinstance(items, list) and len(items) == 3
    assert check_value(items[0]) is None
    problem = check_value(items[1])
    assert problem is not None and problem.code == "too_deep"
    problem = check_value(items[2])
    assert problem is not None and problem.code == "invalid_text"


instants = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59),
                        timezones=st.just(UTC))


@given(instants)
def test_every_time_the_processors_write_is_one_parse_time_reads(value: datetime) -> None:
    at_ms = value.replace(microsecond=value.microsecond // 1000 * 1000)
    assert parse_time(format_time(value), "t") == at_ms
    assert parse_time(sortable_time(value), "t") == at_ms
    assert parse_time(time_text(value), "t") == value
    assert parse_time(seconds_text(value) + "Z", "t") == value.replace(microsecond=0)
    assert date_text(value) == seconds_text(value)[:10] == value.date().isoformat()


def test_year_one_and_year_9999_keep_four_digits() -> None:
    first = datetime(1, 1, 1, tzinfo=UTC)
    assert format_time(first) == "0001-01-01T00:00:00Z"
    assert sortable_time(first) == "0001-01-01T00:00:00.000Z"
    assert time_text(first) == "0001-01-01T00:00:00Z"
    epoch_s = (first - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    assert iso_seconds(epoch_s) == "0001-01-01T00:00:00Z"
    assert parse_seconds(iso_seconds(epoch_s)) == epoch_s
    last = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert parse_time(format_time(last), "t") == last
