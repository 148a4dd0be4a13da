"""The side effects a processor needs, as Protocols; adapters implement them over boto3.

Tests and the local runtime pass in-memory or moto-backed implementations; handlers never
create clients themselves.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar


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


K = TypeVar("K", bound=Hashable, contravariant=False)


class ItemStore(Protocol[K]):
    """Items of one DynamoDB table, addressed by key (a partition key, or a partition and sort
    key pair), guarded by a version number."""

    def get_many(self, keys: Sequence[K]) -> Mapping[K, Mapping[str, Any]]: ...

    def key_attributes(self, key: K) -> dict[str, Any]:
        """The item's key attributes for `key`."""
        ...

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        """Write `item` if the stored version equals `expected_version` (None: absent).

        Returns False when another writer got there first; raises on any other error.
        """
        ...
