"""Fault injection for the local runtime: what production does to a pipeline, on purpose.

`--chaos` turns on, at seeded and reproducible rates: handler crashes mid-batch (after side
effects, so outputs are re-emitted on retry), `PutRecords` partial failures and whole-request
throttling on every stream write, throttled invocations, and duplicate producer sends.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


@dataclass(frozen=True, slots=True)
class ChaosSettings:
    seed: int = 7
    crash_rate: float = 0.05
    """Share of invocations that crash after the handler ran (its effects stay applied)."""
    put_failure_rate: float = 0.05
    """Share of PutRecords entries that fail with ProvisionedThroughputExceededException."""
    throttle_rate: float = 0.02
    """Share of PutRecords requests and of invocations that are throttled outright."""
    duplicate_rate: float = 0.02
    """Share of produced records the producer sends twice."""

    def problems(self) -> list[str]:
        out = []
        for name in ("crash_rate", "put_failure_rate", "throttle_rate", "duplicate_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 0.5:
                out.append(f"--{name.replace('_', '-')} must be from 0 to 0.5, got {value}")
        return out


@dataclass
class ChaosCounters:
    put_entries_failed: int = 0
    put_requests_throttled: int = 0
    duplicates_sent: int = 0


class ChaosKinesis:
    """A Kinesis client that fails some PutRecords entries and throttles some requests."""

    def __init__(self, client: Any, settings: ChaosSettings, *, salt: int = 0) -> None:
        self._client = client
        self._settings = settings
        self._rng = random.Random(settings.seed * 1_000_003 + salt)
        self._lock = threading.Lock()
        self.counters = ChaosCounters()

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        records = kwargs["Records"]
        with self._lock:
            throttled = self._rng.random() < self._settings.throttle_rate
            failing = {
                i for i in range(len(records))
                if self._rng.random() < self._settings.put_failure_rate
            }
            if throttled:
                self.counters.put_requests_throttled += 1
            else:
                self.counters.put_entries_failed += len(failing)
        if throttled:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException",
                           "Message": "Rate exceeded for stream (injected)"}},
                "PutRecords",
            )
        keep = [r for i, r in enumerate(records) if i not in failing]
        response = (
            self._client.put_records(**{**kwargs, "Records": keep}) if keep else {"Records": []}
        )
        written = iter(response["Records"])
        merged = [
            {"ErrorCode": "ProvisionedThroughputExceededException",
             "ErrorMessage": "Rate exceeded for shard (injected)"}
            if i in failing else next(written)
            for i in range(len(records))
        ]
        failed = sum(1 for r in merged if "ErrorCode" in r)
        return {"FailedRecordCount": failed, "Records": merged}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
