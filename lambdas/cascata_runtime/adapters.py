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
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        found: dict[str, Mapping[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{self._key: {"S": k}} for k in unique[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = self._ddb.batch_get_item(
                    RequestItems=request, ReturnConsumedCapacity="TOTAL"
                )
                for used in response.get("ConsumedCapacity", []):
                    self.read_units += float(used.get("CapacityUnits", 0))
                for raw in response["Responses"].get(self._table, []):
                    item = {k: des.deserialize(v) for k, v in raw.items()}
                    found[str(item[self._key])] = _plain(item)
                request = response.get("UnprocessedKeys") or {}
        return found

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


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; the domain works in int (money is never float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
