"""boto3 adapters for the runtime's ports, and the cached factory that builds clients once.

Endpoints and credentials come from the standard chain (`AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_<SERVICE>`, profiles, roles), so the same code talks to AWS, to the embedded
emulator or to any AWS-compatible endpoint.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from cascata_runtime.ports import ItemStore, ObjectStore


@functools.cache
def client(service: str) -> Any:
    """One client per service per execution environment, created on first use, not at import."""
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


class DynamoItemStore(ItemStore):
    """Versioned items in one table. Reads are strongly consistent (they fence writes)."""

    def __init__(self, dynamodb: Any, table: str, *, key: str) -> None:
        self._ddb = dynamodb
        self._table = table
        self._key = key
        self.read_units = 0.0
        self.write_requests = 0

    def get_many(self, keys: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        items, units = batch_get_consistent(
            self._ddb, self._table, [{self._key: k} for k in dict.fromkeys(keys)]
        )
        self.read_units += units
        return {str(item[self._key]): item for item in items}

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        if expected_version is None:
            condition = "attribute_not_exists(#k)"
            values: dict[str, Any] = {}
        else:
            condition = "#v = :expected"
            values = {":expected": {"N": str(expected_version)}}
        try:
            self.write_requests += 1
            self._ddb.put_item(
                TableName=self._table,
                Item={k: ser.serialize(v) for k, v in item.items()},
                ConditionExpression=condition,
                ExpressionAttributeNames={"#k": self._key} if expected_version is None
                else {"#v": "version"},
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return False
            raise
        return True


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
