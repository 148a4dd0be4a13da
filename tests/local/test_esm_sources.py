"""The Kinesis sources: moto's backend read by index, and the same through the Kinesis API."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest

from cascata.local.clock import ManualClock
from cascata.local.esm import (
    EventSourceMappingEngine,
    KinesisApiSource,
    KinesisBackendSource,
    MappingConfig,
    ShardInfo,
    SourceNotFoundError,
)
from cascata.local.esm_sources import ReadResult
from tests.local.helpers import RBIF, failing, ok, put, seen

SHARD = "shardId-000000000000"


def run_six_record_example(source: Any, clock: ManualClock) -> Any:
    engine = EventSourceMappingEngine(clock=clock, seed=9)
    mapping = engine.create_mapping(
        function=failing(6),
        function_name="consumer",
        source=source,
        config=MappingConfig(
            batch_size=3,
            maximum_retry_attempts=3,
            function_response_types=RBIF,
            on_failure_destination="arn:aws:sqs:us-east-1:123456789012:dlq",
        ),
    )
    engine.drain()
    return mapping


def test_api_source_behaves_like_the_backend_source(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given one stream read through moto's backend and through the Kinesis API, when the
    six-record example runs on each, then both deliver the same events and checkpoints."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(1, 7)])

    direct = run_six_record_example(KinesisBackendSource("orders"), clock)
    via_api = run_six_record_example(KinesisApiSource(kinesis, "orders"), clock)

    assert seen(via_api.invocations) == seen(direct.invocations)
    assert len(via_api.invocations) == 5
    for a, b in zip(direct.invocations, via_api.invocations, strict=True):
        for ra, rb in zip(a.records, b.records, strict=True):
            ka, kb = dict(ra["kinesis"]), dict(rb["kinesis"])
            ta, tb = ka.pop("approximateArrivalTimestamp"), kb.pop("approximateArrivalTimestamp")
            assert ta == pytest.approx(tb, abs=0.002)
            assert {**ra, "kinesis": ka} == {**rb, "kinesis": kb}
    assert via_api.checkpoints == direct.checkpoints == {SHARD: 6}
    assert via_api.on_failure_records[0]["KinesisBatchInfo"]["startSequenceNumber"] == "6"


def test_api_source_latest_and_unknown_stream(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a LATEST mapping through the API, when records arrive after creation, then only
    those are delivered; a mapping on a missing stream is refused with the stream name."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisApiSource(kinesis, "orders"),
        config=MappingConfig(starting_position="LATEST"),
    )
    put(kinesis, "orders", [{"n": 2}])

    engine.drain()

    assert seen(mapping.invocations) == [[{"n": 2}]]
    with pytest.raises(ValueError, match="Stream not found"):
        engine.create_mapping(
            function=ok, function_name="other", source=KinesisApiSource(kinesis, "missing")
        )


def test_api_source_reads_an_enhanced_fan_out_consumer_as_its_stream(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a mapping on a stream consumer ARN (EFO), when drained, then records are read
    with standard iterators and the events name the stream, not the consumer."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    stream_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisApiSource(kinesis, stream_arn=f"{stream_arn}/consumer/fanout:1795466400"),
    )

    engine.drain()

    (invocation,) = mapping.invocations
    assert invocation.records[0]["eventSourceARN"] == stream_arn


def test_backend_source_refuses_a_missing_stream(moto_aws: None) -> None:
    engine = EventSourceMappingEngine(clock=ManualClock())
    with pytest.raises(ValueError, match=r"Stream not found: arn:aws:kinesis:.*:stream/missing"):
        engine.create_mapping(
            function=ok, function_name="consumer", source=KinesisBackendSource("missing")
        )


class ScanCountingRecords(OrderedDict[int, Any]):
    """A moto shard's records that count every full iteration (a scan of the shard)."""

    scans = 0

    def __iter__(self) -> Any:
        ScanCountingRecords.scans += 1
        return super().__iter__()

    def keys(self) -> Any:
        ScanCountingRecords.scans += 1
        return super().keys()

    def items(self) -> Any:
        ScanCountingRecords.scans += 1
        return super().items()

    def values(self) -> Any:
        ScanCountingRecords.scans += 1
        return super().values()


