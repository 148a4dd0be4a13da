"""The Kafka clients the local runtime hands its functions when the pipeline runs on MSK.

On Lambda an execution environment serves one invocation at a time, so each function holds one
producer. Locally, every lane of every mapping invokes on its own thread: `ThreadProducers`
gives each thread its own real producer (a producer's `flush` waits for every message in it,
and its delivery reports are served by whichever thread polls, so sharing one across threads
would let one invocation wait on, or report, another's messages). After every flush it signals
the runtime's `WriteSignal`, so idle lanes wake on the write as they do on the embedded
emulator's Kinesis writes.

`ChaosProducer` is `ChaosKinesis`'s counterpart for `--chaos`: some messages are reported
undelivered and some sends are refused outright, at seeded rates.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from cascata.local.chaos import ChaosCounters, ChaosSettings
from cascata.local.esm_model import WriteSignal
from cascata.local.metering import FlowMeter, Resolver


class ThreadProducers:
    """A Kafka producer per calling thread, built from one configuration."""

    def __init__(self, config: Mapping[str, Any], *, signal: WriteSignal | None = None,
                 factory: Callable[[dict[str, Any]], Any] | None = None) -> None:
        if factory is None:
            from confluent_kafka import Producer

            factory = Producer
        self._config = dict(config)
        self._factory = factory
        self._signal = signal
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def _mine(self) -> Any:
        producer = getattr(self._local, "producer", None)
        if producer is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the local runtime's Kafka producers are closed")
                producer = self._factory(dict(self._config))
                self._all.append(producer)
            self._local.producer = producer
        return producer

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        self._mine().produce(topic, *args, **kwargs)

    def poll(self, timeout: float = 0.0) -> int:
        return int(self._mine().poll(timeout))

    def flush(self, timeout: float = -1) -> int:
        left = int(self._mine().flush(timeout))
        if self._signal is not None:
            self._signal.notify()
        return left

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        return self._mine().list_topics(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._mine())

    def close(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            producers, self._all = self._all, []
        for producer in producers:
            producer.flush(timeout_s)


class InjectedError:
    """What a delivery report carries for a message chaos kept from the broker."""

    def __init__(self, text: str) -> None:
        self._text = text

    def retriable(self) -> bool:
        return True  # a timed-out request may succeed when sent again

    def __str__(self) -> str:
        return self._text


class ChaosProducer:
    """A producer that reports some messages undelivered (as a broker does when a request
    times out) and refuses some sends outright (the local queue is full)."""

    def __init__(self, producer: Any, settings: ChaosSettings, *, salt: int = 0) -> None:
        self._producer = producer
        self._settings = settings
        self._rng = random.Random(settings.seed * 1_000_003 + salt)
        self._lock = threading.Lock()
        self._pending = threading.local()
        self.counters = ChaosCounters()

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            refused = self._rng.random() < self._settings.throttle_rate
            lost = not refused and self._rng.random() < self._settings.put_failure_rate
            if refused:
                self.counters.put_requests_throttled += 1
            elif lost:
                self.counters.put_entries_failed += 1
        if refused:
            raise BufferErrorInjected("Local: Queue full (injected)")
        if lost:
            callback = kwargs.get("on_delivery") or kwargs.get("callback")
            if callback is not None:
                self._reports().append(callback)
            return
        self._producer.produce(topic, *args, **kwargs)

    def _reports(self) -> list[Callable[[Any, Any], None]]:
        pending: list[Callable[[Any, Any], None]] | None = getattr(self._pending, "reports", None)
        if pending is None:
            pending = self._pending.reports = []
        return pending

    def _deliver_lost(self) -> None:
        reports = self._reports()
        while reports:
            reports.pop()(InjectedError("Broker: Request timed out (injected)"), None)

    def poll(self, timeout: float = 0.0) -> int:
        self._deliver_lost()
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float = -1) -> int:
        left = int(self._producer.flush(timeout))
        self._deliver_lost()
        return left

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


class MeteredProducer:
    """A producer that counts, per declared stream, the messages the broker acknowledged for
    one function: the edges of the console's topology, as `MeteredClient` counts PutRecords."""

    def __init__(self, producer: Any, *, function: str, meter: FlowMeter,
                 resolve: Resolver) -> None:
        self._producer = producer
        self._function = function
        self._meter = meter
        self._resolve = resolve

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        declared = self._resolve("kafka", topic)
        callback = kwargs.get("on_delivery")
        if declared is not None and callback is not None:
            def counted(error: Any, message: Any) -> None:
                if error is None:
                    self._meter.add(self._function, declared, 1)
                callback(error, message)

            kwargs["on_delivery"] = counted
        self._producer.produce(topic, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


class BufferErrorInjected(RuntimeError):
    """A send chaos refused, as a full local queue refuses it (`KafkaSink` fails the record;
    a real `BufferError` would make it wait and retry)."""
