"""The values a processor's pure core returns: what to emit, quarantine and fail, and for
stateful processors one key's inputs and outcome. No I/O here: domain modules import this,
never the shell."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cascata_runtime.envelope import Envelope, Rejection
from cascata_runtime.lineage import Lineage

S = TypeVar("S")
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Emission:
    stream: str
    envelope: Envelope
    cause: int
    """Index of the input record this output comes from."""


@dataclass(frozen=True, slots=True)
class Effects:
    emissions: tuple[Emission, ...] = ()
    quarantined: tuple[tuple[int, Rejection], ...] = ()
    failed: Mapping[int, str] = field(default_factory=dict)
    """Input records the core could not process now (they will be retried)."""


@dataclass(frozen=True, slots=True)
class Keyed(Generic[K, T]):
    """One input of one item of keyed state; `index` is the input record's place in the batch."""

    key: K
    value: T
    index: int
    lineage: Lineage


@dataclass(frozen=True, slots=True)
class Outcome(Generic[S]):
    """One key's new state, and the events its inputs caused (emitted before it is stored)."""

    state: S
    emissions: tuple[Emission, ...] = ()
