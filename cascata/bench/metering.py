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
  consistent), at least one per key asked for.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cascata.local.emulator import Aws, patch_moto_kinesis
from cascata.pipeline import LOCAL_ACCOUNT, LOCAL_REGION

KINESIS_PAYLOAD_UNIT = 25 * 1024
KINESIS_ON_DEMAND_UNIT = 1024
WRITE_UNIT = 1024
READ_UNIT = 4 * 1024


class InProcessAws(Aws):
    """moto's backends answering boto3 in this process through botocore's request hook.

    The same `Aws` interface as the embedded server, without HTTP: what remains on the client
    side (serialisation, signing, parsing) is exactly what a handler pays in Lambda. Starting
    it resets moto's process-wide state.
    """

    def __init__(self) -> None:
        super().__init__(endpoint_url=None, embedded=True)
        self._mock: Any = None

    def _endpoint_for(self, service: str) -> str | None:
        # Never an endpoint from the environment: requests must stay in this process.
        return None

    def start(self) -> InProcessAws:
        from moto import mock_aws

        patch_moto_kinesis()
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
    read_units: float = 0.0
    conditional_failures: int = 0
    kinesis_records: Counter[str] = field(default_factory=Counter)
    """stream name -> records written."""
    kinesis_bytes: int = 0
    put_payload_units: int = 0
    ingest_kb: int = 0
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

    def to_json(self) -> dict[str, Any]:
        return {
            "invocations": self.invocations,
            "records_in": self.records_in,
            "failed_records": self.failed_records,
            "requests": dict(sorted(self.requests.items())),
            "write_units": round(self.write_units, 3),
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


class ItemSizes:
    """Sizes of stored items, read from the emulator's backend directly.

    Looking at an item before and after a write is the meter's business, not the function's:
    it costs no request, and reading moto's model takes microseconds where a GetItem through
    the API takes milliseconds.
    """

    def __init__(self, account: str = LOCAL_ACCOUNT, region: str = LOCAL_REGION) -> None:
        from moto.dynamodb.models import dynamodb_backends

        self._backend = dynamodb_backends[account][region]

    def key_of(self, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
        model = self._backend.get_table(table)
        names = [model.hash_key_attr] + ([model.range_key_attr] if model.range_key_attr else [])
        return {name: item[name] for name in names}

    def size(self, table: str, key: Mapping[str, Any]) -> int:
        found = self._backend.get_item(table, dict(key))
        return item_size(found.to_json()["Attributes"]) if found is not None else 0


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
            key = kwargs["Key"] if "Key" in kwargs else self._key_of(table, kwargs["Item"])
            before = self._item_size(table, key)
            try:
                response = call(**kwargs)
            except Exception as exc:
                if _error_code(exc) == "ConditionalCheckFailedException":
                    new = item_size(kwargs["Item"]) if operation == "PutItem" else 0
                    self._meter.add(write_units=write_units(max(before, new)),
                                    conditional_failures=1)
                raise
            if operation == "PutItem":
                after = item_size(kwargs["Item"])
            elif operation == "UpdateItem":
                after = self._item_size(table, key)
            else:
                after = 0
            self._meter.add(write_units=write_units(max(before, after)))
            return response
        if operation == "BatchWriteItem":
            units = 0.0
            for table, requests in kwargs["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        units += write_units(max(item_size(item), self._item_size(
                            table, self._key_of(table, item))))
                    else:
                        key = request["DeleteRequest"]["Key"]
                        units += write_units(self._item_size(table, key))
            response = call(**kwargs)
            self._meter.add(write_units=units)
            return response
        if operation == "TransactWriteItems":
            units = 0.0
            for entry in kwargs["TransactItems"]:
                for kind in ("Put", "Update", "Delete", "ConditionCheck"):
                    if kind in entry:
                        spec = entry[kind]
                        key = spec.get("Key") or self._key_of(spec["TableName"], spec["Item"])
                        size = max(self._item_size(spec["TableName"], key),
                                   item_size(spec["Item"]) if kind == "Put" else 0)
                        units += 2 * write_units(size)
            response = call(**kwargs)
            self._meter.add(write_units=units)
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

    def _key_of(self, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
        return self._items.key_of(table, item)

    def _item_size(self, table: str, key: Mapping[str, Any]) -> int:
        return self._items.size(table, key)


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
