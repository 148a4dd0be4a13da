"""Lineage: where a record's origin fact entered the pipeline, and the fence that makes it once.

Every event on a derived stream carries a `lineage`: the position of the origin record it comes
from (origin stream, shard, sequence), the path of derived streams it travelled (`stream/shard`
of each hop), a low-water mark and a part tag. Together they let any stateful consumer turn away
a redelivered record and a re-emitted copy exactly, for hot keys as for quiet ones, in state
that stays bounded. The reasoning, which is Kafka's idempotent producer generalised to chains of
Lambda event source mappings:

- A *chain* is an origin shard plus the path. Along one chain records arrive in the order the
  last hop emitted them, and a hop emits a batch only after the batch before it was
  checkpointed (Lambda processes a shard's batches one at a time, in order).
- The first hop reading an origin stream stamps as low-water mark the lowest origin sequence of
  its batch: everything below it was checkpointed and is never delivered to it again. Each later
  hop stamps the lowest incoming low-water mark among its batch's records of the same chain,
  identical on every output of that batch, so reordering inside one PutRecords request (partial
  failures retried entry by entry) never lets a mark overtake a record it covers.
- Hence, at any consumer, once a record of a chain with mark `w` has arrived, no first copy of
  an origin sequence below `w` can arrive on that chain any more. A consumer keeps, per item and
  per chain, the mark and the origin sequences applied at or above it: a record below the mark
  or already in the set is a copy. Whatever sits below the mark is forgotten (compaction), so a
  fence holds about one upstream batch of a key's records, however busy the key.
- `part` tells apart the records one origin fact yields along the same chain (a payment's debit
  and credit): a short hash of the output's own event id, which is deterministic (derived ids
  are computed from their cause), so a re-emitted copy has the same part and another fact not.
- The user records of a KPL aggregate are distinct origin facts at one sequence number: the
  origin position carries each one's `subsequence`, and the fences key it with the part
  (`Lineage.fence_part`), so no user record is taken for a copy of another. A redelivered
  aggregate starts at its own sequence number, so the low-water marks hold as before. Without
  a subsequence the lineage and the fences are exactly what they were.

A processor with `ParallelizationFactor` > 1 processes a shard in concurrent lanes, so its
batch's first position is not a shard-wide low-water mark; the declaration refuses one that
emits (`cascata.pipeline`), and a consumer with several lanes is fine (a key stays in one lane).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cascata_runtime.envelope import SourcePosition

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PART = re.compile(r"^[A-Za-z0-9_-]{0,16}$")
"""What `part_of` yields (base64url), and nothing that could break the fences' text form."""
_DECIMAL = re.compile(r"[0-9]+")
"""ASCII digits only: `str.isdigit` also takes characters `int` refuses (superscripts)."""
_SUBSEQUENCE = re.compile(r"0|[1-9][0-9]{0,8}")
MAX_PATH = 16
"""Hops a lineage may record; a longer path is a cycle or a forged field."""


@dataclass(frozen=True, slots=True)
class Lineage:
    origin: SourcePosition
    """The origin record (an origin stream's shard and sequence) this record derives from."""
    path: tuple[str, ...] = ()
    """`stream/shard` of each derived stream travelled, including the reading consumer's own
    input for an input lineage; empty for a record read from its origin stream."""
    low_water: int = 0
    """No first copy of an origin sequence below this arrives on this chain any more."""
    part: str = ""
    """Which of the records one origin fact yields along this chain ('' when read from the
    origin stream itself)."""

    @property
    def sequence(self) -> int:
        return int(self.origin.sequence)

    @property
    def fence_part(self) -> str:
        """What tells this record apart from others of its origin sequence on its chain: the
        part, and for a user record of a KPL aggregate its subsequence after a `:` (which no
        part contains)."""
        sub = self.origin.subsequence
        return self.part if sub is None else f"{self.part}:{_encode(sub)}"

    @property
    def chain(self) -> str:
        """A short, stable name of the chain (origin shard + path) for the fence map."""
        text = "\x1f".join((self.origin.stream, self.origin.shard, *self.path))
        digest = hashlib.sha256(text.encode()).digest()[:6]
        return base64.urlsafe_b64encode(digest).decode()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "origin": self.origin.as_dict(),
            "low_water": str(self.low_water),
        }
        if self.path:
            out["path"] = list(self.path)
        if self.part:
            out["part"] = self.part
        return out


def parse_lineage(value: object) -> Lineage | None:
    """A lineage from an envelope's `lineage` field, or None when absent or malformed."""
    if not isinstance(value, Mapping):
        return None
    origin = value.get("origin")
    path = value.get("path", [])
    part = value.get("part", "")
    low = value.get("low_water")
    if not isinstance(origin, Mapping) or not isinstance(path, list | tuple):
        return None
    stream, shard, sequence = origin.get("stream"), origin.get("shard"), origin.get("sequence")
    if not all(isinstance(v, str) and 0 < len(v) <= 256 for v in (stream, shard, sequence)):
        return None
    sub = origin.get("subsequence")
    if sub is not None and not (isinstance(sub, str) and _SUBSEQUENCE.fullmatch(sub)):
        return None
    if not isinstance(part, str) or not _PART.match(part) or len(path) > MAX_PATH:
        return None
    if not all(isinstance(p, str) and 0 < len(p) <= 300 for p in path):
        return None
    if not (isinstance(low, str) and _DECIMAL.fullmatch(low) and len(low) <= 80):
        return None
    assert isinstance(sequence, str) and isinstance(stream, str) and isinstance(shard, str)
    if not _DECIMAL.fullmatch(sequence) or len(sequence) > 80 or int(sequence) < int(low):
        return None
    origin_at = SourcePosition(stream, shard, sequence, None if sub is None else int(sub))
    return Lineage(origin_at, tuple(path), int(low), part)


