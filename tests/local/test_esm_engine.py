"""Running the engine: drain, chained mappings, background polling, concurrency, speed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from cascata.local.clock import ManualClock, SystemClock
from cascata.local.esm import (
    DrainTimeout,
    EventSourceMappingEngine,
    KinesisBackendSource,
    MappingConfig,
)
from tests.local.helpers import REGION, ok, payload, put, raising_on


def test_drain_follows_a_chain_of_mappings(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a mapping that re-emits each record to a second stream read by another mapping,
    when drained once, then records flow through both and the summary counts both."""
    make_stream("first")
    make_stream("second")
    put(kinesis, "first", [{"n": n} for n in range(5)])
    client = boto3.client("kinesis", region_name=REGION)
    received: list[int] = []

    def forward(event: dict[str, Any], context: Any) -> None:
        client.put_records(
            StreamName="second",
            Records=[
                {"Data": json.dumps(payload(r)).encode(), "PartitionKey": "k"}
                for r in event["Records"]
            ],
        )

    def collect(event: dict[str, Any], context: Any) -> None:
        received.extend(payload(r)["n"] for r in event["Records"])

    engine = EventSourceMappingEngine(clock=clock)
    engine.create_mapping(
        function=forward, function_name="forward", source=KinesisBackendSource("first"),
        config=MappingConfig(batch_size=2),
    )
    engine.create_mapping(
        function=collect, function_name="collect", source=KinesisBackendSource("second")
    )

    summary = engine.drain()

    assert received == [0, 1, 2, 3, 4]
    assert summary.stats_for("forward").succeeded == 5
    assert summary.stats_for("collect").succeeded == 5
    assert summary.records_in == 10
    assert "forward" in str(summary)


def test_drain_times_out_naming_the_stuck_shard(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given a poison record and Lambda's defaults (infinite retries, no age limit), when
    drained with a short timeout, then DrainTimeout names the mapping, shard and records."""
    make_stream()
    put(kinesis, "orders", [{"n": 1}])
    engine = EventSourceMappingEngine(clock=clock)
    engine.create_mapping(
        function=raising_on(1), function_name="stuck", source=KinesisBackendSource("orders")
    )

    with pytest.raises(DrainTimeout, match=r"stuck shardId-000000000000 lane 0: retrying records"):
        engine.drain(timeout=0.3)


def test_parallel_drain_delivers_every_record_once(
    kinesis: Any, make_stream: Callable[..., str], clock: ManualClock
) -> None:
    """Given four shards and PF 2, when drained with lanes running concurrently, then every
    record is delivered exactly once and per-key order holds."""
    make_stream(shards=4)
    records = [{"Data": json.dumps({"k": k, "n": n}).encode(), "PartitionKey": f"key-{k}"}
               for n in range(25) for k in range(8)]
    kinesis.put_records(StreamName="orders", Records=records)
    seen: dict[int, list[int]] = {}
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> None:
        with lock:
            for r in event["Records"]:
                seen.setdefault(payload(r)["k"], []).append(payload(r)["n"])

    engine = EventSourceMappingEngine(clock=clock, max_workers=4)
    mapping = engine.create_mapping(
        function=handler,
        function_name="consumer",
        source=KinesisBackendSource("orders"),
        config=MappingConfig(batch_size=5, parallelization_factor=2),
    )

    engine.drain(parallel=True)
    engine.close()

    assert seen == {k: list(range(25)) for k in range(8)}
    assert mapping.stats.succeeded == 200
    # moto numbers each shard's records from 1: the checkpoints add up to the record count.
    assert sum(mapping.checkpoints.values()) == 200


def test_background_polling_picks_up_new_records(
    kinesis: Any, make_stream: Callable[..., str]
) -> None:
    """Given a started engine on the system clock, when records are put, then they are
    processed without calling drain, and stop() ends the thread."""
    make_stream()
    done = threading.Event()
    received: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        received.extend(payload(r)["n"] for r in event["Records"])
        if len(received) >= 3:
            done.set()

    engine = EventSourceMappingEngine(clock=SystemClock(), poll_interval=0.05)
    engine.create_mapping(
        function=handler, function_name="consumer", source=KinesisBackendSource("orders"),
        config=MappingConfig(starting_position="LATEST"),
    )
    engine.start()
    try:
        put(kinesis, "orders", [{"n": n} for n in range(3)])
        assert done.wait(5)
    finally:
        engine.stop()

    assert received == [0, 1, 2]
    assert not engine.running
    assert engine.last_error is None


def test_thousands_of_records_drain_reading_each_record_once(
    kinesis: Any, make_stream: Callable[..., str]
) -> None:
    """Given 5,000 records on two shards, when drained with batch size 100, then every record
    is read once, in a number of reads linear in the batches (no quadratic re-reading), and
    checkpointed. Counted, not timed: the speed is the bench's."""
    make_stream(shards=2)
    for start in range(0, 5000, 500):
        kinesis.put_records(
            StreamName="orders",
            Records=[{"Data": json.dumps({"n": n, "pad": "x" * 100}).encode(),
                      "PartitionKey": str(n)} for n in range(start, start + 500)],
        )
    reads = {"calls": 0, "records": 0}

    class Counted(KinesisBackendSource):
        def read(self, *args: Any, **kwargs: Any) -> Any:
            result = super().read(*args, **kwargs)
            reads["calls"] += 1
            reads["records"] += len(result.records)
            return result

    engine = EventSourceMappingEngine(clock=ManualClock(), keep_invocations=False)
    mapping = engine.create_mapping(
        function=ok,
        function_name="consumer",
        source=Counted("orders"),
        config=MappingConfig(batch_size=100, function_response_types=("ReportBatchItemFailures",)),
    )

    engine.drain()

    assert mapping.stats.succeeded == 5000
    assert mapping.invocations == []
    assert reads["records"] == 5000
    assert reads["calls"] <= 2 * (5000 // 100) + 10


def test_engine_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        EventSourceMappingEngine(poll_interval=0)
    with pytest.raises(ValueError, match="max_workers"):
        EventSourceMappingEngine(max_workers=0)
