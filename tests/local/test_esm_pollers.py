"""The engine's background mode: a thread per lane, wake-ups on writes, settle().

Every test here waits on events (a settle, a barrier), never on a guess of how long the machine
takes: a slow or busy machine makes them slower, not red.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cascata.local.esm import (
    DrainTimeout,
    EventSourceMappingEngine,
    KinesisBackendSource,
    MappingConfig,
)
from cascata.local.esm_model import WriteSignal
from tests.local.helpers import payload, put


@pytest.fixture
def engine() -> Iterator[EventSourceMappingEngine]:
    running = EventSourceMappingEngine(poll_interval=0.05, keep_invocations=True)
    yield running
    running.close()


def collector() -> tuple[list[Any], Callable[[dict[str, Any], Any], None]]:
    seen: list[Any] = []
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> None:
        with lock:
            seen.extend(payload(r) for r in event["Records"])

    return seen, handler


def test_settle_processes_everything_written_without_waiting_out_batching_windows(
    kinesis: Any, make_stream: Callable[..., str], engine: EventSourceMappingEngine
) -> None:
    make_stream("orders", shards=2)
    seen, handler = collector()
    engine.create_mapping(
        function=handler, function_name="consumer", source=KinesisBackendSource("orders"),
        # a window far longer than the settle's timeout: only flushing can finish in time
        config=MappingConfig(batch_size=1000, maximum_batching_window_in_seconds=300),
    )
    engine.start()
    for key in ("a", "b", "c", "d"):
        put(kinesis, "orders", [{"key": key, "n": n} for n in range(25)], key=key)
    engine.settle(timeout=60)
    assert sorted((p["key"], p["n"]) for p in seen) == sorted(
        (k, n) for k in "abcd" for n in range(25))
    # per key, in order
    for key in "abcd":
        assert [p["n"] for p in seen if p["key"] == key] == list(range(25))
    assert not engine.flushing  # the windows hold batches again once settled


def test_a_slow_function_does_not_hold_back_another_mapping(
    kinesis: Any, make_stream: Callable[..., str], engine: EventSourceMappingEngine
) -> None:
    make_stream("slow")
    make_stream("fast")
    release = threading.Event()
    entered = threading.Event()

    def slow(event: dict[str, Any], context: Any) -> None:
        entered.set()
        assert release.wait(60), "never released"

    seen, fast = collector()
    engine.create_mapping(function=slow, function_name="slow",
                          source=KinesisBackendSource("slow"))
    engine.create_mapping(function=fast, function_name="fast",
                          source=KinesisBackendSource("fast"))
    engine.start()
    put(kinesis, "slow", [{"n": 0}])
    assert entered.wait(60)
    put(kinesis, "fast", [{"n": n} for n in range(10)])
    try:
        # the fast mapping finishes while the slow one is still inside its invocation
        settled = threading.Thread(target=lambda: _wait_for(lambda: len(seen) == 10))
        settled.start()
        settled.join(60)
        assert len(seen) == 10 and not release.is_set()
    finally:
        release.set()
    engine.settle(timeout=60)


def _wait_for(condition: Callable[[], bool]) -> None:
    signal = threading.Event()
    while not condition():
        signal.wait(0.01)


def test_an_idle_lane_wakes_on_a_write_signal_not_its_next_poll(
    kinesis: Any, make_stream: Callable[..., str]
) -> None:
    make_stream("orders")
    wake = WriteSignal()
    arrived = threading.Event()
    # With a wake signal an idle lane polls only every poll_interval (here the longest
    # allowed, a minute): a record read well within that minute was read because of the
    # signal. (The half-minute budget is a liveness bound, not a measurement.)
    engine = EventSourceMappingEngine(poll_interval=60, wake=wake)
    try:
        engine.create_mapping(function=lambda e, c: arrived.set(), function_name="consumer",
                              source=KinesisBackendSource("orders"))
        engine.start()
        engine.settle(timeout=120)  # every lane has read the empty shard and gone idle
        put(kinesis, "orders", [{"n": 1}])
        wake.notify()
        assert arrived.wait(30)
    finally:
        engine.close()


def test_settle_gives_up_on_a_pipeline_that_stopped_moving(
    kinesis: Any, make_stream: Callable[..., str], engine: EventSourceMappingEngine
) -> None:
    make_stream("orders")

    def poison(event: dict[str, Any], context: Any) -> None:
        raise ValueError("always")

    # Lambda's defaults: retried forever, never older than any limit.
    engine.create_mapping(function=poison, function_name="consumer",
                          source=KinesisBackendSource("orders"))
    engine.start()
    put(kinesis, "orders", [{"n": 1}])
    with pytest.raises(DrainTimeout, match=r"made no progress for 0\.5s") as raised:
        engine.settle(timeout=float("inf"), stall_s=0.5)
    assert "retrying records" in str(raised.value)


def test_stop_ends_every_lane_thread_and_a_restart_resumes_from_the_checkpoints(
    kinesis: Any, make_stream: Callable[..., str], engine: EventSourceMappingEngine
) -> None:
    make_stream("orders", shards=2)
    seen, handler = collector()
    mapping = engine.create_mapping(function=handler, function_name="consumer",
                                    source=KinesisBackendSource("orders"))
    engine.start()
    put(kinesis, "orders", [{"n": n} for n in range(10)])
    engine.settle(timeout=60)
    engine.stop()
    assert not engine.running
    assert not [t for t in threading.enumerate() if t.name.startswith("cascata-esm")]
    put(kinesis, "orders", [{"n": n} for n in range(10, 15)])
    engine.start()
    engine.settle(timeout=60)
    assert sorted(p["n"] for p in seen) == list(range(15))  # nothing twice, nothing lost
    assert sum(s.succeeded for s in [mapping.stats]) == 15
