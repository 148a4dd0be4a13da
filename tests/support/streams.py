"""An in-memory Kinesis and Lambda's event source mapping over it, for pipeline properties.

`Kinesis` holds the shards of named streams as lists of records shaped as Lambda delivers them
(sequence numbers start at a real 56-digit value and grow by one per record). `deliver` plays
one processor's event source mapping over one stream: the shards interleaved, each read in
order from its checkpoint in batches of random size, optional injected failures (item writes,
emitted records) followed by Lambda's retry from the lowest failed sequence number, and random
redeliveries of an earlier batch. Every record the processor emits, copies included, is
appended to its output stream, optionally in a random order within one invocation (PutRecords
retrying failed entries one by one reorders a request's records).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.support.events import kinesis_record
from tests.support.fakes import MemoryItems, MemorySink

FIRST_SEQUENCE = 49590338271490256608559692538361571095921575989136588898
"""A real Kinesis sequence number: 56 digits, more than a DynamoDB number holds."""

Handle = Callable[[Mapping[str, Any], Any], dict[str, Any]]


def shard_of(partition_key: str, shards: int = 2) -> str:
    return f"shardId-{zlib.crc32(partition_key.encode()) % shards:012d}"


@dataclass
class Kinesis:
    arrival: float = 1_593_094_000.0
    shards: int = 2
    streams: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)

    def put(self, stream: str, data: Mapping[str, Any] | bytes, partition_key: str) -> None:
        shard = shard_of(partition_key, self.shards)
        records = self.streams.setdefault(stream, {}).setdefault(shard, [])
        records.append(kinesis_record(
            data, sequence=FIRST_SEQUENCE + len(records), partition_key=partition_key,
            stream=stream, shard=shard, arrival=self.arrival,
        ))

    def of(self, stream: str) -> dict[str, list[dict[str, Any]]]:
        return self.streams.get(stream, {})

    def count(self, stream: str) -> int:
        return sum(len(rs) for rs in self.of(stream).values())

    def take(self, sink: MemorySink, stream: str, order: Callable[[list[Any]], list[Any]]
             ) -> None:
        """Move what `sink` received for `stream` into the stream's shards."""
        out = sink.records.pop(stream, [])
        for record in order(out):
            self.put(stream, record.data, record.partition_key)


@dataclass
class Faults:
    """What may fail during an invocation: writes of `items` for some of `keys`, and some of
    the first `tags` records of each `sink.emit` call."""

    items: MemoryItems | None = None
    keys: Sequence[str] = ()
    sink: MemorySink | None = None
    tags: int = 0

    def inject(self, data: st.DataObject) -> None:
        if self.items is not None and self.keys:
            self.items.fail_accounts = data.draw(st.sets(st.sampled_from(self.keys), max_size=2))
        if self.sink is not None and self.tags:
            self.sink.fail_tags = data.draw(st.sets(st.integers(0, self.tags - 1), max_size=2))

    def clear(self) -> None:
        if self.items is not None:
            self.items.fail_accounts = set()
        if self.sink is not None:
            self.sink.fail_tags = set()


def deliver(
    handle: Handle,
    ctx: Any,
    kinesis: Kinesis,
    streams: Sequence[str],
    data: st.DataObject | None,
    *,
    faults: Faults | None = None,
    sink: MemorySink | None = None,
    output: str | None = None,
    shuffle: bool = False,
    max_batch: int = 6,
) -> None:
    """Lambda's event source mapping(s) of one processor over `streams` (with `data` None:
    every shard in one batch, nothing failing). What `sink` receives for `output` is appended
    to that stream after each invocation."""

    def invoke(batch: list[dict[str, Any]]) -> list[int]:
        response = handle({"Records": batch}, ctx)
        if sink is not None and output is not None:
            order = (lambda rs: list(data.draw(st.permutations(rs)))) if (
                shuffle and data is not None) else list
            kinesis.take(sink, output, order)
        return [int(f["itemIdentifier"]) for f in response["batchItemFailures"]]

    shards = {(s, shard): list(records) for s in streams
              for shard, records in sorted(kinesis.of(s).items())}
    if data is None:
        for records in shards.values():
            assert invoke(records) == []
        return
    position = dict.fromkeys(shards, 0)
    delivered: dict[tuple[str, str], list[list[dict[str, Any]]]] = {k: [] for k in shards}
    rounds, calm_after = 0, 3 * sum(len(rs) for rs in shards.values())
    while pending := sorted(k for k, rs in shards.items() if position[k] < len(rs)):
        rounds += 1
        at = data.draw(st.sampled_from(pending))
        records = shards[at]
        batch = records[position[at] : position[at] + data.draw(st.integers(1, max_batch))]
        if faults is not None and rounds <= calm_after:
            faults.inject(data)
        try:
            failed = invoke(batch)
        finally:
            if faults is not None:
                faults.clear()
        if failed:
            # Lambda checkpoints before the lowest failure and retries from it
            lowest = min(failed)
            position[at] = next(i for i, r in enumerate(records)
                                if int(r["kinesis"]["sequenceNumber"]) == lowest)
        else:
            position[at] += len(batch)
        delivered[at].append(batch)
        if data.draw(st.booleans()):
            # an at-least-once redelivery of an earlier batch of this shard
            assert invoke(data.draw(st.sampled_from(delivered[at]))) == []
