"""The side effects a processor needs, as Protocols; adapters implement them over boto3.

Tests and the local runtime pass in-memory or moto-backed implementations; handlers never
create clients themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to write to a stream; `tag` names the input record that caused it."""

    partition_key: str
    data: bytes
    tag: int


@dataclass(frozen=True, slots=True)
class EmitFailure:
    tag: int
    reason: str


class Sink(Protocol):
    def emit(self, stream: str, records: Sequence[OutRecord]) -> list[EmitFailure]:
        """Write every record; return one failure per record that could not be written."""
        ...


class ObjectStore(Protocol):
    def put(self, bucket: str, key: str, body: bytes) -> None: ...


class ItemStore(Protocol):
    """Items of one DynamoDB table, addressed by partition key, guarded by a version number."""

    def get_many(self, keys: Sequence[str]) -> Mapping[str, Mapping[str, Any]]: ...

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        """Write `item` if the stored version equals `expected_version` (None: absent).

        Returns False when another writer got there first; raises on any other error.
        """
        ...
