"""The producer's pacing: `rate` offers events at a steady rate, ten requests a second."""

from __future__ import annotations

from typing import Any

import pytest

from cascata.producer import Outgoing, produce


class Stream:
    def __init__(self) -> None:
        self.requests: list[int] = []

    def put_records(self, **request: Any) -> dict[str, Any]:
        records = request["Records"]
        self.requests.append(len(records))
        return {"FailedRecordCount": 0, "Records": [
            {"SequenceNumber": str(i), "ShardId": "shardId-000000000000"}
            for i in range(len(records))]}


def test_a_rate_sends_a_tenth_of_a_second_of_events_per_request_on_schedule() -> None:
    stream = Stream()
    waits: list[float] = []
    now = [1000.0]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    report = produce(stream, "s", [Outgoing("k", b"{}") for _ in range(50)], rate=100,
                     sleep=sleep, clock=lambda: now[0])
    assert report.sent == 50 and stream.requests == [10] * 5
    # due at 0, 0.1, ... 0.4 s on the clock: one tenth of a second before each later request
    assert waits == pytest.approx([0.1] * 4)


def test_without_a_rate_everything_goes_at_once_in_full_requests() -> None:
    stream = Stream()
    waits: list[float] = []
    produce(stream, "s", [Outgoing("k", b"{}") for _ in range(1200)], sleep=waits.append)
    assert stream.requests == [500, 500, 200] and waits == []


@pytest.mark.parametrize("rate", [0, -5])
def test_a_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        produce(Stream(), "s", [Outgoing("k", b"{}")], rate=rate)
