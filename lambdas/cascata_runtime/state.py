"""The state engine every stateful processor uses: keyed state, effectively once, one write per
touched key per batch.

A processor hands the engine its batch as `Keyed` inputs (an item key, a domain value, the
input record's index and lineage) and a `Model` (how to load, dump and update one key's state,
purely). The engine then:

1. reads every touched item in one strongly consistent batch read;
2. per key, turns away the inputs the item's fences have already seen (a redelivery of the same
   record, a copy re-emitted upstream after a crash: see `cascata_runtime.lineage`), and
   applies the rest in input order with the model;
3. emits the outputs the model produced (before the state, so a crash in between re-derives
   the same outputs from the same state on the retry: deterministic ids make them copies);
4. writes each changed item once, conditioned on the version it read; a lost race re-reads
   the item, re-applies, emits what the new application produced, and tries again;
5. fails only the records of a key whose outputs or item cannot be written (Lambda retries from
   the lowest failed record; the fences turn away what was applied).

No idempotency record is ever written: the fences live in the item the batch writes anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from cascata_runtime.effects import Emission, Keyed, Outcome
from cascata_runtime.lineage import Fences, Stamper
from cascata_runtime.ports import ItemStore, Sink
from cascata_runtime.shell import emit

__all__ = ["EngineReport", "Keyed", "KeyedStore", "Model", "Outcome", "Publish", "StateEngine",
           "emitter"]

S = TypeVar("S")
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

FENCES = "fences"
VERSION = "version"
WRITE_ATTEMPTS = 4


class Model(Protocol[K, S, T]):
    """How one processor's state is stored and updated. `apply` must be pure."""

    def load(self, key: K, item: Mapping[str, Any] | None) -> S: ...

    def dump(self, key: K, state: S) -> dict[str, Any]:
        """The item's domain attributes (the engine adds the key, `version` and `fences`)."""
        ...

    def apply(self, key: K, state: S, inputs: Sequence[Keyed[K, T]]) -> Outcome[S]: ...


KeyedStore = ItemStore
"""The store the engine writes: `cascata_runtime.ports.ItemStore`."""


Publish = Callable[[Sequence[Emission]], Mapping[int, str]]
"""Writes outputs; returns the causes (input indexes) whose outputs failed, with a reason."""


@dataclass(slots=True)
class EngineReport:
    failed: dict[int, str] = field(default_factory=dict)
    applied: int = 0
    duplicates: int = 0
    items_written: int = 0
    races: int = 0
    emitted: list[Emission] = field(default_factory=list)


def emitter(sink: Sink, stamper: Stamper | None = None) -> Publish:
    """Emission through a `Sink` (PutRecords), each output stamped with its cause's lineage."""

    def publish(emissions: Sequence[Emission]) -> Mapping[int, str]:
        failed: dict[int, str] = {}
        for emission, reason in emit(sink, emissions, stamper):
            failed.setdefault(emission.cause, reason)
        return failed

    return publish


