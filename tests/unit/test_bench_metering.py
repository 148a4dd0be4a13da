"""The bench's metering rules, pure: index writes, AWS-length sequence numbers, Firehose
rounding, and how fixed costs and windows write units are attributed."""

from __future__ import annotations

from cascata.pipeline import Index
from payments.tooling.bench.functions import AWS_SEQUENCE_DIGITS, aws_sequence
from payments.tooling.bench.metering import (
    FIREHOSE_RECORD_UNIT,
    firehose_billed_bytes,
    index_write_sizes,
    item_size,
    write_units,
)
from payments.tooling.bench.report import shards_for

KEYS = ("account_id", "window_key")
OPEN_BY_CLOSE = Index(name="open-by-close", partition_key="status", sort_key="closes_at",
                      projection="KEYS_ONLY")
BY_DAY = Index(name="by-day", partition_key="day", sort_key="alert_key")


def _window(**extra: str) -> dict[str, dict[str, str]]:
    item = {"account_id": {"S": "ada.0001"}, "window_key": {"S": "tumbling#2026-11-02T09:00:00Z"},
            "count": {"N": "1"}}
    item.update({k: {"S": v} for k, v in extra.items()})
    return item


def test_creating_an_item_with_the_index_keys_writes_the_index_once() -> None:
    after = _window(status="open", closes_at="2026-11-02T09:05:30Z")
    sizes = index_write_sizes(OPEN_BY_CLOSE, KEYS, None, after)
    # KEYS_ONLY: the entry holds the table keys and the index keys, not `count`
    projected = {k: v for k, v in after.items() if k != "count"}
    assert sizes == [item_size(projected)]


def test_an_item_without_the_index_keys_is_not_in_the_index() -> None:
    assert index_write_sizes(OPEN_BY_CLOSE, KEYS, None, _window()) == []
    assert index_write_sizes(OPEN_BY_CLOSE, KEYS, _window(), _window(status="open")) == []


def test_changing_only_an_attribute_a_keys_only_index_does_not_project_writes_nothing() -> None:
    before = _window(status="open", closes_at="2026-11-02T09:05:30Z")
    after = {**before, "count": {"N": "2"}}
    assert index_write_sizes(OPEN_BY_CLOSE, KEYS, before, after) == []


def test_with_projection_all_any_attribute_change_is_one_index_write() -> None:
    keys = ("account_id", "alert_key")
    before = {"account_id": {"S": "a"}, "alert_key": {"S": "k"}, "day": {"S": "2026-11-02"},
              "notified": {"BOOL": False}}
    after = {**before, "notified": {"BOOL": True}}
    assert len(index_write_sizes(BY_DAY, keys, before, after)) == 1
    assert index_write_sizes(BY_DAY, keys, before, dict(before)) == []


def test_changing_an_index_key_deletes_the_old_entry_and_puts_the_new_one() -> None:
    before = _window(status="open", closes_at="2026-11-02T09:05:30Z")
    after = _window(status="closed", closes_at="2026-11-02T09:05:30Z")
    assert len(index_write_sizes(OPEN_BY_CLOSE, KEYS, before, after)) == 2


def test_removing_an_index_key_or_deleting_the_item_is_one_index_write() -> None:
    before = _window(status="open", closes_at="2026-11-02T09:05:30Z")
    assert len(index_write_sizes(OPEN_BY_CLOSE, KEYS, before, _window(closes_at="x"))) == 1
    assert len(index_write_sizes(OPEN_BY_CLOSE, KEYS, before, None)) == 1


def test_sequence_numbers_are_aws_length_and_keep_their_order() -> None:
    first, second = aws_sequence("shardId-000000000000", 1), aws_sequence(
        "shardId-000000000000", 2)
    assert len(str(first)) == len(str(second)) == AWS_SEQUENCE_DIGITS == 56
    assert first < second
    assert len(str(aws_sequence("shardId-000000000003", 10**12))) == 56


def test_an_item_over_one_kilobyte_because_of_long_sequence_numbers_costs_two_units() -> None:
    # Given an item fencing 17 shards by sequence number, as strings
    def fenced(sequence: int) -> dict[str, dict[str, str]]:
        return {"pk": {"S": "acct"}, **{f"fence_{i:02d}": {"S": str(sequence)}
                                        for i in range(17)}}

    short, long = fenced(123456), fenced(aws_sequence("shardId-000000000000", 123456))
    # Then moto's short numbers fit in one unit and AWS's 56 digits need two
    assert write_units(item_size(short)) == 1
    assert item_size(long) > 1024 and write_units(item_size(long)) == 2


def test_firehose_rounds_every_record_up_to_five_kilobytes() -> None:
    assert FIREHOSE_RECORD_UNIT == 5120
    assert firehose_billed_bytes([1]) == 5120
    assert firehose_billed_bytes([5120, 5121]) == 5120 + 10240
    assert firehose_billed_bytes([300] * 1000) == 1000 * 5120


def test_provisioned_shards_follow_the_per_shard_write_limits() -> None:
    assert shards_for(10, 10_000) == 1
    assert shards_for(2500, 10_000) == 3
    assert shards_for(100, 3 * 1024**2) == 3
