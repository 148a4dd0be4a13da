"""validate: raw payments in; normalised payments out, or quarantine with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from cascata_runtime.effects import Effects, Emission
from cascata_runtime.envelope import Envelope, Rejection
from payments.domain.schemas import PaymentMade, sort_by_type


def validate_batch(events: Sequence[Envelope | Rejection], *, output_stream: str) -> Effects:
    payments, rejected = sort_by_type(events, PaymentMade)
    emissions = tuple(
        Emission(output_stream, normalised(p), index)
        for index, p in payments
        if isinstance(p, PaymentMade)
    )
    return Effects(emissions=emissions, quarantined=tuple(rejected))


def normalised(payment: PaymentMade) -> Envelope:
    """The same event (same id: it is the same fact), with canonical data and its lineage."""
    env = payment.envelope
    return Envelope(
        event_id=env.event_id,
        type=env.type,
        version=env.version,
        key=payment.payer,
        occurred_at=env.occurred_at,
        data=MappingProxyType(payment.data()),
        correlation_id=env.correlation_id,
        causation=env.causation,
    )
