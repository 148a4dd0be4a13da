"""validate: raw payments in; normalised payments out, or quarantine with the reason."""

from __future__ import annotations

from collections.abc import Sequence

from cascata_runtime.envelope import Envelope, Rejection
from cascata_runtime.shell import Effects, Emission
from payments.domain.schemas import PaymentMade, parse_event


def validate_batch(events: Sequence[Envelope | Rejection], *, output_stream: str) -> Effects:
    emissions: list[Emission] = []
    quarantined: list[tuple[int, Rejection]] = []
    for index, item in enumerate(events):
        if isinstance(item, Rejection):
            quarantined.append((index, item))
            continue
        event = parse_event(item)
        if isinstance(event, Rejection):
            quarantined.append((index, event))
            continue
        if not isinstance(event, PaymentMade):
            quarantined.append(
                (
                    index,
                    Rejection(
                        "type",
                        "unexpected_type",
                        f"{item.type} does not belong on the payments stream",
                    ),
                )
            )
            continue
        emissions.append(Emission(output_stream, normalised(event), index))
    return Effects(emissions=tuple(emissions), quarantined=tuple(quarantined))


def normalised(payment: PaymentMade) -> Envelope:
    """The same event (same id: it is the same fact), with canonical data and its lineage."""
    env = payment.envelope
    from types import MappingProxyType

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
