"""Baseline `windows`: a tumbling 5-minute and a hopping 10-minute-every-5 window per account,
for the payer and the payee, each an UpdateItem ADD per payment (six per payment). The first
write of a window item sets `status` and `closes_at`, which puts it in the `open-by-close`
index the scheduled close reads."""

from __future__ import annotations

from datetime import UTC, datetime

from benchmarks.baseline.app import Dependencies, Handler, Settings, dependencies
from benchmarks.baseline.app import stream_function as _stream_function
from cascata_runtime.envelope import Envelope
from payments.domain.schemas import Event, PaymentMade

SETTINGS = Settings
__all__ = ["SETTINGS", "dependencies", "make_handler", "windows_of"]

ALLOWED_LATENESS_S = 30
OPEN = "open"


def iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def windows_of(epoch_s: int) -> list[tuple[str, int, int]]:
    """(name, start, end) of the windows holding the instant: one tumbling, two hopping."""
    start = epoch_s // 300 * 300
    return [("tumbling", start, start + 300),
            ("hopping", start - 300, start + 300), ("hopping", start, start + 600)]


def make_handler(deps: Dependencies) -> Handler:
    dynamodb = deps.client("dynamodb")
    table = deps.settings.get("ACTIVITY_TABLE")

    def on_event(envelope: Envelope, event: Event) -> None:
        assert isinstance(event, PaymentMade)
        at = int(envelope.occurred_at.timestamp())
        for account, direction in ((event.payer, "out"), (event.payee, "in")):
            for name, start, end in windows_of(at):
                dynamodb.update_item(
                    TableName=table,
                    Key={"account_id": {"S": account}, "window_key": {"S": f"{name}#{iso(start)}"}},
                    UpdateExpression="ADD #count :one, #amount :amount "
                                     "SET #status = if_not_exists(#status, :open), "
                                     "#closes = if_not_exists(#closes, :closes)",
                    ExpressionAttributeNames={
                        "#count": f"count_{direction}",
                        "#amount": f"{direction}_{event.amount.currency}",
                        "#status": "status", "#closes": "closes_at"},
                    ExpressionAttributeValues={
                        ":one": {"N": "1"}, ":amount": {"N": str(event.amount.amount_minor)},
                        ":open": {"S": OPEN}, ":closes": {"S": iso(end + ALLOWED_LATENESS_S)}},
                )

    return _stream_function("windows", deps, (PaymentMade,), on_event)
