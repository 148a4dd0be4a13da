"""EventBridge-style filter patterns as Lambda evaluates them (reference section 8)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cascata.local.filters import (
    FilterCriteria,
    FilterPatternError,
    compile_pattern,
    parse_json_preserving_numbers,
)


def matches(pattern: dict[str, Any], document: str) -> bool:
    """Whether a pattern matches a JSON document parsed the way the engine parses data."""
    return compile_pattern(json.dumps(pattern)).matches(parse_json_preserving_numbers(document))


@pytest.mark.parametrize(
    ("pattern", "document", "expected"),
    [
        # exact values, AND across fields, OR within a list
        ({"type": ["buy"]}, '{"type": "buy"}', True),
        ({"type": ["buy"]}, '{"type": "Buy"}', False),
        ({"type": ["buy", "sell"]}, '{"type": "sell"}', True),
        ({"type": ["buy"], "qty": [1]}, '{"type": "buy", "qty": 2}', False),
        ({"type": ["buy"]}, '{"other": "buy"}', False),
        ({"a": {"b": ["x"]}}, '{"a": {"b": "x", "c": 1}}', True),
        ({"a": {"b": ["x"]}}, '{"a": "x"}', False),
        # numbers compare by text for equality
        ({"qty": [300]}, '{"qty": 300}', True),
        ({"qty": [300]}, '{"qty": 300.0}', False),
        ({"qty": [300]}, '{"qty": "300"}', False),
        # null, empty string, booleans
        ({"v": [None]}, '{"v": null}', True),
        ({"v": [None]}, "{}", False),
        ({"v": [""]}, '{"v": ""}', True),
        ({"v": [""]}, '{"v": null}', False),
        ({"flag": [True]}, '{"flag": true}', True),
        ({"flag": [True]}, '{"flag": 1}', False),
        # arrays in the record match if any element matches
        ({"tags": ["red"]}, '{"tags": ["blue", "red"]}', True),
        ({"tags": ["red"]}, '{"tags": ["blue"]}', False),
        ({"items": {"sku": ["a"]}}, '{"items": [{"sku": "b"}, {"sku": "a"}]}', True),
        # anything-but
        ({"s": [{"anything-but": ["DRAFT", "VOID"]}]}, '{"s": "PAID"}', True),
        ({"s": [{"anything-but": ["DRAFT", "VOID"]}]}, '{"s": "VOID"}', False),
        ({"s": [{"anything-but": "DRAFT"}]}, '{"s": "DRAFT"}', False),
        ({"s": [{"anything-but": {"prefix": "tmp-"}}]}, '{"s": "tmp-1"}', False),
        ({"s": [{"anything-but": {"prefix": "tmp-"}}]}, '{"s": "real"}', True),
        ({"s": [{"anything-but": ["x"]}]}, "{}", False),
        # numeric
        ({"n": [{"numeric": [">", 0, "<=", 5]}]}, '{"n": 5}', True),
        ({"n": [{"numeric": [">", 0, "<=", 5]}]}, '{"n": 0}', False),
        ({"n": [{"numeric": ["=", 3e2]}]}, '{"n": 300}', True),
        ({"n": [{"numeric": [">=", 10]}]}, '{"n": "11"}', False),
        ({"n": [{"numeric": ["<", 1]}]}, '{"n": 0.5}', True),
        # exists
        ({"c": [{"exists": True}]}, '{"c": 3}', True),
        ({"c": [{"exists": True}]}, "{}", False),
        ({"c": [{"exists": False}]}, "{}", True),
        ({"c": [{"exists": False}]}, '{"c": 1}', False),
        ({"c": {"d": [{"exists": False}]}}, '{"x": 1}', True),
        ({"c": [{"exists": True}]}, '{"c": {"d": 1}}', False),
        # string operators
        ({"r": [{"prefix": "us-"}]}, '{"r": "us-east-1"}', True),
        ({"r": [{"prefix": "us-"}]}, '{"r": "eu-west-1"}', False),
        ({"r": [{"prefix": {"equals-ignore-case": "US-"}}]}, '{"r": "us-east-1"}', True),
        ({"f": [{"suffix": ".png"}]}, '{"f": "a.png"}', True),
        ({"f": [{"suffix": {"equals-ignore-case": ".PNG"}}]}, '{"f": "a.png"}', True),
        ({"n": [{"equals-ignore-case": "Alice"}]}, '{"n": "aLiCe"}', True),
        ({"k": [{"wildcard": "dir/*.png"}]}, '{"k": "dir/sub/a.png"}', True),
        ({"k": [{"wildcard": "dir/*.png"}]}, '{"k": "dir/a.jpg"}', False),
        ({"k": [{"wildcard": "a\\*b"}]}, '{"k": "a*b"}', True),
        ({"k": [{"wildcard": "a\\*b"}]}, '{"k": "axb"}', False),
        # $or
        ({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, '{"b": "2"}', True),
        ({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, '{"b": "3"}', False),
        ({"t": ["x"], "$or": [{"a": ["1"]}, {"b": ["2"]}]}, '{"t": "y", "a": "1"}', False),
    ],
)
def test_pattern_semantics(pattern: dict[str, Any], document: str, expected: bool) -> None:
    assert matches(pattern, document) is expected


def test_any_pattern_of_a_mapping_may_match() -> None:
    criteria = FilterCriteria(['{"a": ["1"]}', {"b": ["2"]}])
    assert criteria.matches({"b": "2"})
    assert not criteria.matches({"a": "2"})
    assert FilterCriteria().matches({"anything": 1})
    assert criteria.keys == frozenset({"a", "b"})


def test_ignored_keys_match_and_unavailable_keys_fail() -> None:
    """Kafka values that are not UTF-8 are skipped (only the other filters apply); Kinesis
    data that is not JSON fails any pattern that names data."""
    criteria = FilterCriteria(['{"value": {"x": [1]}, "topic": ["t"]}'])
    assert criteria.matches({"topic": "t"}, ignore={"value"})
    assert not criteria.matches({"topic": "u"}, ignore={"value"})
    data_pattern = FilterCriteria(['{"data": {"x": [{"exists": false}]}}'])
    assert not data_pattern.matches({"partitionKey": "k"}, unavailable={"data"})


def test_duplicate_keys_keep_the_last_one() -> None:
    pattern = compile_pattern('{"a": ["1"], "a": ["2"]}')
    assert pattern.matches({"a": "2"})
    assert not pattern.matches({"a": "1"})


@pytest.mark.parametrize(
    "pattern",
    [
        "{nope",
        "[]",
        "{}",
        '{"a": "x"}',
        '{"a": []}',
        '{"a": [{"numeric": [">", "x"]}]}',
        '{"a": [{"numeric": ["<", 5, ">", 1]}]}',
        '{"a": [{"exists": "yes"}]}',
        '{"a": [{"cidr": "10.0.0.0/8"}]}',
        '{"a": [{"prefix": 1}]}',
        '{"a": [{"wildcard": "a**b"}]}',
        '{"$or": [{"a": ["1"]}]}',
        '{"a": [{"prefix": "x", "suffix": "y"}]}',
    ],
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(FilterPatternError):
        compile_pattern(pattern)


def test_numbers_keep_their_text() -> None:
    parsed = parse_json_preserving_numbers('{"a": 3.0e2, "b": 1}')
    assert parsed["a"].text == "3.0e2" and parsed["a"].value == 300.0
    with pytest.raises(ValueError):
        parse_json_preserving_numbers('{"a": NaN}')
