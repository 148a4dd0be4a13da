"""The imperative shell shared by every stream processor.

A processor's core is pure: decoded events in, `Effects` out (events to emit, records to
quarantine). `read_batch` decodes a batch: envelopes or rejections, each record's lineage, and
for origin streams the origin gate (event-time bounds, duplicates suppressed); a version's
replay stream's records are first unwrapped to the bytes and arrival time live saw
(`cascata_runtime.records.replayed_input`). `apply_effects`
carries the effects out: quarantine writes, then emits through the sink (each output stamped
with its cause's lineage), and maps every failure back to the input record that caused it, so
the partial batch response fails exactly those records and Lambda retries from the lowest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cascata_runtime.effects import Effects, Emission
from cascata_runtime.envelope import (
    Envelope,
    Rejection,
    decode_json,
    parse_envelope,
)
from cascata_runtime.lineage import Lineage, Stamper, input_lineages
from cascata_runtime.origin import Markers, OriginPolicy, gate, marker_position
from cascata_runtime.ports import OutRecord, Sink
from cascata_runtime.quarantine import QuarantineEntry, QuarantineWriter
from cascata_runtime.records import InputRecord, batch_response, replayed_input

__all__ = ["Batch", "BatchReport", "Effects", "Emission", "Origins", "Parsed", "apply_effects",
           "emit", "parse_records", "read_batch", "stamped_bytes"]

Parsed = Envelope | Rejection | None
"""A decoded record: an envelope, why it is invalid, or None for a copy the gate suppressed."""


@dataclass(slots=True)
class BatchReport:
    records: Sequence[InputRecord]
    failed: dict[int, str] = field(default_factory=dict)
    emitted: list[Emission] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    duplicates: int = 0
    """Records turned away as copies (origin duplicates, redeliveries, re-emitted records)."""

    def response(self) -> dict[str, list[dict[str, object]]]:
        return batch_response([self.records[i] for i in sorted(self.failed)])  # type: ignore[return-value]


def parse_records(records: Sequence[InputRecord]) -> list[Envelope | Rejection]:
    """Bytes to envelopes, each with its source position as causation, or a rejection."""
    out: list[Envelope | Rejection] = []
    for record in records:
        if record.decode_error:
            out.append(Rejection("$", record.error_code, record.decode_error))
            continue
        obj = decode_json(record.data)
        if isinstance(obj, Rejection):
            out.append(obj)
            continue
        out.append(parse_envelope(obj, causation=record.position))
    return out


@dataclass(frozen=True, slots=True)
class Batch:
    """One decoded batch: the records, what each decodes to, and each record's lineage."""

    records: Sequence[InputRecord]
    """The records as the processor's logic sees them: a replay stream's unwrapped (the
    producer's bytes, the original arrival time), every other one as delivered."""
    events: Sequence[Parsed]
    lineages: Sequence[Lineage]
    failed: Mapping[int, str] = field(default_factory=dict)
    """Records that could not pass the gate now (a marker write failed): retried."""
    duplicates: int = 0

    @property
    def stamper(self) -> Stamper:
        return Stamper(self.lineages)


@dataclass(frozen=True, slots=True)
class Origins:
    """The origin streams a processor reads (physical names), their policies, and the marker
    store of the duplicate gate."""

    policies: Mapping[str, OriginPolicy] = field(default_factory=dict)
    markers: Markers | None = None


def read_batch(records: Sequence[InputRecord], origins: Origins | None = None) -> Batch:
    """Decode a batch; records of origin streams go through the origin gate."""
    origins = origins or Origins()
    records, refused = _unwrap_replayed(records, origins.policies)
    parsed = parse_records(records)
    for index, rejection in refused.items():
        parsed[index] = rejection
    lineages = input_lineages(
        [r.position for r in records],
        [e.lineage if isinstance(e, Envelope) else None for e in parsed],
        origins=origins.policies,
    )
    if not origins.policies:
        return Batch(records, parsed, lineages)
    gated = gate(
        parsed,
        streams=[r.position.stream for r in records],
        positions=[marker_position(r.position) for r in records],
        arrivals=[r.arrival_epoch_s for r in records],
        policies=origins.policies,
        markers=origins.markers,
    )
    events = [None if i in gated.failed else e for i, e in enumerate(gated.events)]
    return Batch(records, events, lineages, gated.failed, gated.duplicates)


