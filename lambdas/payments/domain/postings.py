"""postings: each validated payment becomes a debit for the payer and a credit for the payee.

Both postings are re-keyed by account (ksqlDB's PARTITION BY) so every posting of an account
lands on one shard, in order. Their ids derive from the payment's id, so a re-emitted batch
produces the very same postings and the balances view recognises them.
"""

from __future__ import annotations

from collections.abc import Sequence

from cascata_runtime.effects import Effects, Emission
from cascata_runtime.envelope import Envelope, Rejection
from payments.domain.schemas import LedgerPosting, PaymentMade, derived_envelope, sort_by_type


def postings_for(payment: PaymentMade) -> tuple[Envelope, Envelope]:
    base = {
        "amount_minor": payment.amount.amount_minor,
        "currency": payment.amount.currency,
        "payment_event_id": payment.envelope.event_id,
    }
    debit = derived_envelope(
        cause=payment.envelope,
        role="posting/debit",
        event_type=LedgerPosting.TYPE,
        version=LedgerPosting.VERSION,
        key=payment.payer,
        data={**base, "account": payment.payer, "counterparty": payment.payee,
              "direction": "debit"},
    )
    credit = derived_envelope(
        cause=payment.envelope,
        role="posting/credit",
        event_type=LedgerPosting.TYPE,
        version=LedgerPosting.VERSION,
        key=payment.payee,
        data={**base, "account": payment.payee, "counterparty": payment.payer,
              "direction": "credit"},
    )
    return debit, credit


def postings_batch(events: Sequence[Envelope | Rejection], *, output_stream: str) -> Effects:
    payments, rejected = sort_by_type(events, PaymentMade)
    emissions = tuple(
        Emission(output_stream, posting, index)
        for index, payment in payments
        if isinstance(payment, PaymentMade)
        for posting in postings_for(payment)
    )
    return Effects(emissions=emissions, quarantined=tuple(rejected))