def test_backend_reads_by_index_never_scanning_the_shard(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a shard of 2,000 records whose dict counts iterations, when the engine drains
    it in batches of 100, then it never iterates the dict (each read is O(batch))."""
    from moto.kinesis.models import kinesis_backends

    make_stream()
    kinesis.put_records(
        StreamName="orders",
        Records=[{"Data": json.dumps({"n": n}).encode(), "PartitionKey": "k"} for n in range(500)],
    )
    shard = kinesis_backends["123456789012"]["us-east-1"].streams["orders"].shards[SHARD]
    shard.records = ScanCountingRecords(shard.records)
    for _ in range(1500):
        shard.put_record("k", shard.records[1].data, "1")
    ScanCountingRecords.scans = 0
    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=100),
    )

    engine.drain()

    assert mapping.stats.succeeded == 2000
    assert mapping.checkpoints == {SHARD: 2000}
    assert ScanCountingRecords.scans == 0


def test_backend_at_timestamp_uses_a_binary_search(
    kinesis: Any, make_stream: Callable[..., str]
) -> None:
    """Given records written across a moment, when reading AT_TIMESTAMP, then the first
    record returned is the first at or after it (and no scan happens)."""
    make_stream()
    put(kinesis, "orders", [{"n": n} for n in range(3)])
    time.sleep(0.02)
    moment = time.time()
    put(kinesis, "orders", [{"n": n} for n in range(3, 6)])
    source = KinesisBackendSource("orders")

    result = source.read(SHARD, source.start_cursor(SHARD, "AT_TIMESTAMP", moment, group="g"), 10)

    assert [r.position for r in result.records] == [4, 5, 6]
    assert result.caught_up


class FakeSource:
    """A resharded stream: parent shard 0 closed with two records, child shard 1 open."""

    def __init__(self) -> None:
        self.records = {"shard-0": [1, 2], "shard-1": [3, 4]}

    @property
    def kind(self) -> str:
        return "kinesis"

    @property
    def event_source_arn(self) -> str:
        return "arn:aws:kinesis:us-east-1:123456789012:stream/fake"

    @property
    def name(self) -> str:
        return "fake"

    def list_shards(self, *, refresh: bool = False) -> list[ShardInfo]:
        return [
            ShardInfo("shard-0", closed=True),
            ShardInfo("shard-1", parent_ids=("shard-0",)),
        ]

    def start_cursor(
        self, shard_id: str, starting_position: str, timestamp: Any, *, group: str
    ) -> None:
        return None

    def read(self, shard_id: str, cursor: Any, limit: int) -> ReadResult:
        from cascata.local.esm_sources import SourceRecord

        after = cursor or 0
        records = [
            SourceRecord(position=p, partition_key="k", arrival=time.time(), data="e30=")
            for p in self.records[shard_id]
            if p > after
        ][:limit]
        caught_up = len(records) < limit
        return ReadResult(
            records,
            records[-1].position if records else cursor,
            caught_up=caught_up,
            shard_ended=shard_id == "shard-0" and caught_up,
        )

    def commit(self, shard_id: str, checkpoint: int, *, group: str) -> None:
        return None


def test_a_child_shard_starts_only_after_its_parent_is_finished(clock: ManualClock) -> None:
    """Given a closed parent shard and its child, when drained, then every record of the
    parent is processed before the first record of the child."""
    engine = EventSourceMappingEngine(clock=clock)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=FakeSource(),  # type: ignore[arg-type]
        config=MappingConfig(batch_size=1),
    )

    engine.drain()

    assert [(inv.shard_id, inv.positions) for inv in mapping.invocations] == [
        ("shard-0", (1,)),
        ("shard-0", (2,)),
        ("shard-1", (3,)),
        ("shard-1", (4,)),
    ]
    assert mapping.checkpoints == {"shard-0": 2, "shard-1": 4}


def test_source_errors_are_value_errors() -> None:
    assert issubclass(SourceNotFoundError, ValueError)
