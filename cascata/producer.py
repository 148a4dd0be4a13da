"""Sends events to a stream in batches, retrying partial failures, with progress and a summary.

It is a thin layer over the runtime's Kinesis emitter (the same chunking, size limits and
retry of failed entries the processors use), so producers and processors behave alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cascata_runtime.emitter import KinesisSink
from cascata_runtime.envelope import Rejection
from cascata_runtime.policy import parse_json
from cascata_runtime.ports import OutRecord, Sink

MAX_KEY_CHARS = 256
MAX_LINE_BYTES = 1024 * 1024


class InputFileError(ValueError):
    """A JSON Lines file cannot be sent as it is; the message names the line."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    key: str
    data: bytes


@dataclass
class ProduceReport:
    stream: str
    sent: int = 0
    failed: int = 0
    requests: int = 0
    duration_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    send_times: dict[int, float] = field(default_factory=dict)
    """Input position -> wall-clock time it was written (for end-to-end latency)."""

    @property
    def events_per_second(self) -> float:
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "sent": self.sent,
            "failed": self.failed,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "events_per_second": round(self.events_per_second, 1),
            "failures": self.failures[:20],
        }


def read_jsonl(path: Path) -> list[Outgoing]:
    """Every line must be a JSON object with a string `key`; blank lines are skipped."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    out: list[Outgoing] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            raise InputFileError(f"{path}:{number}: the line is over 1 MiB, Kinesis's limit")
        obj = parse_json(line)
        if isinstance(obj, Rejection):
            raise InputFileError(f"{path}:{number}: {obj.reason} ({obj.code}); the pipeline "
                                 f"would refuse it")
        if not isinstance(obj, dict):
            raise InputFileError(f"{path}:{number}: expected a JSON object")
        key = obj.get("key")
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
            raise InputFileError(
                f"{path}:{number}: `key` must be a string of 1-{MAX_KEY_CHARS} characters"
            )
        out.append(Outgoing(key=key, data=line.strip()))
    return out


def produce(
    kinesis: Any,
    stream: str,
    events: Iterable[Outgoing],
    *,
    batch_size: int = 500,
    on_progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rate: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sink: Sink | None = None,
) -> ProduceReport:
    """`rate`: offer the events at this many a second (ten requests a second), not at once,
    on `clock` (seconds), waiting with `sleep`. `sink`: where the events go (a `KafkaSink` to
    write a topic); by default the Kinesis stream `stream` through `kinesis`."""
    if rate is not None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        batch_size = max(1, min(batch_size, round(rate / 10)))
    if sink is None:
        sink = KinesisSink(kinesis, sleep=sleep, max_attempts=8)
    report = ProduceReport(stream=stream)
    started = time.perf_counter()
    paced_from = clock()
    for offset, batch in _batches(events, batch_size):
        if rate is not None:
            due = paced_from + offset / rate
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        records = [OutRecord(e.key, e.data, offset + i) for i, e in enumerate(batch)]
        failures = sink.emit(stream, records)
        now = time.time()
        failed_tags = {f.tag for f in failures}
        for record in records:
            if record.tag not in failed_tags:
                report.send_times[record.tag] = now
        report.failed += len(failures)
        report.failures.extend(f"event {f.tag}: {f.reason}" for f in failures)
        report.sent += len(records) - len(failures)
        if on_progress:
            on_progress(len(records))
    report.requests = int(getattr(sink, "requests", 0))
    report.duration_s = time.perf_counter() - started
    return report


def _batches(events: Iterable[Outgoing], size: int) -> Iterator[tuple[int, list[Outgoing]]]:
    batch: list[Outgoing] = []
    offset = 0
    for event in events:
        batch.append(event)
        if len(batch) == size:
            yield offset, batch
            offset += len(batch)
            batch = []
    if batch:
        yield offset, batch
