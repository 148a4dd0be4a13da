"""boto3 adapters for the runtime's ports, and the cached factory that builds clients once.

Endpoints and credentials come from the standard chain (`AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_<SERVICE>`, profiles, roles), so the same code talks to AWS, to the embedded
emulator or to any AWS-compatible endpoint.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from cascata_runtime.ports import ObjectStore


@functools.cache
def client(service: str) -> Any:
    """One client per service per execution environment, created on first use, not at import.
    `client(KAFKA_PRODUCER)` and `client(KAFKA_ADMIN)` are the Kafka producer and admin
    client the environment describes, or None on Kinesis (`cascata_runtime.sinks`)."""
    import os

    from cascata_runtime.sinks import KAFKA_ADMIN, KAFKA_PRODUCER, kafka_admin, kafka_producer

    if service == KAFKA_PRODUCER:
        return kafka_producer(os.environ)
    if service == KAFKA_ADMIN:
        return kafka_admin(os.environ)
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                    read_timeout=30, tcp_keepalive=True)
    return boto3.client(service, config=config)


class S3ObjectStore(ObjectStore):
    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self._s3.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json"
        )


def conditional(write: Callable[..., Any], **request: Any) -> bool:
    """One conditional write (`dynamodb.put_item`, `dynamodb.update_item`): True when written,
    False when the condition failed (a lost race, a held claim); any other error raises."""
    try:
        write(**request)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code == "ConditionalCheckFailedException":
            return False
        raise
    return True


class DynamoMarkers:
    """The origin gate's duplicate markers (`cascata_runtime.origin`): one item per event id,
    `id`, `position`, `until` (the first arrival plus the horizon: what the gate compares with
    an arriving copy's arrival time) and `expires_at` (the table's TTL attribute).

    The two times differ on purpose. `until` is in the records' own time, so a replay decides
    as live did; `expires_at` is in wall-clock time, at least the horizon from the write, so
    DynamoDB's TTL never deletes a marker that could still stop a copy (a replay writes markers
    whose `until` is long past)."""

    def __init__(self, dynamodb: Any, table: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._ddb = dynamodb
        self._table = table
        self._clock = clock

    def claim(self, marker: str, position: str, expires_at: int, now: int) -> bool:
        horizon = max(0, expires_at - now)
        physical = max(expires_at, int(self._clock()) + horizon)
        return conditional(
            self._ddb.put_item,
            TableName=self._table,
            Item={"id": {"S": marker}, "position": {"S": position},
                  "until": {"N": str(expires_at)}, "expires_at": {"N": str(physical)}},
            ConditionExpression="attribute_not_exists(id) OR #p = :p OR #u <= :now",
            ExpressionAttributeNames={"#p": "position", "#u": "until"},
            ExpressionAttributeValues={":p": {"S": position}, ":now": {"N": str(now)}},
        )


class DynamoItemStore:
    """`cascata_runtime.ports.ItemStore` over one table: string partition keys, or
    (partition, sort) pairs when the table has a sort key. Reads are strongly consistent."""

    def __init__(self, dynamodb: Any, table: str, *, key: str, sort_key: str | None = None
                 ) -> None:
        self._ddb = dynamodb
        self._table = table
        self._key = key
        self._sort = sort_key
        self.read_units = 0.0
        self.write_requests = 0

    def key_attributes(self, key: Any) -> dict[str, Any]:
        if self._sort is None:
            return {self._key: key}
        partition, sort = key
        return {self._key: partition, self._sort: sort}

    def _key_of(self, item: Mapping[str, Any]) -> Any:
        if self._sort is None:
            return str(item[self._key])
        return (str(item[self._key]), str(item[self._sort]))

    def get_many(self, keys: Sequence[Any]) -> Mapping[Any, Mapping[str, Any]]:
        asked = [self.key_attributes(k) for k in dict.fromkeys(keys)]
        items, units = batch_get_consistent(self._ddb, self._table, asked)
        self.read_units += units
        return {self._key_of(item): item for item in items}

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        if expected_version is None:
            condition = "attribute_not_exists(#k)"
            names = {"#k": self._key}
            values: dict[str, Any] = {}
        else:
            condition = "#v = :expected"
            names = {"#v": "version"}
            values = {":expected": {"N": str(expected_version)}}
        self.write_requests += 1
        return conditional(
            self._ddb.put_item,
            TableName=self._table,
            Item={k: ser.serialize(v) for k, v in item.items()},
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            **({"ExpressionAttributeValues": values} if values else {}),
        )


def batch_get_consistent(
    dynamodb: Any, table: str, keys: Sequence[Mapping[str, str]]
) -> tuple[list[dict[str, Any]], float]:
    """Strongly consistent reads of items by their (string) keys, 100 per BatchGetItem,
    unprocessed keys retried; returns the items as plain Python values and the read units."""
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    found: list[dict[str, Any]] = []
    units = 0.0
    for start in range(0, len(keys), 100):
        request: dict[str, Any] = {
            table: {
                "Keys": [
                    {name: {"S": value} for name, value in key.items()}
                    for key in keys[start : start + 100]
                ],
                "ConsistentRead": True,
            }
        }
        while request:
            response = dynamodb.batch_get_item(
                RequestItems=request, ReturnConsumedCapacity="TOTAL"
            )
            for used in response.get("ConsumedCapacity", []):
                units += float(used.get("CapacityUnits", 0))
            for raw in response["Responses"].get(table, []):
                found.append(plain({k: des.deserialize(v) for k, v in raw.items()}))
            request = response.get("UnprocessedKeys") or {}
    return found, units


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal and binaries as `Binary`: back to int and bytes
    (the domain works in int: money is never a float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    raw = getattr(value, "value", None)
    if isinstance(raw, bytes):
        return raw
    return value
