"""The emulator answering in this process, and clients that meter what a function asks of AWS.

`InProcessAws` is moto's backends behind botocore's own request hook (no server, no socket), so
a handler's boto3 calls cost what they cost on the client side plus the emulator's work, and
`EmulatorCpu` measures the latter so the bench can subtract it. `MeteredClient` wraps a boto3
client: it counts every API request by operation, prices DynamoDB writes and reads in capacity
units from item sizes (the rules below), and counts Kinesis records, PUT payload units and
billable kilobytes.

DynamoDB capacity, as the developer guide defines it:
- a write costs 1 unit per started KB of the larger of the item before and after it (PutItem,
  UpdateItem), of the item before it (DeleteItem); at least 1; a failed conditional write is
  charged the same; a transactional write twice;
- a strongly consistent read costs 1 unit per started 4 KB of each item (half when eventually
  consistent), at least one per key asked for;
- every global secondary index whose entry a write changes costs its own write units, on the
  size of the projected entry (`index_write_sizes`: an item entering the index is one write,
  leaving it one, changing an index key two, changing a projected attribute one; nothing when
  the entry is unchanged or the item has no index key).

The bench hands functions Kinesis events whose sequence numbers are AWS-length (56 digits, see
`functions.EventFactory`), so whatever a function stores of them is sized as on AWS.
`LogMeter` counts what the functions' loggers write at the deployed log level.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cascata.local.emulator import Aws, patch_moto
from cascata.pipeline import LOCAL_ACCOUNT, LOCAL_REGION, Index, Table

KINESIS_PAYLOAD_UNIT = 25 * 1024
KINESIS_ON_DEMAND_UNIT = 1024
WRITE_UNIT = 1024
READ_UNIT = 4 * 1024
FIREHOSE_RECORD_UNIT = 5 * 1024
"""Firehose bills ingestion per GB with each record rounded up to the next 5 KB."""
STORAGE_ITEM_OVERHEAD = 100
"""Bytes DynamoDB adds to every stored item and index entry for storage billing."""


class InProcessAws(Aws):
    """moto's backends answering boto3 in this process through botocore's request hook.

    The same `Aws` interface as the embedded server, without HTTP: what remains on the client
    side (serialisation, signing, parsing) is exactly what a handler pays in Lambda. Starting
    it resets moto's process-wide state.
    """

    def __init__(self) -> None:
        # embedded: never an endpoint from the configuration, requests stay in this process.
        super().__init__(endpoint_url=None, embedded=True)
        self._mock: Any = None

    def start(self) -> InProcessAws:
        from moto import mock_aws

        patch_moto()
        self._mock = mock_aws()
        self._mock.start()
        return self

    def stop(self) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        self._clients.clear()

    def __enter__(self) -> InProcessAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmulatorCpu:
    """CPU seconds the emulator spends answering requests, summed over every thread.

    moto answers inside botocore's `before-send` hook, on the calling thread, so the thread CPU
    time spent in that hook is the emulator's; everything else a handler does (including the
    client side of boto3) stays on the handler's account.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._stubber: Any = None

    def __enter__(self) -> EmulatorCpu:
        from moto.core.models import botocore_stubber

        original = botocore_stubber.process_request

        def timed(request: Any) -> Any:
            started = time.thread_time()
            try:
                return original(request)
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    self.seconds += spent

        # An instance attribute shadows the method for this process only.
        botocore_stubber.process_request = timed  # type: ignore[method-assign]
        self._stubber = botocore_stubber
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stubber is not None and "process_request" in vars(self._stubber):
            del self._stubber.process_request
        self._stubber = None