class StateEngine(Generic[K, S, T]):
    def __init__(
        self,
        store: KeyedStore[K],
        model: Model[K, S, T],
        *,
        publish: Publish | None = None,
        attempts: int = WRITE_ATTEMPTS,
        writers: int = 8,
        what: str = "state",
    ) -> None:
        self._store = store
        self._model = model
        self._publish = publish
        self._attempts = attempts
        self._writers = writers
        self._what = what

    def run(self, inputs: Sequence[Keyed[K, T]], *, publish: Publish | None = None
            ) -> EngineReport:
        publish = publish or self._publish
        report = EngineReport()
        by_key: dict[K, list[Keyed[K, T]]] = {}
        for item in inputs:
            by_key.setdefault(item.key, []).append(item)
        if not by_key:
            return report
        try:
            stored = self._store.get_many(list(by_key))
        except Exception as exc:  # noqa: BLE001 - nothing can be applied; all retried
            for group in by_key.values():
                report.failed.update(_fail(group, f"{self._what} read failed: {exc}"))
            return report

        # First attempt of every key: apply, publish all outputs together, then commit.
        planned = {key: self._plan(key, group, stored.get(key)) for key, group in by_key.items()}
        emissions = [e for p in planned.values() if p is not None for e in p.outcome.emissions]
        failed_causes: Mapping[int, str] = {}
        if emissions:
            if publish is None:
                raise AssertionError("a model produced outputs but the engine has no publisher")
            failed_causes = publish(emissions)
        ready: list[K] = []
        for key, plan in planned.items():
            group = by_key[key]
            if plan is None:
                report.duplicates += len(group)
                continue
            problem = next((failed_causes[e.cause] for e in plan.outcome.emissions
                            if e.cause in failed_causes), None)
            if problem is not None:
                report.failed.update(_fail(group, f"output not written: {problem}"))
                continue
            report.emitted.extend(plan.outcome.emissions)
            ready.append(key)

        def commit(key: K) -> tuple[dict[int, str], _Plan[S] | None, int]:
            return self._commit(key, by_key[key], planned[key], publish)

        with ThreadPoolExecutor(max_workers=max(1, min(self._writers, len(ready)))) as pool:
            for key, (failed, final, races) in zip(ready, pool.map(commit, ready), strict=True):
                report.races += races
                if failed:
                    report.failed.update(failed)
                elif final is not None:
                    if final is not planned[key]:
                        # A lost race: what was stored is the re-applied plan and its outputs.
                        first = planned[key]
                        if first is not None:
                            for emission in first.outcome.emissions:
                                report.emitted.remove(emission)
                        report.emitted.extend(final.outcome.emissions)
                    report.applied += len(final.new)
                    report.duplicates += len(by_key[key]) - len(final.new)
                    report.items_written += 1
                else:
                    report.duplicates += len(by_key[key])
        return report

    def _plan(self, key: K, group: Sequence[Keyed[K, T]], item: Mapping[str, Any] | None
              ) -> _Plan[S] | None:
        fences = Fences(item.get(FENCES) if item else None)
        new = [x for x in group if fences.admit(x.lineage)]
        if not new:
            return None
        state = self._model.load(key, item)
        outcome = self._model.apply(key, state, new)
        version = int(item.get(VERSION, 0)) if item else 0
        record = {
            **self._model.dump(key, outcome.state),
            **self._store.key_attributes(key),
            FENCES: fences.to_item(),
            VERSION: version + 1,
        }
        return _Plan(outcome, new, record, version)

    def _commit(
        self, key: K, group: Sequence[Keyed[K, T]], plan: _Plan[S] | None,
        publish: Publish | None,
    ) -> tuple[dict[int, str], _Plan[S] | None, int]:
        races = 0
        for _attempt in range(self._attempts):
            if plan is None:
                return {}, None, races
            try:
                if self._store.put_if_version(plan.record, plan.version or None):
                    return {}, plan, races
                races += 1
                item = self._store.get_many([key]).get(key)
            except Exception as exc:  # noqa: BLE001 - fails this key's records only
                return _fail(group, f"{self._what} write failed: {exc}"), None, races
            plan = self._plan(key, group, item)
            if plan is not None and plan.outcome.emissions:
                if publish is None:
                    raise AssertionError("a model produced outputs but the engine has no "
                                         "publisher")
                failed = publish(plan.outcome.emissions)
                if failed:
                    reason = next(iter(failed.values()))
                    return _fail(group, f"output not written: {reason}"), None, races
        return _fail(group, f"{self._what} write lost every race for its key"), None, races


@dataclass(frozen=True, slots=True)
class _Plan(Generic[S]):
    outcome: Outcome[S]
    new: list[Any]
    record: dict[str, Any]
    version: int


def _fail(group: Sequence[Keyed[Any, Any]], reason: str) -> dict[int, str]:
    return {x.index: reason for x in group}
