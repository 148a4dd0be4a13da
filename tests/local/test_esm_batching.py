"""Batch assembly, positions, filters, lanes and tumbling windows: reference 2.1 to 2.3, 2.7, 8."""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamModel

from cascata.local.clock import ManualClock
from cascata.local.esm import (
    EventSourceMappingEngine,
    KinesisBackendSource,
    LambdaContext,
    MappingConfig,
    Outcome,
)
from cascata.local.esm_config import MAX_PAYLOAD_BYTES
from tests.local.helpers import ok, payload, put, raising_on, seen

SHARD = "shardId-000000000000"


def make_engine(clock: ManualClock, **kwargs: Any) -> EventSourceMappingEngine:
    return EventSourceMappingEngine(clock=clock, seed=3, **kwargs)


# --- batch size and payload limit ---------------------------------------------------------


def test_batch_size_bounds_each_invocation(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given seven records and batch size 3, when drained, then batches are 3, 3 and 1."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(7)])
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=3),
    )

    engine.drain()

    assert [len(inv.records) for inv in mapping.invocations] == [3, 3, 1]


def test_serialized_event_stays_within_six_megabytes(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given ten 1,000,000-byte records (about 1.33 MB each once base64-encoded), when the
    batch size allows 100, then each event is cut before its JSON passes 6,291,456 bytes."""
    make_stream()
    for n in range(10):
        kinesis.put_record(StreamName="orders", Data=bytes([n]) * 1_000_000, PartitionKey="k")
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=100),
    )

    engine.drain()

    sizes = [len(json.dumps(inv.event, separators=(",", ":"))) for inv in mapping.invocations]
    assert [len(inv.records) for inv in mapping.invocations] == [4, 4, 2]
    assert all(size <= MAX_PAYLOAD_BYTES for size in sizes)
    assert sizes[0] + len(json.dumps(mapping.invocations[1].records[0])) > MAX_PAYLOAD_BYTES


def test_a_record_too_large_for_any_invocation_goes_to_the_on_failure_path(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a single 5 MB record (6.7 MB base64; moto's PutRecord accepts it), when drained,
    then it is never invoked and is reported as MaximumPayloadSizeExceeded; the next record
    is still processed."""
    make_stream()
    kinesis.put_record(StreamName="orders", Data=b"x" * 5_000_000, PartitionKey="k")
    put(kinesis, "orders", [{"n": 2}])
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(on_failure_destination="arn:aws:sqs:us-east-1:123456789012:dlq"),
    )

    engine.drain()

    assert seen(mapping.invocations) == [[{"n": 2}]]
    (record,) = mapping.on_failure_records
    assert record["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    assert mapping.checkpoints == {SHARD: 2}


# --- batching window ----------------------------------------------------------------------


def test_batching_window_restarts_when_the_previous_invocation_completes(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a 10 s batching window and a handler that takes 3 s, when two records wait and
    then a third arrives, then the first batch waits the window from the start, and the
    second waits 10 s from the end of the first invocation (not from its start)."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])

    def slow(event: dict[str, Any], context: Any) -> None:
        clock.advance(3)

    engine = make_engine(clock)
    start = clock.now()
    mapping = engine.create_mapping(
        function=slow,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=100, maximum_batching_window_in_seconds=10),
    )

    engine.drain()
    put(kinesis, "orders", [{"n": 3}])
    engine.drain()

    first, second = mapping.invocations
    assert [len(first.records), len(second.records)] == [2, 1]
    assert first.started_at - start == pytest.approx(10, abs=0.01)
    assert second.started_at - (first.started_at + 3) == pytest.approx(10, abs=0.01)


def test_a_full_batch_does_not_wait_for_the_window(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a 300 s window and batch size 2, when two records are available, then they are
    invoked at once."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])
    engine = make_engine(clock)
    start = clock.now()
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=2, maximum_batching_window_in_seconds=300),
    )

    engine.drain()

    assert mapping.invocations[0].started_at == start


# --- starting positions -------------------------------------------------------------------


