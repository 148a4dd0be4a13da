"""Baseline `balances`: one UpdateItem ADD per ledger posting (the debit and the credit)."""

from __future__ import annotations

from benchmarks.baseline.app import Dependencies, Handler, Settings, dependencies
from benchmarks.baseline.app import stream_function as _stream_function
from cascata_runtime.envelope import Envelope
from payments.domain.schemas import Event, LedgerPosting

SETTINGS = Settings
__all__ = ["SETTINGS", "dependencies", "make_handler"]


def make_handler(deps: Dependencies) -> Handler:
    dynamodb = deps.client("dynamodb")
    table = deps.settings.get("BALANCES_TABLE")

    def on_event(envelope: Envelope, event: Event) -> None:
        assert isinstance(event, LedgerPosting)
        dynamodb.update_item(
            TableName=table, Key={"account_id": {"S": event.account}},
            UpdateExpression="ADD #balance :amount, #postings :one",
            ExpressionAttributeNames={"#balance": f"balance_{event.amount.currency}",
                                      "#postings": "postings"},
            ExpressionAttributeValues={":amount": {"N": str(event.signed_minor)},
                                       ":one": {"N": "1"}},
        )

    return _stream_function("balances", deps, (LedgerPosting,), on_event)
