"""Baseline `windows-close` (scheduled): every window whose close time has passed, found in the
`open-by-close` index, is closed with one conditional UpdateItem (which takes it out of the
index) and its final result put on the activity stream."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from benchmarks.baseline.app import Dependencies, Handler, Settings, dependencies
from benchmarks.baseline.windows import OPEN, iso

SETTINGS = Settings
__all__ = ["SETTINGS", "dependencies", "make_handler"]


def make_handler(deps: Dependencies) -> Handler:
    logger = Logger(service="baseline-windows-close")
    dynamodb = deps.client("dynamodb")
    kinesis = deps.client("kinesis")
    table = deps.settings.get("ACTIVITY_TABLE")
    stream = deps.settings.get("ACTIVITY_STREAM")

    def close(key: Mapping[str, Any], now: str) -> None:
        try:
            item = dynamodb.update_item(
                TableName=table, Key=dict(key),
                UpdateExpression="REMOVE #status SET #closed = :now",
                ConditionExpression="#status = :open",
                ExpressionAttributeNames={"#status": "status", "#closed": "closed_at"},
                ExpressionAttributeValues={":open": {"S": OPEN}, ":now": {"S": now}},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except dynamodb.exceptions.ConditionalCheckFailedException:
            return  # closed by an earlier run
        final = {name: next(iter(value.values())) for name, value in item.items()}
        kinesis.put_record(StreamName=stream, PartitionKey=final["account_id"],
                           Data=json.dumps({"type": "window.closed", "data": final}).encode())

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        now = iso(int(deps.now()))
        closed = 0
        kwargs: dict[str, Any] = {
            "TableName": table, "IndexName": "open-by-close",
            "KeyConditionExpression": "#status = :open AND #closes <= :now",
            "ExpressionAttributeNames": {"#status": "status", "#closes": "closes_at"},
            "ExpressionAttributeValues": {":open": {"S": OPEN}, ":now": {"S": now}},
        }
        while True:
            page = dynamodb.query(**kwargs)
            for key in page.get("Items", []):
                close({"account_id": key["account_id"], "window_key": key["window_key"]}, now)
                closed += 1
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return {"closed": closed}

    return handler
