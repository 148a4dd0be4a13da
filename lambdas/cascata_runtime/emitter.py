"""Writes records to Kinesis with PutRecords, the way the service wants to be called.

- chunks of at most 500 records and 5 MiB per request;
- a record over 1 MiB (data plus partition key) is refused up front with a clear reason;
- PutRecords can fail part of a request (`FailedRecordCount`): only the failed entries are
  retried, with exponential backoff and full jitter, and whole-request throttling is retried
  the same way;
- whatever still fails is reported per record so the handler fails only the input records
  whose outputs could not be written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from cascata_runtime.ports import EmitFailure, OutRecord

MAX_RECORDS_PER_REQUEST = 500
MAX_BYTES_PER_REQUEST = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_PARTITION_KEY_CHARS = 256

_RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
        "KMSThrottlingException",
        "LimitExceededException",
    }
)


def record_size(record: OutRecord) -> int:
    return len(record.data) + len(record.partition_key.encode("utf-8"))


def chunk(records: Sequence[OutRecord]) -> list[list[OutRecord]]:
    """Split into PutRecords requests within the record-count and byte limits, in order."""
    chunks: list[list[OutRecord]] = []
    current: list[OutRecord] = []
    size = 0
    for record in records:
        rsize = record_size(record)
        if current and (
            len(current) == MAX_RECORDS_PER_REQUEST or size + rsize > MAX_BYTES_PER_REQUEST
        ):
            chunks.append(current)
            current, size = [], 0
        current.append(record)
        size += rsize
    if current:
        chunks.append(current)
    return chunks


class KinesisSink:
    """`Sink` over a boto3 Kinesis client."""

    def __init__(
        self,
        client: Any,
        *,
        max_attempts: int = 6,
        base_delay_s: float = 0.05,
        max_delay_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._max_attempts = max_attempts
        self._base = base_delay_s
        self._cap = max_delay_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.requests = 0

    def emit(self, stream: str, records: Sequence[OutRecord]) -> list[EmitFailure]:
        failures: list[EmitFailure] = []
        sendable: list[OutRecord] = []
        for record in records:
            problem = _check(record)
            if problem:
                failures.append(EmitFailure(record.tag, problem))
            else:
                sendable.append(record)
        for request in chunk(sendable):
            failures.extend(self._send(stream, request))
        return failures

    def _send(self, stream: str, pending: list[OutRecord]) -> list[EmitFailure]:
        last_errors: dict[int, str] = {}
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._backoff(attempt))
            try:
                self.requests += 1
                response = self._client.put_records(
                    StreamName=stream,
                    Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
                )
            except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
                code = _error_code(exc)
                if code not in _RETRYABLE_CODES:
                    reason = f"PutRecords failed: {code}: {exc}"
                    return [EmitFailure(r.tag, reason) for r in pending]
                last_errors = {id(r): f"{code} after {attempt + 1} attempts" for r in pending}
                continue
            retry: list[OutRecord] = []
            for record, result in zip(pending, response["Records"], strict=True):
                code = result.get("ErrorCode")
                if code:
                    retry.append(record)
                    last_errors[id(record)] = (
                        f"{code}: {result.get('ErrorMessage', '')} after {attempt + 1} attempts"
                    )
            if not retry:
                return []
            pending = retry
        return [EmitFailure(r.tag, last_errors.get(id(r), "not written")) for r in pending]

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self._cap, self._base * 2**attempt))


def _check(record: OutRecord) -> str | None:
    if not 1 <= len(record.partition_key) <= MAX_PARTITION_KEY_CHARS:
        return f"partition key must be 1-{MAX_PARTITION_KEY_CHARS} characters"
    size = record_size(record)
    if size > MAX_RECORD_BYTES:
        return (
            f"record is {size} bytes (data plus partition key); Kinesis accepts at most "
            f"{MAX_RECORD_BYTES}"
        )
    return None


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__