def test_trim_horizon_reads_everything_and_latest_only_what_comes_after(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given two records already in the stream, when TRIM_HORIZON and LATEST mappings are
    created and two more records follow, then TRIM_HORIZON sees four and LATEST two."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])
    engine = make_engine(clock)
    mappings = {
        position: engine.create_mapping(
            function=ok,
            function_name=f"consumer-{position.lower()}",
            source=KinesisBackendSource("orders"),
            config=MappingConfig(starting_position=position),
        )
        for position in ("TRIM_HORIZON", "LATEST")
    }
    put(kinesis, "orders", [{"n": 3}, {"n": 4}])

    engine.drain()

    assert seen(mappings["TRIM_HORIZON"].invocations) == [[{"n": n} for n in range(1, 5)]]
    assert seen(mappings["LATEST"].invocations) == [[{"n": 3}, {"n": 4}]]


def test_at_timestamp_starts_at_the_first_record_that_arrived_at_or_after_it(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given records before and after a moment, when an AT_TIMESTAMP mapping starts at that
    moment, then it delivers only the later records."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])
    time.sleep(0.02)
    moment = time.time()
    time.sleep(0.02)
    put(kinesis, "orders", [{"n": 3}, {"n": 4}])
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(starting_position="AT_TIMESTAMP", starting_position_timestamp=moment),
    )

    engine.drain()

    assert seen(mapping.invocations) == [[{"n": 3}, {"n": 4}]]


def test_latest_is_taken_at_creation_and_survives_disable_enable(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a LATEST mapping disabled right after creation, when records arrive while it is
    disabled and it is enabled again, then it delivers them (the starting position is only
    taken once, for the new mapping)."""
    make_stream()
    put(kinesis, "orders", [{"n": 0}])
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(starting_position="LATEST"),
    )
    mapping.disable()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])

    engine.drain()
    assert mapping.invocations == []
    mapping.enable()
    engine.drain()

    assert seen(mapping.invocations) == [[{"n": 1}, {"n": 2}]]


def test_checkpoints_survive_disable_and_enable(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given three records processed, when the mapping is disabled, three more arrive and it
    is enabled again, then only the new three are delivered."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(1, 4)])
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok, function_name="consumer", source=KinesisBackendSource("orders")
    )
    engine.drain()
    mapping.disable()
    put(kinesis, "orders", [{"n": n} for n in range(4, 7)])
    engine.drain()
    assert mapping.state == "Disabled" and len(mapping.invocations) == 1

    mapping.enable()
    engine.drain()

    assert seen(mapping.invocations) == [
        [{"n": 1}, {"n": 2}, {"n": 3}],
        [{"n": 4}, {"n": 5}, {"n": 6}],
    ]
    assert mapping.checkpoints == {SHARD: 6}


def test_mappings_on_one_stream_keep_their_own_checkpoints(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given two mappings on the same stream, one failing forever, when drained briefly,
    then the healthy one finishes while the other is still blocked on its first record."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}, {"n": 2}])
    engine = make_engine(clock)
    healthy = engine.create_mapping(
        function=ok, function_name="healthy", source=KinesisBackendSource("orders")
    )
    blocked = engine.create_mapping(
        function=raising_on(1),
        function_name="blocked",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=1),
    )

    for _ in range(10):
        engine.poll_once()

    assert healthy.checkpoints == {SHARD: 2}
    assert blocked.checkpoints == {}
    assert blocked.stats.retries >= 5


# --- filters (8) --------------------------------------------------------------------------


def test_filters_drop_records_checkpoint_past_them_and_keep_the_original_bytes(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a filter on data.type = buy, when buy, sell, non-JSON and buy records arrive,
    then the handler gets the two buys with their exact original bytes (spacing included),
    and the checkpoint moves past the records filtered out at the end."""
    make_stream()
    raw = [b'{"type":  "buy", "n": 1}', b'{"type": "sell"}', b"not json", b'{ "type": "buy" }',
           b'{"type": "sell"}']
    for data in raw:
        kinesis.put_record(StreamName="orders", Data=data, PartitionKey="k")
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(filters=('{"data": {"type": ["buy"]}}',)),
    )

    engine.drain()

    (invocation,) = mapping.invocations
    assert [base64.b64decode(r["kinesis"]["data"]) for r in invocation.records] == [
        raw[0],
        raw[3],
    ]
    assert mapping.stats.filtered == 3
    assert mapping.checkpoints == {SHARD: 5}


def test_filters_on_metadata_keys_still_work_for_old_patterns(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given an older-style pattern on partitionKey, when records with two keys arrive, then
    only the matching key is delivered."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}], key="alice")
    put(kinesis, "orders", [{"n": 2}], key="bob")
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(filters=('{"partitionKey": ["bob"]}',)),
    )

    engine.drain()

    assert seen(mapping.invocations) == [[{"n": 2}]]


# --- ParallelizationFactor (2.1) ----------------------------------------------------------


def test_parallelization_lanes_keep_order_per_partition_key(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given PF 3 and six partition keys with four records each, interleaved, when drained,
    then each batch holds keys of one lane only, every record is delivered once, and each
    key's records arrive in order."""
    make_stream()
    keys = [f"key-{i}" for i in range(6)]
    for n in range(4):
        for key in keys:
            put(kinesis, "orders", [{"key": key, "n": n}], key=key)
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=2, parallelization_factor=3),
    )

    engine.drain()

    per_key: dict[str, list[int]] = {}
    for invocation in mapping.invocations:
        lanes = {zlib.crc32(r["kinesis"]["partitionKey"].encode()) % 3 for r in invocation.records}
        assert lanes == {invocation.lane}
        for record in invocation.records:
            per_key.setdefault(payload(record)["key"], []).append(payload(record)["n"])
    assert per_key == {key: [0, 1, 2, 3] for key in keys}
    assert len({inv.lane for inv in mapping.invocations}) > 1
    assert mapping.checkpoints == {SHARD: 24}


