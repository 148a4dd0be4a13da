"""Baseline `postings`: a debit for the payer and a credit for the payee, one PutRecord each."""

from __future__ import annotations

from benchmarks.baseline.app import Dependencies, Handler, Settings, dependencies, emit
from benchmarks.baseline.app import stream_function as _stream_function
from cascata_runtime.envelope import Envelope
from payments.domain.schemas import Event, LedgerPosting, PaymentMade, derived_envelope

SETTINGS = Settings
__all__ = ["SETTINGS", "dependencies", "make_handler"]


def make_handler(deps: Dependencies) -> Handler:
    kinesis = deps.client("kinesis")
    stream = deps.settings.get("LEDGER_STREAM")

    def on_event(envelope: Envelope, event: Event) -> None:
        assert isinstance(event, PaymentMade)
        base = {"amount_minor": event.amount.amount_minor, "currency": event.amount.currency,
                "payment_event_id": envelope.event_id}
        for direction, account, other in (("debit", event.payer, event.payee),
                                          ("credit", event.payee, event.payer)):
            emit(kinesis, stream, derived_envelope(
                cause=envelope, role=f"posting/{direction}", event_type=LedgerPosting.TYPE,
                version=LedgerPosting.VERSION, key=account,
                data={**base, "account": account, "counterparty": other,
                      "direction": direction}))

    return _stream_function("postings", deps, (PaymentMade,), on_event)