@dataclass
class Meter:
    """What one function asked of AWS while it was metered."""

    invocations: int = 0
    records_in: int = 0
    retrieved_kb: int = 0
    """Kilobytes read from source streams, each record rounded up to 1 KB (on-demand rule)."""
    failed_records: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    """"service.Operation" -> requests, retries included."""
    write_units: float = 0.0
    """Every write unit, index writes included."""
    index_write_units: float = 0.0
    """The part of `write_units` spent on global secondary indexes."""
    write_units_by_table: dict[str, float] = field(default_factory=dict)
    """table (declared name when known) -> write units, index writes included."""
    read_units: float = 0.0
    conditional_failures: int = 0
    kinesis_records: Counter[str] = field(default_factory=Counter)
    """stream name -> records written."""
    kinesis_bytes: int = 0
    put_payload_units: int = 0
    ingest_kb: int = 0
    log_bytes: int = 0
    """Bytes the function's loggers wrote (see `LogMeter`)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, value in amounts.items():
                setattr(self, name, getattr(self, name) + value)

    def count(self, operation: str) -> None:
        with self._lock:
            self.requests[operation] += 1

    def charge(self, table: str, units: float, index_units: float = 0.0) -> None:
        with self._lock:
            self.write_units += units + index_units
            self.index_write_units += index_units
            self.write_units_by_table[table] = (self.write_units_by_table.get(table, 0.0)
                                                + units + index_units)

    def copy(self) -> Meter:
        with self._lock:
            clone = copy.copy(self)
            clone.requests = Counter(self.requests)
            clone.write_units_by_table = dict(self.write_units_by_table)
            clone.kinesis_records = Counter(self.kinesis_records)
        clone._lock = threading.Lock()
        return clone

    def minus(self, other: Meter) -> Meter:
        """What this meter counted since `other`, a `copy()` of it taken earlier."""
        out = Meter()
        for name in ("invocations", "records_in", "retrieved_kb", "failed_records", "write_units",
                     "index_write_units", "read_units", "conditional_failures", "kinesis_bytes",
                     "put_payload_units", "ingest_kb", "log_bytes"):
            setattr(out, name, getattr(self, name) - getattr(other, name))
        out.requests = +(self.requests - other.requests)
        out.write_units_by_table = {k: v - other.write_units_by_table.get(k, 0.0)
                                    for k, v in self.write_units_by_table.items()
                                    if v - other.write_units_by_table.get(k, 0.0)}
        out.kinesis_records = +(self.kinesis_records - other.kinesis_records)
        return out

    def plus(self, other: Meter) -> Meter:
        out = self.copy()
        for name in ("invocations", "records_in", "retrieved_kb", "failed_records", "write_units",
                     "index_write_units", "read_units", "conditional_failures", "kinesis_bytes",
                     "put_payload_units", "ingest_kb", "log_bytes"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.requests = self.requests + other.requests
        out.write_units_by_table = {
            k: self.write_units_by_table.get(k, 0.0) + other.write_units_by_table.get(k, 0.0)
            for k in {*self.write_units_by_table, *other.write_units_by_table}}
        out.kinesis_records = self.kinesis_records + other.kinesis_records
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "invocations": self.invocations,
            "records_in": self.records_in,
            "failed_records": self.failed_records,
            "requests": dict(sorted(self.requests.items())),
            "write_units": round(self.write_units, 3),
            "index_write_units": round(self.index_write_units, 3),
            "write_units_by_table": {k: round(v, 3)
                                     for k, v in sorted(self.write_units_by_table.items())},
            "log_bytes": self.log_bytes,
            "read_units": round(self.read_units, 3),
            "conditional_failures": self.conditional_failures,
            "kinesis_records_out": dict(self.kinesis_records),
            "kinesis_put_payload_units": self.put_payload_units,
            "kinesis_ingest_kb": self.ingest_kb,
            "kinesis_retrieved_kb": self.retrieved_kb,
        }


def metered(meter: Meter, items: ItemSizes | None = None) -> Callable[[str, Any], Any]:
    """A `build_function` client wrapper that meters into `meter`."""
    sizes = items or ItemSizes()

    def wrap(service: str, client: Any) -> Any:
        return MeteredClient(service, client, meter, sizes)

    return wrap


Item = Mapping[str, Any]
"""A DynamoDB item in the low-level (typed) form."""


class ItemSizes:
    """Stored items, read from the emulator's backend directly, and the tables' indexes.

    Looking at an item before and after a write is the meter's business, not the function's:
    it costs no request, and reading moto's model takes microseconds where a GetItem through
    the API takes milliseconds. `tables` maps physical table names to their declarations,
    whose `indexes` say which index entries a write touches; a table not in it has none.
    """

    def __init__(self, account: str = LOCAL_ACCOUNT, region: str = LOCAL_REGION,
                 tables: Mapping[str, Table] | None = None) -> None:
        from moto.dynamodb.models import dynamodb_backends

        self._backend = dynamodb_backends[account][region]
        self.tables = dict(tables or {})

    def key_of(self, table: str, item: Item) -> dict[str, Any]:
        model = self._backend.get_table(table)
        names = [model.hash_key_attr] + ([model.range_key_attr] if model.range_key_attr else [])
        return {name: item[name] for name in names}

    def item(self, table: str, key: Item) -> dict[str, Any] | None:
        found = self._backend.get_item(table, dict(key))
        return dict(found.to_json()["Attributes"]) if found is not None else None

    def size(self, table: str, key: Item) -> int:
        found = self.item(table, key)
        return item_size(found) if found is not None else 0

    def name(self, table: str) -> str:
        declared = self.tables.get(table)
        return declared.name if declared is not None else table

    def index_units(self, table: str, before: Item | None, after: Item | None) -> float:
        declared = self.tables.get(table)
        if declared is None:
            return 0.0
        return sum(write_units(size) for index in declared.indexes
                   for size in index_write_sizes(index, _table_keys(declared), before, after))

    def stored_bytes(self, table: str) -> int:
        """What DynamoDB bills as storage: items and index entries, 100 bytes overhead each."""
        declared = self.tables.get(table)
        total = 0
        for item in self.items(table):
            total += item_size(item) + STORAGE_ITEM_OVERHEAD
            if declared is not None:
                for index in declared.indexes:
                    if _in_index(index, item):
                        entry = _projected(index, _table_keys(declared), item)
                        total += item_size(entry) + STORAGE_ITEM_OVERHEAD
        return total

    def items(self, table: str) -> Iterable[dict[str, Any]]:
        model = self._backend.get_table(table)
        for found in model.all_items():
            yield dict(found.to_json()["Attributes"])


def _table_keys(table: Table) -> tuple[str, ...]:
    return (table.partition_key,) + ((table.sort_key,) if table.sort_key else ())


def _index_keys(index: Index) -> tuple[str, ...]:
    return (index.partition_key,) + ((index.sort_key,) if index.sort_key else ())


def _in_index(index: Index, item: Item | None) -> bool:
    """A global secondary index is sparse: an item is in it only with every index key."""
    return item is not None and all(k in item for k in _index_keys(index))


def _projected(index: Index, table_keys: tuple[str, ...], item: Item) -> dict[str, Any]:
    if index.projection == "ALL":
        return dict(item)
    wanted = (*table_keys, *_index_keys(index))
    return {k: item[k] for k in wanted if k in item}


def index_write_sizes(
    index: Index, table_keys: tuple[str, ...], before: Item | None, after: Item | None
) -> list[int]:
    """Sizes of the index writes one table write costs (DynamoDB developer guide, "Provisioned
    throughput considerations for global secondary indexes"): an item entering the index (put,
    or an index key attribute added) is one write; leaving it (delete, or an index key removed)
    one; a changed index key value two (the old entry deleted, the new one put); a changed
    projected attribute one; and nothing when the entry does not change or the item is in the
    index neither before nor after."""
    was, now = _in_index(index, before), _in_index(index, after)
    if not was and not now:
        return []
    old = _projected(index, table_keys, before) if was and before is not None else None
    new = _projected(index, table_keys, after) if now and after is not None else None
    if old is None:
        return [item_size(new or {})]
    if new is None:
        return [item_size(old)]
    if any(old[k] != new[k] for k in _index_keys(index)):
        return [item_size(old), item_size(new)]
    if old != new:
        return [max(item_size(old), item_size(new))]
    return []


class MeteredClient:
    """A boto3 client that counts requests and prices them in capacity units and payload."""

    def __init__(self, service: str, client: Any, meter: Meter, items: ItemSizes) -> None:
        self._service = service
        self._client = client
        self._meter = meter
        self._items = items
        self._operations: Mapping[str, str] = client.meta.method_to_api_mapping

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        operation = self._operations.get(name)
        if operation is None:
            return attr

        def call(**kwargs: Any) -> Any:
            self._meter.count(f"{self._service}.{operation}")
            if self._service == "dynamodb":
                return self._dynamodb(operation, attr, kwargs)
            response = attr(**kwargs)
            if self._service == "kinesis":
                self._kinesis(operation, kwargs, response)
            return response

        return call

    # Kinesis ---------------------------------------------------------------------------------

    def _kinesis(self, operation: str, kwargs: Mapping[str, Any], response: Any) -> None:
        if operation == "PutRecords":
            results = response.get("Records", [])
            written = [r for r, res in zip(kwargs["Records"], results, strict=False)
                       if not res.get("ErrorCode")]
        elif operation == "PutRecord":
            written = [kwargs]
        else:
            return
        sizes = [len(_bytes(r["Data"])) + len(str(r["PartitionKey"]).encode()) for r in written]
        self._meter.add(
            kinesis_bytes=sum(sizes),
            put_payload_units=sum(max(1, math.ceil(s / KINESIS_PAYLOAD_UNIT)) for s in sizes),
            ingest_kb=sum(max(1, math.ceil(s / KINESIS_ON_DEMAND_UNIT)) for s in sizes),
        )
        stream = str(kwargs.get("StreamName") or kwargs.get("StreamARN", "?")).rsplit("/", 1)[-1]
        with self._meter._lock:
            self._meter.kinesis_records[stream] += len(written)

    # DynamoDB --------------------------------------------------------------------------------

    def _dynamodb(self, operation: str, call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            table = kwargs["TableName"]
            key = kwargs["Key"] if "Key" in kwargs else self._items.key_of(table, kwargs["Item"])
            before = self._items.item(table, key)
            before_size = item_size(before) if before is not None else 0
            try:
                response = call(**kwargs)
            except Exception as exc:
                if _error_code(exc) == "ConditionalCheckFailedException":
                    new = item_size(kwargs["Item"]) if operation == "PutItem" else 0
                    self._meter.charge(self._items.name(table),
                                       write_units(max(before_size, new)))
                    self._meter.add(conditional_failures=1)
                raise
            after = None if operation == "DeleteItem" else self._items.item(table, key)
            after_size = item_size(after) if after is not None else 0
            self._meter.charge(self._items.name(table), write_units(max(before_size, after_size)),
                               self._items.index_units(table, before, after))
            return response
        if operation == "BatchWriteItem":
            pending: list[tuple[str, dict[str, Any], dict[str, Any] | None, int]] = []
            for table, requests in kwargs["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        key = self._items.key_of(table, item)
                        new = item_size(item)
                    else:
                        key = request["DeleteRequest"]["Key"]
                        new = 0
                    pending.append((table, key, self._items.item(table, key), new))
            response = call(**kwargs)
            self._charge_after(pending, factor=1)
            return response
        if operation == "TransactWriteItems":
            pending = []
            for entry in kwargs["TransactItems"]:
                for kind in ("Put", "Update", "Delete", "ConditionCheck"):
                    if kind in entry:
                        spec = entry[kind]
                        table = spec["TableName"]
                        key = spec.get("Key") or self._items.key_of(table, spec["Item"])
                        new = item_size(spec["Item"]) if kind == "Put" else 0
                        pending.append((table, key, self._items.item(table, key), new))
            try:
                response = call(**kwargs)
            except Exception:
                # A cancelled transaction still consumes the capacity of every item in it.
                self._charge_after(pending, factor=2, changed=False)
                raise
            self._charge_after(pending, factor=2)
            return response
        response = call(**kwargs)
        if operation == "GetItem":
            factor = 1.0 if kwargs.get("ConsistentRead") else 0.5
            self._meter.add(read_units=factor * read_units(item_size(response.get("Item", {}))))
        elif operation == "BatchGetItem":
            units = 0.0
            for table, spec in kwargs["RequestItems"].items():
                factor = 1.0 if spec.get("ConsistentRead") else 0.5
                found = response.get("Responses", {}).get(table, [])
                units += factor * sum(read_units(item_size(item)) for item in found)
                units += factor * max(0, len(spec["Keys"]) - len(found))
            self._meter.add(read_units=units)
        elif operation in ("Query", "Scan"):
            factor = 1.0 if kwargs.get("ConsistentRead") else 0.5
            size = sum(item_size(item) for item in response.get("Items", []))
            self._meter.add(read_units=factor * read_units(size))
        return response

    def _charge_after(
        self,
        pending: Iterable[tuple[str, dict[str, Any], dict[str, Any] | None, int]],
        *,
        factor: int,
        changed: bool = True,
    ) -> None:
        """Charge writes whose items were read before the call, now that it is done.
        Transactions cost twice per item; their index writes are charged once (estimated:
        the developer guide does not say)."""
        for table, key, before, new in pending:
            before_size = item_size(before) if before is not None else 0
            after = self._items.item(table, key) if changed else before
            after_size = max(new, item_size(after) if after is not None else 0)
            index = self._items.index_units(table, before, after) if changed else 0.0
            self._meter.charge(self._items.name(table),
                               factor * write_units(max(before_size, after_size)), index)


def write_units(size: int) -> float:
    return float(max(1, math.ceil(size / WRITE_UNIT)))


def read_units(size: int) -> float:
    return float(max(1, math.ceil(size / READ_UNIT)))


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes of a DynamoDB item in the low-level (typed) form, as DynamoDB sizes it."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    (kind, inner), = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return _number_size(str(inner))
    if kind == "B":
        return len(_bytes(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in inner)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in inner)
    if kind == "BS":
        return sum(len(_bytes(b)) for b in inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    return len(str(inner).encode())


def _number_size(text: str) -> int:
    # About one byte per two significant digits, plus one.
    digits = Decimal(text).normalize().as_tuple().digits
    return 1 + math.ceil(max(1, len(digits)) / 2)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return str(value).encode()


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def firehose_billed_bytes(sizes: Iterable[int]) -> int:
    """Bytes Firehose bills for ingesting records of these sizes: each rounded up to 5 KB."""
    return sum(max(1, math.ceil(size / FIREHOSE_RECORD_UNIT)) * FIREHOSE_RECORD_UNIT
               for size in sizes)


class _CountingStream(io.TextIOBase):
    def __init__(self, owner: LogMeter) -> None:
        super().__init__()
        self._owner = owner

    def write(self, text: str) -> int:
        meter = self._owner.current
        if meter is not None:
            meter.add(log_bytes=len(text.encode()))
        return len(text)

    def flush(self) -> None:
        pass


class LogMeter:
    """Counts the bytes the functions' loggers write, at the deployed log level, into the
    meter of whichever function is running (`current`); nothing reaches the terminal.

    Powertools loggers write to stdout through a stream handler bound when the logger is first
    made: while metering, stdout is a counter, existing handlers are pointed at it and every
    logger runs at `level`; on exit they are put back as they were, and loggers made meanwhile
    go back to stdout at the local runtime's quiet level.
    """

    def __init__(self, level: str = "INFO", quiet: str = "CRITICAL") -> None:
        self.level = level
        self.quiet = quiet
        self.current: Meter | None = None
        self._stream = _CountingStream(self)
        self._saved: list[tuple[logging.Logger, int, list[tuple[logging.StreamHandler[Any], Any]]]]
        self._saved = []
        self._stdout: Any = None
        self._env: str | None = None

    def __enter__(self) -> LogMeter:
        self._stdout = sys.stdout
        self._env = os.environ.get("POWERTOOLS_LOG_LEVEL")
        os.environ["POWERTOOLS_LOG_LEVEL"] = self.level
        for logger in _loggers():
            handlers = [(h, h.stream) for h in logger.handlers
                        if isinstance(h, logging.StreamHandler)
                        and h.stream in (sys.stdout, sys.__stdout__)]
            if not handlers:
                continue
            self._saved.append((logger, logger.level, handlers))
            logger.setLevel(self.level)
            for handler, _ in handlers:
                handler.setStream(self._stream)
        sys.stdout = self._stream
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._stdout
        if self._env is None:
            os.environ.pop("POWERTOOLS_LOG_LEVEL", None)
        else:
            os.environ["POWERTOOLS_LOG_LEVEL"] = self._env
        restored = set()
        for logger, level, handlers in self._saved:
            logger.setLevel(level)
            for handler, stream in handlers:
                handler.setStream(stream)
            restored.add(id(logger))
        for logger in _loggers():
            if id(logger) in restored:
                continue
            for found in logger.handlers:
                if isinstance(found, logging.StreamHandler) and found.stream is self._stream:
                    found.setStream(self._stdout)
                    logger.setLevel(self.quiet)
        self._saved = []


def _loggers() -> list[logging.Logger]:
    return [lg for lg in logging.Logger.manager.loggerDict.values()
            if isinstance(lg, logging.Logger)]