def _unwrap_replayed(records: Sequence[InputRecord], policies: Mapping[str, OriginPolicy]
                     ) -> tuple[Sequence[InputRecord], dict[int, Rejection]]:
    """Records of replay streams unwrapped; those that are no replay wrapper are refused (kept
    as delivered, so the quarantine shows what was there). Only a stream the declaration calls
    a replay stream is unwrapped: on a live stream a wrapper is a producer's bytes."""
    replayed = {name for name, policy in policies.items() if policy.replayed}
    if not replayed:
        return records, {}
    out: list[InputRecord] = []
    refused: dict[int, Rejection] = {}
    for index, record in enumerate(records):
        if record.position.stream not in replayed:
            out.append(record)
            continue
        inner = replayed_input(record)
        if isinstance(inner, Rejection):
            refused[index] = inner
            out.append(record)
        else:
            out.append(inner)
    return out, refused


def apply_effects(
    records: Sequence[InputRecord],
    effects: Effects,
    *,
    sink: Sink | None,
    quarantine: QuarantineWriter,
    batch: Batch | None = None,
) -> BatchReport:
    """Quarantine, then emit (by stream), then report. `sink` None: the processor emits no
    events (a view writer), and an emission would be a programming error. With `batch`, every
    output carries its cause's lineage, and the gate's failures and duplicates are reported."""
    report = BatchReport(records=records, failed=dict(effects.failed))
    stamper = batch.stamper if batch is not None else None
    # A replayed record is quarantined as live would have quarantined it (its own bytes and
    # arrival time); the response still names the records as delivered.
    seen = batch.records if batch is not None and len(batch.records) == len(records) else records
    if batch is not None:
        for index, reason in batch.failed.items():
            report.failed.setdefault(index, reason)
        report.duplicates += batch.duplicates
    for index, rejection in effects.quarantined:
        entry = QuarantineEntry(seen[index], rejection)
        try:
            quarantine.write(entry)
        except Exception as exc:  # noqa: BLE001 - the record is retried, nothing is lost
            report.failed[index] = f"quarantine write failed: {exc}"
        else:
            report.quarantined.append(entry)
    pending = [e for e in effects.emissions if e.cause not in report.failed]
    if pending and sink is None:
        raise AssertionError(f"an emission to {pending[0].stream} from a processor without a sink")
    if sink is not None:
        failures = emit(sink, pending, stamper)
        for emission, reason in failures:
            report.failed.setdefault(emission.cause, reason)
        failed_ids = {id(e) for e, _ in failures}
        report.emitted.extend(e for e in pending if id(e) not in failed_ids)
    return report


def emit(sink: Sink, emissions: Sequence[Emission], stamper: Stamper | None
         ) -> list[tuple[Emission, str]]:
    """Write `emissions` through `sink`, one PutRecords call per stream, each output stamped
    with its cause's lineage; returns the emissions that could not be written, with why."""
    by_stream: dict[str, list[Emission]] = defaultdict(list)
    for emission in emissions:
        by_stream[emission.stream].append(emission)
    failed: list[tuple[Emission, str]] = []
    for stream, group in by_stream.items():
        out = [
            OutRecord(partition_key=e.envelope.key, data=stamped_bytes(e, stamper), tag=n)
            for n, e in enumerate(group)
        ]
        failed.extend((group[f.tag], f.reason) for f in sink.emit(stream, out))
    return failed


def stamped_bytes(emission: Emission, stamper: Stamper | None) -> bytes:
    """The emission's bytes, its envelope carrying the lineage its cause gives it."""
    envelope = emission.envelope
    if stamper is not None and 0 <= emission.cause < len(stamper):
        envelope = envelope.with_lineage(stamper.stamp(emission.cause, envelope.event_id))
    return envelope.to_bytes()
