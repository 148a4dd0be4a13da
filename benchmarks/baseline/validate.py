"""Baseline `validate`: raw payments checked, each valid one put on payments-validated."""

from __future__ import annotations

from types import MappingProxyType

from benchmarks.baseline.app import Dependencies, Handler, Settings, dependencies, emit
from benchmarks.baseline.app import stream_function as _stream_function
from cascata_runtime.envelope import Envelope
from payments.domain.schemas import Event, PaymentMade

SETTINGS = Settings
__all__ = ["SETTINGS", "dependencies", "make_handler"]


def make_handler(deps: Dependencies) -> Handler:
    kinesis = deps.client("kinesis")
    stream = deps.settings.get("VALIDATED_STREAM")

    def on_event(envelope: Envelope, event: Event) -> None:
        assert isinstance(event, PaymentMade)
        emit(kinesis, stream, Envelope(
            event_id=envelope.event_id, type=envelope.type, version=envelope.version,
            key=event.payer, occurred_at=envelope.occurred_at,
            data=MappingProxyType(event.data()), correlation_id=envelope.correlation_id,
            causation=envelope.causation))

    return _stream_function("validate", deps, (PaymentMade,), on_event)
