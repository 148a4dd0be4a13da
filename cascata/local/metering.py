"""What flows along each edge of the running pipeline: records read and items written, with rates.

The local runtime wraps every client it gives a function in a `MeteredClient`, which counts what
each successful write carried (Kinesis records, DynamoDB items, S3 objects, SNS and SQS
messages) per (function, declared resource). Reads from streams are the mappings' own counters.
`FlowMeter.rates` turns two snapshots of the totals a few seconds apart into per-second rates,
which the status report (`cascata status`, the console) carries for every edge.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

Resolver = Callable[[str, str], str | None]
"""(service, physical name or ARN or URL) -> the declared resource, or None when not ours."""

RATE_WINDOW_S = 5.0
"""Rates are averaged over about this many seconds: steady enough to read, quick to follow."""


class FlowMeter:
    """Thread-safe totals per (from, to) edge, and rates from their recent history."""

    def __init__(self, *, window_s: float = RATE_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str], int] = {}
        self._window_s = window_s
        self._clock = clock
        self._history: deque[tuple[float, dict[tuple[str, str], int]]] = deque()

    def add(self, source: str, target: str, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            key = (source, target)
            self._totals[key] = self._totals.get(key, 0) + count

    def totals(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._totals)

    def rates(self, totals: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], float]:
        """Per-second rates of `totals` (this meter's, or any counters the caller samples at
        the same moments) since the oldest snapshot inside the window; remembers `totals`
        as the newest snapshot. Zero until a second snapshot is at least 0.5 s older."""
        now = self._clock()
        with self._lock:
            history = self._history
            history.append((now, dict(totals)))
            while len(history) > 2 and now - history[1][0] >= self._window_s:
                history.popleft()
            then, before = history[0]
            elapsed = now - then
        if elapsed < 0.5:
            return {key: 0.0 for key in totals}
        return {key: max(0, value - before.get(key, 0)) / elapsed
                for key, value in totals.items()}


class MeteredClient:
    """A function's AWS client that counts what its writes delivered, for `FlowMeter`.
    Every call goes through unchanged; only successful deliveries are counted (a PutRecords
    entry that failed or an unprocessed batch item is not)."""

    def __init__(self, client: Any, *, service: str, function: str, meter: FlowMeter,
                 resolve: Resolver) -> None:
        self._client = client
        self._service = service
        self._function = function
        self._meter = meter
        self._resolve = resolve

    def __getattr__(self, name: str) -> Any:
        # Called once per name: what it returns is kept on the instance, so every later call
        # of a method that is not metered costs what it costs on the client itself.
        attribute = getattr(self._client, name)
        counter = _COUNTERS.get((self._service, name))
        if counter is None or not callable(attribute):
            if callable(attribute):
                self.__dict__[name] = attribute
            return attribute

        def metered(*args: Any, **kwargs: Any) -> Any:
            response = attribute(*args, **kwargs)
            try:
                for physical, count in counter(kwargs, response):
                    declared = self._resolve(self._service, physical)
                    if declared is not None:
                        self._meter.add(self._function, declared, count)
            except (KeyError, TypeError, AttributeError):  # never let metering break a write
                pass
            return response

        self.__dict__[name] = metered
        return metered


Counted = list[tuple[str, int]]


def _put_records(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    sent = len(request.get("Records", ()))
    return [(request.get("StreamName") or request["StreamARN"],
             sent - int(response.get("FailedRecordCount", 0)))]


def _put_record(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    return [(request.get("StreamName") or request["StreamARN"], 1)]


def _one_item(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    return [(request["TableName"], 1)]


def _batch_write(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    unprocessed = response.get("UnprocessedItems") or {}
    return [(table, len(items) - len(unprocessed.get(table, ())))
            for table, items in request["RequestItems"].items()]


def _transact_write(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    counted: dict[str, int] = {}
    for item in request["TransactItems"]:
        for action in ("Put", "Update", "Delete"):
            if action in item:
                table = item[action]["TableName"]
                counted[table] = counted.get(table, 0) + 1
    return list(counted.items())


def _put_object(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    return [(request["Bucket"], 1)]


def _publish(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    return [(request["TopicArn"], 1)]


def _publish_batch(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    return [(request["TopicArn"], len(response.get("Successful", ())))]


def _send_message(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    return [(request["QueueUrl"], 1)]


def _send_message_batch(request: Mapping[str, Any], response: Mapping[str, Any]) -> Counted:
    return [(request["QueueUrl"], len(response.get("Successful", ())))]


_COUNTERS: dict[tuple[str, str], Callable[[Mapping[str, Any], Mapping[str, Any]], Counted]] = {
    ("kinesis", "put_records"): _put_records,
    ("kinesis", "put_record"): _put_record,
    ("dynamodb", "put_item"): _one_item,
    ("dynamodb", "update_item"): _one_item,
    ("dynamodb", "delete_item"): _one_item,
    ("dynamodb", "batch_write_item"): _batch_write,
    ("dynamodb", "transact_write_items"): _transact_write,
    ("s3", "put_object"): _put_object,
    ("sns", "publish"): _publish,
    ("sns", "publish_batch"): _publish_batch,
    ("sqs", "send_message"): _send_message,
    ("sqs", "send_message_batch"): _send_message_batch,
}


def physical_resolver(names: Mapping[str, str]) -> Resolver:
    """A `Resolver` for the declared -> physical `names` of a provisioned pipeline: stream and
    table names, bucket names, topic ARNs and queue URLs end with the physical name."""
    declared = {physical: name for name, physical in names.items()}

    def resolve(service: str, physical: str) -> str | None:
        tail = physical.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        return declared.get(physical) or declared.get(tail)

    return resolve