def test_a_blocked_lane_holds_the_checkpoint_but_not_other_lanes(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given PF 2 and a key whose first record keeps failing, when polled a while, then
    records of other lanes are delivered while the shard checkpoint stays before the
    blocked record."""
    make_stream()
    blocked_key = "a"
    other_key = next(
        k for k in ("b", "c", "d", "e", "f")
        if zlib.crc32(k.encode()) % 2 != zlib.crc32(blocked_key.encode()) % 2
    )
    put(kinesis, "orders", [{"n": 1, "key": blocked_key}], key=blocked_key)
    put(kinesis, "orders", [{"n": 2, "key": other_key}, {"n": 3, "key": other_key}],
        key=other_key)
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=raising_on(1),
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=1, parallelization_factor=2, maximum_retry_attempts=5),
    )

    for _ in range(4):
        engine.poll_once()
    assert {payload(r)["n"] for inv in mapping.invocations for r in inv.records} == {1, 2, 3}
    assert mapping.checkpoints == {}

    engine.drain()
    assert mapping.checkpoints == {SHARD: 3}


# --- tumbling windows (2.7) ---------------------------------------------------------------


def counting_window(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = dict(event["state"])
    state["count"] = state.get("count", 0) + len(event["Records"])
    return {"state": state}


def test_tumbling_window_carries_state_and_ends_with_a_final_invoke(
    kinesis: Any, make_stream: Callable[..., str]
) -> None:
    """Given a 60 s tumbling window and batch size 2, when five records arrive, then each
    invocation gets the state the previous one returned, and after the window ends a final
    invocation says isFinalInvokeForWindow with the total state."""
    clock = ManualClock()
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(5)])
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=counting_window,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=2, tumbling_window_in_seconds=60),
    )

    engine.drain()

    events = [inv.event for inv in mapping.invocations]
    assert [len(e["Records"]) for e in events] == [2, 2, 1, 0]
    assert [e["state"] for e in events] == [{}, {"count": 2}, {"count": 4}, {"count": 5}]
    assert [e["isFinalInvokeForWindow"] for e in events] == [False, False, False, True]
    assert {e["isWindowTerminatedEarly"] for e in events} == {False}
    assert {e["shardId"] for e in events} == {SHARD}
    assert events[0]["eventSourceARN"].endswith(":stream/orders")
    start, end = events[0]["window"]["start"], events[0]["window"]["end"]
    assert start.endswith(":00Z") and end.endswith(":00Z") and start < end
    assert {e["window"]["start"] for e in events} == {start}


def test_a_window_closes_when_a_later_record_arrives(
    kinesis: Any, make_stream: Callable[..., str]
) -> None:
    """Given a window open with state, when a record of a later window arrives, then the
    old window gets its final invoke first, and the new window starts with empty state."""
    clock = ManualClock()
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=counting_window,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(tumbling_window_in_seconds=1),
    )
    engine.poll_once()
    time.sleep(1.05)  # moto stamps arrival with the wall clock
    put(kinesis, "orders", [{"n": 2}])

    engine.drain()

    events = [inv.event for inv in mapping.invocations]
    summary = [(len(e["Records"]), e["isFinalInvokeForWindow"], e["state"]) for e in events]
    assert summary[:3] == [(1, False, {}), (0, True, {"count": 1}), (1, False, {})]
    assert events[0]["window"] != events[2]["window"]


def test_state_above_one_megabyte_terminates_the_window_early(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a tumbling window, when a handler returns more than 1 MB of state, then the
    next invocation closes the window early (isWindowTerminatedEarly) and the records after
    it start again from empty state."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(3)])

    def bloated(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not event["Records"]:  # a final invoke
            return {}
        big = "x" * (1024 * 1024) if payload(event["Records"][0])["n"] == 0 else ""
        return {"state": {"blob": big}}

    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=bloated,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=1, tumbling_window_in_seconds=60),
    )

    engine.drain()

    summary = [
        (len(inv.records), inv.event["isFinalInvokeForWindow"],
         inv.event["isWindowTerminatedEarly"], len(json.dumps(inv.event["state"])) > 1024**2)
        for inv in mapping.invocations
    ]
    assert summary[:3] == [
        (1, False, False, False),
        (0, True, True, True),
        (1, False, False, False),
    ]
    assert summary[-1][:3] == (0, True, False)


def test_a_tumbling_response_without_state_is_a_failure(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a tumbling window, when the handler returns no state, then the invocation fails
    the batch (functionError null) and is retried."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(tumbling_window_in_seconds=60, maximum_retry_attempts=1),
    )

    engine.drain()

    assert [inv.classification for inv in mapping.invocations][:2] == [Outcome.BATCH_FAILURE] * 2
    assert mapping.stats.discarded == 1


# --- what the handler receives (7.1, 7.7) -------------------------------------------------


def test_events_are_complete_for_powertools_and_handlers_get_a_private_copy(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a handler that validates the event with Powertools' parser model and then
    mutates it, when invoked, then validation passes and the recorded event is unchanged."""
    make_stream()
    sequences = put(kinesis, "orders", [{"n": 1}])
    contexts: list[LambdaContext] = []

    def handler(event: dict[str, Any], context: LambdaContext) -> None:
        parsed = KinesisDataStreamModel.model_validate(event)
        data = parsed.Records[0].kinesis.data
        assert isinstance(data, bytes) and json.loads(data) == {"n": 1}
        contexts.append(context)
        event["Records"].clear()

    engine = make_engine(clock)
    mapping = engine.create_mapping(
        function=handler,
        function_name="orders-consumer",
        source=KinesisBackendSource("orders"),
        memory_mb=256,
        timeout_s=30,
    )

    engine.drain()

    (invocation,) = mapping.invocations
    assert invocation.classification is Outcome.SUCCESS
    (record,) = invocation.records
    assert record["eventID"] == f"{SHARD}:{sequences[0]}"
    assert record["eventName"] == "aws:kinesis:record"
    assert record["invokeIdentityArn"] == "arn:aws:iam::123456789012:role/orders-consumer-role"
    assert record["awsRegion"] == "us-east-1"
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)
    (context,) = contexts
    assert context.function_name == "orders-consumer"
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn == (
        "arn:aws:lambda:us-east-1:123456789012:function:orders-consumer"
    )
    assert context.memory_limit_in_mb == 256
    assert context.aws_request_id == invocation.request_id
    assert context.log_group_name == "/aws/lambda/orders-consumer"
    assert "[$LATEST]" in context.log_stream_name
    assert context.get_remaining_time_in_millis() == 30_000
