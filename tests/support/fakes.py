"""In-memory implementations of the runtime's ports, for fast and property-based tests."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from cascata_runtime.ports import EmitFailure, OutRecord


class MemorySink:
    def __init__(self) -> None:
        self.records: dict[str, list[OutRecord]] = {}
        self.fail_tags: set[int] = set()

    def emit(self, stream: str, records: Sequence[OutRecord]) -> list[EmitFailure]:
        failures = [
            EmitFailure(r.tag, "injected failure") for r in records if r.tag in self.fail_tags
        ]
        bad = {f.tag for f in failures}
        self.records.setdefault(stream, []).extend(r for r in records if r.tag not in bad)
        return failures


class MemoryObjects:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.objects[(bucket, key)] = body


class MemoryItems:
    """Versioned items with the same conditional semantics as the DynamoDB adapter."""

    def __init__(self, key: str = "account_id") -> None:
        self.key = key
        self.items: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.reads = 0
        self.fail_accounts: set[str] = set()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        with self._lock:
            self.reads += len(set(keys))
            return {k: copy.deepcopy(self.items[k]) for k in keys if k in self.items}

    def key_attributes(self, key: str) -> dict[str, Any]:
        return {self.key: key}

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        with self._lock:
            account = str(item[self.key])
            if account in self.fail_accounts:
                raise RuntimeError(f"injected write failure for {account}")
            self.writes += 1
            current = self.items.get(account)
            current_version = None if current is None else int(current["version"])
            if current_version != expected_version:
                return False
            self.items[account] = copy.deepcopy(dict(item))
            return True


class MemoryMarkers:
    """The origin gate's duplicate markers (`cascata_runtime.origin.Markers`), with the same
    conditional semantics as `adapters.DynamoMarkers`: a claim succeeds for a new marker, for
    the position that holds it, and for a marker expired at the claiming record's `now`."""

    def __init__(self) -> None:
        self.markers: dict[str, tuple[str, int]] = {}
        self.claims: list[tuple[str, str, int, int]] = []
        self.fail: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, marker: str, position: str, expires_at: int, now: int) -> bool:
        with self._lock:
            self.claims.append((marker, position, expires_at, now))
            if marker in self.fail:
                raise RuntimeError(f"injected marker failure for {marker}")
            held = self.markers.get(marker)
            if held is not None and held[0] != position and held[1] > now:
                return False
            self.markers[marker] = (position, expires_at)
            return True
