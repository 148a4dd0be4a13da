"""Baseline `profiles`: customer events set registration fields (last writer by event time
wins, a conditional UpdateItem); each payment adds activity to the payer's and the payee's
profile (one UpdateItem each)."""

from __future__ import annotations

import contextlib
from typing import Any

from benchmarks.baseline.app import Dependencies, Handler, Settings, dependencies
from benchmarks.baseline.app import stream_function as _stream_function
from cascata_runtime.envelope import Envelope, format_time
from payments.domain.schemas import CustomerRegistered, CustomerUpdated, Event, PaymentMade

SETTINGS = Settings
__all__ = ["SETTINGS", "dependencies", "make_handler"]


def make_handler(deps: Dependencies) -> Handler:
    dynamodb = deps.client("dynamodb")
    table = deps.settings.get("PROFILES_TABLE")

    def customer(envelope: Envelope, fields: dict[str, Any]) -> None:
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values: dict[str, Any] = {f":f{i}": {"S": str(v)} for i, v in enumerate(fields.values())}
        values[":t"] = {"S": format_time(envelope.occurred_at)}
        sets = ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
        # An older change arriving late fails the condition: the newer one stays.
        with contextlib.suppress(dynamodb.exceptions.ConditionalCheckFailedException):
            dynamodb.update_item(
                TableName=table, Key={"customer_id": {"S": envelope.key}},
                UpdateExpression=f"SET {sets}, #updated = :t",
                ConditionExpression="attribute_not_exists(#updated) OR #updated < :t",
                ExpressionAttributeNames={**names, "#updated": "profile_updated_at"},
                ExpressionAttributeValues=values,
            )

    def on_event(envelope: Envelope, event: Event) -> None:
        if isinstance(event, CustomerRegistered | CustomerUpdated):
            data = event.data()
            data.pop("customer_id", None)
            customer(envelope, data)
            return
        assert isinstance(event, PaymentMade)
        amount = {"N": str(event.amount.amount_minor)}
        for account, side in ((event.payer, "sent"), (event.payee, "received")):
            dynamodb.update_item(
                TableName=table, Key={"customer_id": {"S": account}},
                UpdateExpression="ADD #count :one, #amount :amount SET #last = :t",
                ExpressionAttributeNames={"#count": f"payments_{side}",
                                          "#amount": f"{side}_{event.amount.currency}",
                                          "#last": "last_payment_at"},
                ExpressionAttributeValues={":one": {"N": "1"}, ":amount": amount,
                                           ":t": {"S": format_time(envelope.occurred_at)}},
            )

    return _stream_function("profiles", deps,
                            (CustomerRegistered, CustomerUpdated, PaymentMade), on_event)
