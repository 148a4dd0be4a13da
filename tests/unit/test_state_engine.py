"""The state engine (`cascata_runtime.state`), its fences (`cascata_runtime.lineage`) and the
origin gate (`cascata_runtime.origin`), on in-memory ports with a tiny model.

What used to be tested inside each domain function (fences per shard, recent ids, redelivery)
is the engine's job now: a redelivered record and a re-emitted copy are turned away by the
item's fences, whatever the model. The property at the end checks the fences alone against the
lineage rules: for any delivery those rules allow, every distinct (origin sequence, part) of a
chain is admitted exactly once.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascata_runtime.effects import Emission, Keyed, Outcome
from cascata_runtime.envelope import Envelope, Rejection, SourcePosition, parse_envelope
from cascata_runtime.lineage import Fences, Lineage, Stamper, input_lineages, parse_lineage, part_of
from cascata_runtime.origin import (
    DEFAULT_FUTURE_SKEW_S,
    DEFAULT_HORIZON_S,
    OriginPolicy,
    gate,
    parse_origins,
)
from cascata_runtime.state import StateEngine, emitter
from tests.support.events import payment
from tests.support.fakes import MemoryItems, MemoryMarkers, MemorySink

SHARD = "shardId-000000000000"
BIG = 49590338271490256608559692538361571095921575989136588898
"""A real Kinesis sequence number: 56 digits."""


# --- a tiny model -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    total: int = 0
    count: int = 0


class TallyModel:
    """Adds each input's value to its key's total; optionally emits one event per input."""

    def __init__(self, emit_to: str | None = None) -> None:
        self.emit_to = emit_to

    def load(self, key: str, item: Mapping[str, Any] | None) -> Tally:
        return Tally(int(item["total"]), int(item["count"])) if item else Tally()

    def dump(self, key: str, state: Tally) -> dict[str, Any]:
        return {"total": state.total, "count": state.count}

    def apply(self, key: str, state: Tally, inputs: Sequence[Keyed[str, int]]) -> Outcome[Tally]:
        new = Tally(state.total + sum(x.value for x in inputs), state.count + len(inputs))
        if self.emit_to is None:
            return Outcome(new)
        return Outcome(new, tuple(
            Emission(self.emit_to, output(key, x, new.total), x.index) for x in inputs
        ))


def output(key: str, cause: Keyed[str, int], total: int) -> Envelope:
    ident = f"out-{cause.lineage.sequence}-{cause.lineage.part or 'x'}"
    return Envelope(ident, "tally.added", 1, key, datetime(2026, 11, 2, tzinfo=UTC),
                    {"total": total}, ident)


def lineage(sequence: int, *, low: int | None = None, part: str = "", shard: str = SHARD,
            stream: str = "origin", path: tuple[str, ...] = ()) -> Lineage:
    return Lineage(SourcePosition(stream, shard, str(sequence)), path,
                   sequence if low is None else low, part)


def keyed(key: str, value: int, index: int, of: Lineage) -> Keyed[str, int]:
    return Keyed(key, value, index, of)


def batch(*inputs: tuple[str, int, Lineage]) -> list[Keyed[str, int]]:
    return [keyed(k, v, n, lin) for n, (k, v, lin) in enumerate(inputs)]


def totals(items: MemoryItems) -> dict[str, int]:
    return {k: int(item["total"]) for k, item in items.items.items()}


def engine(items: MemoryItems, model: TallyModel | None = None, **kwargs: Any
           ) -> StateEngine[str, Tally, int]:
    return StateEngine(items, model or TallyModel(), **kwargs)


# --- effectively once -------------------------------------------------------------------------


def test_the_same_batch_twice_changes_nothing() -> None:
    # Given a batch touching two keys, applied once
    items = MemoryItems()
    inputs = batch(("a", 5, lineage(10, low=10)), ("b", 7, lineage(11, low=10)),
                   ("a", 1, lineage(12, low=10)))
    first = engine(items).run(inputs)
    assert (first.applied, first.duplicates, first.items_written) == (3, 0, 2)
    stored = json.dumps(items.items, sort_keys=True)
    writes = items.writes
    # When the very same batch is delivered again
    again = engine(items).run(inputs)
    # Then nothing is applied or written
    assert (again.applied, again.duplicates, again.items_written, again.failed) == (0, 3, 0, {})
    assert json.dumps(items.items, sort_keys=True) == stored and items.writes == writes
    assert totals(items) == {"a": 6, "b": 7}


def test_a_re_emitted_copy_at_a_new_position_is_applied_once() -> None:
    # Given a record of origin sequence 20 (part "d"), applied
    items = MemoryItems()
    engine(items).run(batch(("a", 5, lineage(20, low=18, part="d")),
                            ("a", 1, lineage(21, low=18, part="d"))))
    # When an upstream processor re-emits it after a crash: a new position on this stream, a
    # later batch upstream (a higher mark), next to its own copy in the same batch
    report = engine(items).run(batch(("a", 5, lineage(20, low=20, part="d")),
                                     ("a", 5, lineage(20, low=20, part="d")),
                                     ("a", 3, lineage(20, low=20, part="c")),
                                     ("a", 2, lineage(22, low=20, part="d"))))
    # Then the copies count nowhere; the other part of the same origin record and the new
    # record are applied
    assert (report.applied, report.duplicates) == (2, 2)
    assert totals(items) == {"a": 11} and items.items["a"]["count"] == 4


def test_a_copy_in_the_same_batch_as_its_original_is_applied_once() -> None:
    items = MemoryItems()
    report = engine(items).run(batch(("a", 5, lineage(7, low=3, part="d")),
                                     ("b", 1, lineage(8, low=3)),
                                     ("a", 5, lineage(7, low=3, part="d"))))
    assert (report.applied, report.duplicates) == (2, 1)
    assert totals(items) == {"a": 5, "b": 1}


def test_the_same_position_on_another_stream_shard_or_path_is_another_record() -> None:
    # Given the record at sequence 1 of shard 0 of the customers stream, applied
    items = MemoryItems()
    engine(items).run(batch(("a", 1, lineage(1, stream="customers"))))
    # When records at the same sequence of another stream, another shard, or the same origin
    # reached through another path arrive
    report = engine(items).run(batch(
        ("a", 10, lineage(1, stream="payments")),
        ("a", 100, lineage(1, stream="customers", shard="shardId-000000000001")),
        ("a", 1000, lineage(1, stream="customers", path=("validated/shardId-000000000003",))),
        ("a", 1, lineage(1, stream="customers")),  # the original, redelivered
    ))
    # Then each is applied once and only the redelivery is turned away
    assert (report.applied, report.duplicates) == (3, 1)
    assert totals(items) == {"a": 1111}


def test_kafka_offset_zero_is_applied_and_fenced() -> None:
    items = MemoryItems()
    zero = lineage(0, low=0, stream="topic", shard="0")
    assert engine(items).run(batch(("a", 4, zero))).applied == 1
    assert engine(items).run(batch(("a", 4, zero))).duplicates == 1
    assert totals(items) == {"a": 4}


def test_the_engine_adds_key_version_and_fences_to_the_models_item() -> None:
    items = MemoryItems(key="account_id")
    engine(items).run(batch(("a", 2, lineage(BIG, low=BIG))))
    item = items.items["a"]
    assert item["account_id"] == "a" and item["version"] == 1
    assert item["total"] == 2 and item["count"] == 1
    # marks are strings: a 56-digit sequence number does not fit a DynamoDB number
    assert list(item["fences"].values()) == [f"{BIG} 0"]
    engine(items).run(batch(("a", 2, lineage(BIG + 1, low=BIG))))
    assert items.items["a"]["version"] == 2
    assert list(items.items["a"]["fences"].values()) == [f"{BIG} 0 1"]


# --- fences stay small --------------------------------------------------------------------------


def test_low_water_mark_compaction_forgets_what_is_below_the_mark() -> None:
    # Given records 10..14 of one upstream batch (mark 10) applied to one key
    fences = Fences()
    assert all(fences.admit(lineage(s, low=10, part="d")) for s in range(10, 15))
    assert fences.to_item() == {lineage(10).chain: "10 0.d 1.d 2.d 3.d 4.d"}
    # When a record of the next upstream batch arrives (mark 15)
    assert fences.admit(lineage(17, low=15, part="d"))
    # Then everything below 15 is forgotten, and is still known to be a copy
    assert fences.to_item() == {lineage(10).chain: "15 2.d"}
    assert fences.size() == 1
    assert not any(fences.admit(lineage(s, low=10, part="d")) for s in range(10, 15))
    assert not fences.admit(lineage(17, low=15, part="d"))
    # and what is stored reads back the same
    again = Fences(fences.to_item())
    assert not again.changed
    assert not again.admit(lineage(17, low=17, part="d"))
    assert again.to_item() == {lineage(10).chain: "17 0.d"}
    assert again.admit(lineage(18, low=17, part="d"))


def test_a_mark_never_moves_back() -> None:
    fences = Fences()
    assert fences.admit(lineage(30, low=30))
    # a re-emitted copy of an older batch carries an older mark: it is below the current one
    assert not fences.admit(lineage(12, low=12))
    assert fences.to_item() == {lineage(30).chain: "30 0"}


def hot_key_stream(rng: random.Random, *, records: int, chains: int, upstream_batch: int,
                   base: int) -> tuple[list[Lineage], dict[tuple[str, int, str], int]]:
    """Records of one hot key as its consumer's shard holds them: `chains` upstream shards,
    each emitting batches of `upstream_batch` records (mark: the batch's first sequence), in
    any order within a batch (PutRecords retries), about a third of them re-emitted after a
    crash (the whole batch or the suffix from a failed record, with the retry's mark). A chain
    that crashed waits (Lambda's retry backoff) while the others go on, so its copies land
    hundreds of records after their originals. Returns the stream and each distinct record's
    value."""
    queues: list[list[tuple[list[Lineage], bool]]] = []
    values: dict[tuple[str, int, str], int] = {}
    shard_path = ("mid/shardId-000000000000",)
    for chain in range(chains):
        queue: list[tuple[list[Lineage], bool]] = []

        def emit(seqs: list[int], low: int, chain: int = chain) -> list[Lineage]:
            return [lineage(base + s, low=base + low, part=part_of(f"{chain}-{s}"),
                            shard=f"shardId-{chain:012d}", path=shard_path) for s in seqs]

        for start in range(0, records // chains, upstream_batch):
            seqs = list(range(start, min(records // chains, start + upstream_batch)))
            originals = emit(seqs, seqs[0])
            for lin in originals:
                values[(lin.chain, lin.sequence, lin.part)] = rng.randint(1, 1000)
            rng.shuffle(originals)
            crashed = rng.random() < 0.35
            queue.append((originals, crashed))
            if crashed:
                failed_at = rng.randrange(len(seqs))
                again = emit(seqs[failed_at:], seqs[failed_at])
                rng.shuffle(again)
                queue.append((again, False))
        queues.append(queue)
    out: list[Lineage] = []
    blocked_until = [0] * chains
    step = 0
    while live := [c for c in range(chains) if queues[c]]:
        ready = [c for c in live if blocked_until[c] <= step] or live
        chain = rng.choice(ready)
        emission, crashed = queues[chain].pop(0)
        out.extend(emission)
        step += 1
        if crashed:
            blocked_until[chain] = step + rng.randint(4, 12)
    return out, values


def test_a_hot_key_is_exact_and_its_fences_stay_small() -> None:
    # Given 5,000 records of one key from four upstream shards, with re-emitted copies landing
    # hundreds of records after their originals (Kafka-style consecutive offsets)
    rng = random.Random(7)
    stream, values = hot_key_stream(rng, records=5_000, chains=4, upstream_batch=25, base=BIG)
    assert len(stream) > 5_600
    first_at: dict[tuple[str, int, str], int] = {}
    late = 0
    for n, lin in enumerate(stream):
        ident = (lin.chain, lin.sequence, lin.part)
        if ident in first_at and n - first_at[ident] >= 100:
            late += 1
        first_at.setdefault(ident, n)
    assert late > 200  # copies really come hundreds of records after their originals
    # When its consumer reads them in batches of 100, each batch sometimes delivered twice
    items = MemoryItems()
    run = engine(items)
    largest = 0
    applied = duplicates = 0
    for start in range(0, len(stream), 100):
        inputs = [keyed("hot", values[(lin.chain, lin.sequence, lin.part)], n, lin)
                  for n, lin in enumerate(stream[start : start + 100])]
        for _ in range(2 if rng.random() < 0.2 else 1):
            report = run.run(inputs)
            assert report.failed == {}
            applied += report.applied
            duplicates += report.duplicates
        largest = max(largest, len(json.dumps(items.items["hot"]["fences"])))
    # Then each distinct record is applied exactly once
    assert applied == 5_000 and items.items["hot"]["count"] == 5_000
    assert items.items["hot"]["total"] == sum(values.values())
    # and the fences never held more than about one upstream batch per chain
    assert largest < 1024, largest


# --- writes, races and failures ----------------------------------------------------------------


class RacingItems(MemoryItems):
    """Another writer commits `rival` (through its own engine) just before our first put."""

    def __init__(self, rival: list[Keyed[str, int]], times: int = 1) -> None:
        super().__init__()
        self.rival = rival
        self.times = times

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        if self.times:
            self.times -= 1
            StateEngine(MemoryItemsView(self), TallyModel()).run(self.rival)
        return super().put_if_version(item, expected_version)


class MemoryItemsView:
    """The same items without the racing hook (the rival writer's own connection)."""

    def __init__(self, items: MemoryItems) -> None:
        self._items = items

    def get_many(self, keys: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        return self._items.get_many(keys)

    def key_attributes(self, key: str) -> dict[str, Any]:
        return self._items.key_attributes(key)

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        return MemoryItems.put_if_version(self._items, item, expected_version)


def test_a_lost_race_re_reads_and_re_applies() -> None:
    # Given another writer that commits other records of key a just before our write
    items = RacingItems(batch(("a", 100, lineage(50, stream="other"))))
    published: list[list[str]] = []

    def publish(emissions: Sequence[Emission]) -> Mapping[int, str]:
        published.append([f"{e.envelope.event_id}={e.envelope.data['total']}" for e in emissions])
        return {}

    # When our batch is applied
    report = engine(items, TallyModel(emit_to="out"), publish=publish).run(
        batch(("a", 5, lineage(1))))
    # Then the lost race re-reads the item and applies our record on top of the rival's
    assert report.races == 1 and report.failed == {} and report.applied == 1
    assert totals(items) == {"a": 105} and items.items["a"]["version"] == 2
    # and the outputs of the new application are published too, before the write
    assert published == [["out-1-x=5"], ["out-1-x=105"]]


def test_a_race_with_a_writer_applying_the_same_records_applies_them_once() -> None:
    # Given another lane that applies the very same record first (a concurrent redelivery)
    same = batch(("a", 5, lineage(1)))
    items = RacingItems(same)
    report = engine(items).run(same)
    # Then the re-read finds it applied: nothing more is written
    assert report.races == 1 and report.failed == {}
    assert (report.applied, report.duplicates, report.items_written) == (0, 1, 0)
    assert totals(items) == {"a": 5}


class AlwaysBeaten(MemoryItems):
    """Another writer commits a new record of key `a` just before each of our writes of a."""

    def __init__(self) -> None:
        super().__init__()
        self.rival_sequences = iter(range(100, 200))

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        if item["account_id"] == "a":
            StateEngine(MemoryItemsView(self), TallyModel()).run(
                batch(("a", 1, lineage(next(self.rival_sequences), stream="other"))))
        return super().put_if_version(item, expected_version)


def test_a_key_that_loses_every_race_fails_its_own_records_only() -> None:
    items = AlwaysBeaten()
    report = engine(items, attempts=3).run(batch(("a", 5, lineage(1)), ("b", 7, lineage(2))))
    assert set(report.failed) == {0} and "lost every race" in report.failed[0]
    assert report.races == 3
    assert totals(items) == {"a": 3, "b": 7}  # only the rival's records on a


def test_a_key_whose_write_raises_fails_only_its_own_records() -> None:
    # Given a batch of three keys, the write of b failing
    items = MemoryItems()
    items.fail_accounts = {"b"}
    report = engine(items).run(batch(("a", 1, lineage(1)), ("b", 2, lineage(2)),
                                     ("c", 3, lineage(3)), ("b", 4, lineage(4))))
    # Then b's records are failed and the others applied
    assert sorted(report.failed) == [1, 3] and "write failed" in report.failed[1]
    assert totals(items) == {"a": 1, "c": 3}
    # and Lambda's retry from the lowest failed record applies b's once, the others not again
    items.fail_accounts = set()
    retry = engine(items).run(batch(("b", 2, lineage(2)), ("c", 3, lineage(3)),
                                    ("b", 4, lineage(4))))
    assert (retry.applied, retry.duplicates) == (2, 1)
    assert totals(items) == {"a": 1, "b": 6, "c": 3}


def test_a_failed_read_fails_every_record_and_writes_nothing() -> None:
    class Broken(MemoryItems):
        def get_many(self, keys: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
            raise RuntimeError("throttled")

    items = Broken()
    report = engine(items).run(batch(("a", 1, lineage(1)), ("b", 2, lineage(2))))
    assert sorted(report.failed) == [0, 1] and items.items == {}


def test_outputs_are_published_before_the_state_is_written() -> None:
    items = MemoryItems()
    seen_at_publish: list[dict[str, Any]] = []

    def publish(emissions: Sequence[Emission]) -> Mapping[int, str]:
        seen_at_publish.append({k: dict(v) for k, v in items.items.items()})
        return {}

    engine(items, TallyModel(emit_to="out"), publish=publish).run(
        batch(("a", 1, lineage(1)), ("b", 2, lineage(2))))
    assert seen_at_publish == [{}]
    assert totals(items) == {"a": 1, "b": 2}


def test_a_failed_publish_leaves_that_keys_state_unwritten() -> None:
    # Given the outputs caused by record 1 (key b) failing to publish
    items = MemoryItems()

    def publish(emissions: Sequence[Emission]) -> Mapping[int, str]:
        return {e.cause: "throttled" for e in emissions if e.cause == 1}

    report = engine(items, TallyModel(emit_to="out"), publish=publish).run(
        batch(("a", 1, lineage(1)), ("b", 2, lineage(2)), ("b", 3, lineage(3))))
    # Then all of b's records fail and b's state is not written; a is
    assert sorted(report.failed) == [1, 2] and "throttled" in report.failed[2]
    assert totals(items) == {"a": 1}
    assert [e.envelope.key for e in report.emitted] == ["a"]


def test_outputs_carry_their_causes_lineage() -> None:
    # Given a batch read from an origin shard (mark: its lowest sequence)
    positions = [SourcePosition("origin", SHARD, str(s)) for s in (40, 41)]
    lineages = input_lineages(positions, [None, None], origins=["origin"])
    sink = MemorySink()
    items = MemoryItems()
    engine(items, TallyModel(emit_to="out"), publish=emitter(sink, Stamper(lineages))).run(
        [keyed("a", 1, 0, lineages[0]), keyed("b", 2, 1, lineages[1])])
    # Then each output continues its cause's lineage, with the batch's mark and its own part
    out = {}
    for record in sink.records["out"]:
        env = parse_envelope(json.loads(record.data))
        assert isinstance(env, Envelope) and env.lineage is not None
        out[env.key] = env.lineage
    assert out["a"] == Lineage(positions[0], (), 40, part_of("out-40-x"))
    assert out["b"] == Lineage(positions[1], (), 40, part_of("out-41-x"))
    assert parse_lineage(out["a"].as_dict()) == out["a"]


# --- the property: fences against the lineage rules ---------------------------------------------

CHAINS = [("customers", SHARD), ("payments", SHARD), ("payments", "shardId-000000000001")]


def hop(data: st.DataObject, records: list[tuple[Lineage, str]], *,
        out: Any) -> list[tuple[Lineage, str]]:
    """One processor over one shard, as Lambda runs it: batches from the checkpoint, each
    emitting every output of the records before its first failed record and any of the rest,
    in any order; then the retry from that record. `out(lineage, low)` is an output's lineage
    (`low`: the mark the emitting batch stamps). Each item is (lineage, distinct identity)."""
    emitted: list[tuple[Lineage, str]] = []
    pos, rounds = 0, 0
    while pos < len(records):
        rounds += 1
        group = records[pos : pos + data.draw(st.integers(1, 5))]
        low = min(lin.low_water for lin, _ in group)
        outputs = [(out(lin, low), ident) for lin, ident in group]
        # the first failed record (len(group): none); bounded, so that the reading ends
        failed_at = len(group) if rounds > 4 * len(records) else data.draw(
            st.integers(0, len(group)))
        sent = outputs[:failed_at] + [o for o in outputs[failed_at:] if data.draw(st.booleans())]
        emitted.extend(data.draw(st.permutations(sent)))
        pos += failed_at
    return emitted


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(data=st.data())
def test_fences_admit_every_distinct_record_exactly_once(data: st.DataObject) -> None:
    # Given the records of a few origin chains (two streams share shard ids and sequence
    # numbers), each origin record yielding one or two parts
    streams: list[list[tuple[Lineage, str]]] = []
    distinct: set[str] = set()
    for stream, shard in CHAINS:
        seq = data.draw(st.integers(0, 3))
        origin: list[tuple[Lineage, str]] = []
        for _ in range(data.draw(st.integers(0, 8))):
            seq += data.draw(st.integers(1, 3))
            for part in data.draw(st.sampled_from([["d"], ["c"], ["d", "c"]])):
                ident = f"{stream}/{shard}/{seq}/{part}"
                origin.append((lineage(seq, low=seq, part=part, stream=stream, shard=shard),
                               ident))
                distinct.add(ident)
        # read by a first processor (the mark: the lowest origin sequence of its batch)...
        first = hop(data, origin, out=lambda lin, low: Lineage(
            lin.origin, (), low, lin.part))
        # ...and, for some chains, by a second one (the lowest incoming mark of its batch)
        if data.draw(st.booleans()):
            first = [(Lineage(lin.origin, ("mid/shardId-0",), lin.low_water, lin.part), i)
                     for lin, i in first]
            first = hop(data, first, out=lambda lin, low: Lineage(
                lin.origin, lin.path, low, part_of(lin.part)))
        streams.append(first)
    # When the chains interleave on the consumer's shard, each in its own order...
    cursors = [0] * len(streams)
    arrived: list[tuple[Lineage, str]] = []
    while live := [n for n, s in enumerate(streams) if cursors[n] < len(s)]:
        n = data.draw(st.sampled_from(live))
        arrived.append(streams[n][cursors[n]])
        cursors[n] += 1
    # ...and the consumer reads them in batches, its fences stored between batches, a batch
    # sometimes failing to store (retried) or delivered again after it was stored
    stored: dict[str, str] = {}
    admitted: list[str] = []
    pos = 0
    while pos < len(arrived):
        group = arrived[pos : pos + data.draw(st.integers(1, 6))]
        for _ in range(data.draw(st.integers(1, 2))):
            fences = Fences(stored)
            new = [ident for lin, ident in group if fences.admit(lin)]
            if data.draw(st.integers(0, 3)) == 0:
                continue  # the write failed: nothing stored, the batch comes again
            stored = fences.to_item()
            admitted.extend(new)
            break
        else:
            continue
        pos += len(group)
        if data.draw(st.booleans()):
            assert [i for lin, i in group if Fences(stored).admit(lin)] == []
    # Then every distinct record was admitted exactly once
    assert sorted(admitted) == sorted(distinct)


def test_the_property_would_catch_a_fence_without_marks() -> None:
    # Guard: forgetting the seen set at every mark move (instead of only what is below the
    # mark) admits a copy from the same upstream batch again.
    fences = Fences()
    assert fences.admit(lineage(10, low=10, part="d"))
    assert fences.admit(lineage(11, low=10, part="d"))
    assert not fences.admit(lineage(10, low=10, part="d"))
    assert not fences.admit(lineage(11, low=11, part="d"))  # a retry from 11: still known


# --- the origin gate ------------------------------------------------------------------------------

ARRIVAL = datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp()
RAW = "payments-raw"


def envelope(event_id: str, occurred_at: str = "2026-11-02T08:59:00Z") -> Envelope:
    env = parse_envelope(payment(event_id, occurred_at=occurred_at))
    assert isinstance(env, Envelope)
    return env


def run_gate(events: Sequence[Envelope | Rejection], markers: MemoryMarkers | None, *,
             streams: Sequence[str] | None = None, arrivals: Sequence[float] | None = None,
             first: int = 1, policy: OriginPolicy | None = None) -> Any:
    n = len(events)
    return gate(events, streams=streams or [RAW] * n,
                positions=[f"{SHARD}:{first + i}" for i in range(n)],
                arrivals=arrivals or [ARRIVAL] * n, policies={RAW: policy or OriginPolicy()},
                markers=markers)


@pytest.mark.parametrize(("occurred_at", "code"), [
    ("1999-12-31T23:59:59Z", "event_time_too_early"),
    ("2026-11-02T09:05:01Z", "event_time_in_future"),
    ("2099-01-01T00:00:00Z", "event_time_in_future"),
])
def test_an_event_dated_out_of_bounds_is_quarantined_with_the_reason(
    occurred_at: str, code: str
) -> None:
    markers = MemoryMarkers()
    gated = run_gate([envelope("e1", occurred_at)], markers)
    [rejection] = gated.events
    assert isinstance(rejection, Rejection)
    assert (rejection.field, rejection.code) == ("occurred_at", code)
    assert markers.claims == []  # no marker for an event that never enters


def test_the_bounds_are_inclusive_and_configurable() -> None:
    # exactly the allowed skew after arrival, and exactly the earliest time, pass
    at_skew = envelope("e1", "2026-11-02T09:05:00Z")
    assert run_gate([at_skew], None).events == [at_skew]
    assert DEFAULT_FUTURE_SKEW_S == 300
    strict = OriginPolicy(max_future_skew_s=0, earliest=datetime(2026, 11, 2, tzinfo=UTC))
    [late] = run_gate([envelope("e2", "2026-11-02T09:00:01Z")], None, policy=strict).events
    assert isinstance(late, Rejection) and late.code == "event_time_in_future"
    [early] = run_gate([envelope("e3", "2026-11-01T23:59:59Z")], None, policy=strict).events
    assert isinstance(early, Rejection) and early.code == "event_time_too_early"
    # an unknown arrival time (0) bounds only the earliest time
    far = envelope("e4", "2099-01-01T00:00:00Z")
    assert run_gate([far], None, arrivals=[0.0]).events == [far]


def test_copies_in_one_batch_keep_the_lowest_position() -> None:
    # Given e1 at positions 1 and 3 of one batch, and e2 at 2
    markers = MemoryMarkers()
    e1, e2 = envelope("e1"), envelope("e2")
    gated = run_gate([e1, e2, e1], markers)
    # Then the copy at 3 is suppressed before any marker is claimed, and 1 claims e1
    assert gated.events == [e1, e2, None] and gated.duplicates == 1
    assert sorted((m, p) for m, p, _, _ in markers.claims) == [
        (f"{RAW}#e1", f"{SHARD}:1"), (f"{RAW}#e2", f"{SHARD}:2")]


def test_a_copy_at_another_position_is_suppressed_and_a_redelivery_is_not() -> None:
    markers = MemoryMarkers()
    e1 = envelope("e1")
    assert run_gate([e1], markers, first=1).events == [e1]
    # the producer's retry, at position 5: the claim fails, the copy is suppressed
    copy = run_gate([e1], markers, first=5)
    assert copy.events == [None] and copy.duplicates == 1 and copy.failed == {}
    # the same record delivered again (position 1): its own marker, it passes
    assert run_gate([e1], markers, first=1).events == [e1]


def test_a_claim_that_raises_fails_that_record_only() -> None:
    markers = MemoryMarkers()
    markers.fail = {f"{RAW}#e2"}
    e1, e2, e3 = envelope("e1"), envelope("e2"), envelope("e3")
    gated = run_gate([e1, e2, e3], markers)
    assert list(gated.failed) == [1] and "marker" in gated.failed[1]
    assert gated.events[0] == e1 and gated.events[2] == e3 and gated.duplicates == 0


def test_a_marker_expired_at_the_arriving_records_arrival_time_admits_it() -> None:
    # Given e1 claimed on its arrival: the marker expires one horizon later
    markers = MemoryMarkers()
    e1 = envelope("e1")
    run_gate([e1], markers, first=1)
    [(_, _, expires_at, now)] = markers.claims
    assert (now, expires_at) == (int(ARRIVAL), int(ARRIVAL) + DEFAULT_HORIZON_S)
    # When a copy arrives one second before the horizon, it is a duplicate
    before = run_gate([e1], markers, first=7, arrivals=[ARRIVAL + DEFAULT_HORIZON_S - 1])
    assert before.events == [None]
    # and a copy arriving at the horizon is admitted, whenever TTL actually deletes
    at = run_gate([e1], markers, first=8, arrivals=[ARRIVAL + DEFAULT_HORIZON_S])
    assert at.events == [e1]
    # and now holds the marker from its own arrival
    assert markers.markers[f"{RAW}#e1"] == (f"{SHARD}:8",
                                            int(ARRIVAL) + 2 * DEFAULT_HORIZON_S)


def test_records_of_other_streams_and_rejections_pass_the_gate_unchanged() -> None:
    markers = MemoryMarkers()
    bad = Rejection("$", "invalid_json", "not JSON")
    e1 = envelope("e1", "2099-01-01T00:00:00Z")
    gated = run_gate([bad, e1, e1], markers, streams=[RAW, "derived", "derived"])
    assert gated.events == [bad, e1, e1] and markers.claims == []


def test_without_markers_copies_in_one_batch_are_still_suppressed() -> None:
    e1 = envelope("e1")
    gated = run_gate([e1, e1], None)
    assert gated.events == [e1, None] and gated.duplicates == 1


def test_parse_origins_reads_each_streams_policy_with_defaults() -> None:
    assert parse_origins("") == {}
    policies = parse_origins(json.dumps({
        "cascata-prod-payments-raw": {"dedupe_horizon_s": 600},
        "cascata-prod-customers": {"max_future_skew_s": 0, "earliest": "2020-01-01T00:00:00Z"},
    }))
    assert policies == {
        "cascata-prod-payments-raw": OriginPolicy(dedupe_horizon_s=600),
        "cascata-prod-customers": OriginPolicy(max_future_skew_s=0,
                                               earliest=datetime(2020, 1, 1, tzinfo=UTC)),
    }
    # a policy written out reads back the same
    policy = OriginPolicy(dedupe_horizon_s=7, max_future_skew_s=9,
                          earliest=datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC))
    assert parse_origins(json.dumps({"s": policy.as_dict()})) == {"s": policy}


@pytest.mark.parametrize(("text", "problem"), [
    ("[]", "not a JSON object"),
    ('{"s": 5}', "not an object"),
    ('{"s": {"earliest": "yesterday"}}', "origin stream 's'"),
])
def test_parse_origins_refuses_a_malformed_setting(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_origins(text)


def test_a_malformed_origin_policy_is_a_configuration_error_naming_the_variable() -> None:
    from cascata_runtime.errors import ConfigurationError
    from cascata_runtime.handler import origins_from

    with pytest.raises(ConfigurationError, match="ORIGIN_STREAMS"):
        origins_from("{not json", None, client=lambda service: None)
    with pytest.raises(ConfigurationError, match="ORIGIN_STREAMS"):
        origins_from('{"s": {"earliest": "yesterday"}}', None, client=lambda service: None)