def hop(position: SourcePosition) -> str:
    return f"{position.stream}/{position.shard}"


def input_lineages(
    positions: Sequence[SourcePosition],
    carried: Sequence[Lineage | None],
    *,
    origins: Iterable[str] = (),
) -> list[Lineage]:
    """The lineage of each input record of one batch.

    A record read from an origin stream is its own origin, with the batch's lowest sequence of
    its shard as low-water mark (Lambda never delivers anything below a batch's first record
    again). So is a record that carries no lineage (written by something other than a cascata
    processor): its copies are then recognised only by position. A record of a derived stream
    continues the lineage it carries, with this hop appended to its path.
    """
    origin_streams = frozenset(origins)
    lowest: dict[tuple[str, str], int] = {}
    for pos, carry in zip(positions, carried, strict=True):
        if pos.stream in origin_streams or carry is None:
            at = (pos.stream, pos.shard)
            seq = int(pos.sequence)
            lowest[at] = min(lowest.get(at, seq), seq)
    out = []
    for pos, carry in zip(positions, carried, strict=True):
        if pos.stream in origin_streams or carry is None:
            out.append(Lineage(pos, (), lowest[(pos.stream, pos.shard)]))
        else:
            out.append(Lineage(carry.origin, (*carry.path, hop(pos)), carry.low_water,
                               carry.part))
    return out


class Stamper:
    """Stamps the lineage of outputs from the lineages of a batch's inputs.

    An output continues its cause's lineage (same origin and path) with, as low-water mark, the
    lowest incoming mark among the batch's inputs of the same chain, and as part a short hash of
    its own event id.
    """

    def __init__(self, lineages: Sequence[Lineage]) -> None:
        self._lineages = lineages
        self._low: dict[str, int] = {}
        for lineage in lineages:
            chain = lineage.chain
            self._low[chain] = min(self._low.get(chain, lineage.low_water), lineage.low_water)

    def __len__(self) -> int:
        return len(self._lineages)

    def of(self, cause: int) -> Lineage:
        return self._lineages[cause]

    def stamp(self, cause: int, event_id: str) -> Lineage:
        parent = self._lineages[cause]
        return Lineage(parent.origin, parent.path, self._low[parent.chain], part_of(event_id))


def part_of(event_id: str) -> str:
    """18 bits of the event id: enough to tell apart the few records one fact yields."""
    return base64.urlsafe_b64encode(hashlib.sha256(event_id.encode()).digest()[:3]).decode()[:3]


def _encode(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_DIGITS[r])
    return "".join(reversed(out))


class Fences:
    """The fence map of one item: chain -> low-water mark and origin sequences applied above it.

    Stored as one string per chain, `<mark> <delta>[.<part>] ...`, deltas from the mark in base
    36, so an ordinary key's fences take a few dozen bytes even with AWS's 56-digit sequence
    numbers. `<part>` is the fence part: `<part>:<subsequence>` for a user record of a KPL
    aggregate.
    """

    def __init__(self, stored: Mapping[str, Any] | None = None) -> None:
        self._marks: dict[str, int] = {}
        self._seen: dict[str, set[tuple[int, str]]] = {}
        for chain, text in (stored or {}).items():
            if not isinstance(text, str) or not text:
                continue
            head, *rest = text.split(" ")
            mark = int(head)
            self._marks[chain] = mark
            seen = set()
            for token in rest:
                digits, _, part = token.partition(".")
                seen.add((mark + int(digits, 36), part))
            self._seen[chain] = seen
        self.changed = False

    def admit(self, lineage: Lineage) -> bool:
        """Record `lineage` and say whether it is new (False: a redelivery or a copy)."""
        chain = lineage.chain
        mark = self._marks.get(chain)
        seen = self._seen.setdefault(chain, set())
        if mark is None or lineage.low_water > mark:
            mark = lineage.low_water if mark is None else max(mark, lineage.low_water)
            self._marks[chain] = mark
            self._seen[chain] = seen = {s for s in seen if s[0] >= mark}
            self.changed = True
        ident = (lineage.sequence, lineage.fence_part)
        if lineage.sequence < mark or ident in seen:
            return False
        seen.add(ident)
        self.changed = True
        return True

    def to_item(self) -> dict[str, str]:
        out = {}
        for chain, mark in sorted(self._marks.items()):
            tokens = [str(mark)]
            tokens.extend(
                _encode(seq - mark) + ("." + part if part else "")
                for seq, part in sorted(self._seen.get(chain, ()))
            )
            out[chain] = " ".join(tokens)
        return out

    def size(self) -> int:
        return sum(len(self._seen.get(c, ())) for c in self._marks)
