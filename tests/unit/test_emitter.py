"""The Kinesis emitter: chunking limits, oversized records, retrying only failed entries."""

from __future__ import annotations

from typing import Any

from cascata_runtime.emitter import MAX_BYTES_PER_REQUEST, KinesisSink, chunk
from cascata_runtime.ports import OutRecord


class ScriptedKinesis:
    """Answers PutRecords from a script: per call, the indexes of entries that fail."""

    def __init__(self, failing: list[set[int]], throttle_calls: int = 0) -> None:
        self.failing = failing
        self.throttle_calls = throttle_calls
        self.calls: list[list[dict[str, Any]]] = []

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Records)
        if self.throttle_calls:
            self.throttle_calls -= 1
            err = Exception("Rate exceeded")
            err.response = {"Error": {"Code": "ProvisionedThroughputExceededException"}}  # type: ignore[attr-defined]
            raise err
        fail = self.failing.pop(0) if self.failing else set()
        results = []
        for i, _ in enumerate(Records):
            if i in fail:
                results.append({"ErrorCode": "ProvisionedThroughputExceededException",
                                "ErrorMessage": "Rate exceeded for shard"})
            else:
                results.append({"SequenceNumber": str(i), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": len(fail), "Records": results}


def rec(tag: int, size: int = 10) -> OutRecord:
    return OutRecord(partition_key="k", data=b"x" * size, tag=tag)


def test_chunks_hold_at_most_500_records_and_5_mib() -> None:
    many = [rec(i) for i in range(1201)]
    assert [len(c) for c in chunk(many)] == [500, 500, 201]
    big = [rec(i, 1_000_000) for i in range(12)]
    sizes = [sum(len(r.data) + 1 for r in c) for c in chunk(big)]
    assert all(s <= MAX_BYTES_PER_REQUEST for s in sizes)
    assert sum(len(c) for c in chunk(big)) == 12


def test_only_failed_entries_are_retried() -> None:
    kinesis = ScriptedKinesis(failing=[{1, 3}, {1}, set()])
    sink = KinesisSink(kinesis, sleep=lambda _s: None)
    failures = sink.emit("s", [rec(i) for i in range(5)])
    assert failures == []
    assert [len(c) for c in kinesis.calls] == [5, 2, 1]


def test_persistent_failures_are_reported_per_record_with_a_reason() -> None:
    kinesis = ScriptedKinesis(failing=[{2}, {0}, {0}])
    sink = KinesisSink(kinesis, max_attempts=3, sleep=lambda _s: None)
    failures = sink.emit("s", [rec(i) for i in range(4)])
    assert [f.tag for f in failures] == [2]
    assert "ProvisionedThroughputExceededException" in failures[0].reason
    assert len(kinesis.calls) == 3


def test_whole_request_throttling_is_retried() -> None:
    kinesis = ScriptedKinesis(failing=[], throttle_calls=2)
    sink = KinesisSink(kinesis, sleep=lambda _s: None)
    assert sink.emit("s", [rec(0)]) == []
    assert len(kinesis.calls) == 3


def test_a_record_over_one_mib_is_refused_without_a_call() -> None:
    kinesis = ScriptedKinesis(failing=[])
    sink = KinesisSink(kinesis, sleep=lambda _s: None)
    failures = sink.emit("s", [rec(0, 1024 * 1024), rec(1)])
    assert [f.tag for f in failures] == [0]
    assert "at most 1048576" in failures[0].reason
    assert [len(c) for c in kinesis.calls] == [1]
