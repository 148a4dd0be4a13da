"""The imperative shell shared by every stream processor.

A processor's core is pure: decoded events in, `Effects` out (events to emit, records to
quarantine). `apply_effects` carries them out: quarantine writes, then emits through the sink,
and maps every failure back to the input record that caused it, so the partial batch response
fails exactly those records and Lambda retries from the lowest of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cascata_runtime.envelope import (
    Envelope,
    Rejection,
    decode_json,
    parse_envelope,
)
from cascata_runtime.ports import OutRecord, Sink
from cascata_runtime.quarantine import QuarantineEntry, QuarantineWriter
from cascata_runtime.records import InputRecord, batch_response


@dataclass(frozen=True, slots=True)
class Emission:
    stream: str
    envelope: Envelope
    cause: int
    """Index of the input record this output comes from."""


@dataclass(frozen=True, slots=True)
class Effects:
    emissions: tuple[Emission, ...] = ()
    quarantined: tuple[tuple[int, Rejection], ...] = ()
    failed: Mapping[int, str] = field(default_factory=dict)
    """Input records the core could not process now (they will be retried)."""


@dataclass(slots=True)
class BatchReport:
    records: Sequence[InputRecord]
    failed: dict[int, str] = field(default_factory=dict)
    emitted: list[Emission] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)

    def response(self) -> dict[str, list[dict[str, object]]]:
        return batch_response([self.records[i] for i in sorted(self.failed)])  # type: ignore[return-value]


def parse_records(records: Sequence[InputRecord]) -> list[Envelope | Rejection]:
    """Bytes to envelopes, each with its source position as causation, or a rejection."""
    out: list[Envelope | Rejection] = []
    for record in records:
        if record.decode_error:
            out.append(Rejection("$", "undecodable", record.decode_error))
            continue
        obj = decode_json(record.data)
        if isinstance(obj, Rejection):
            out.append(obj)
            continue
        out.append(parse_envelope(obj, causation=record.position))
    return out


def apply_effects(
    records: Sequence[InputRecord],
    effects: Effects,
    *,
    sink: Sink | None,
    quarantine: QuarantineWriter,
) -> BatchReport:
    """Quarantine, then emit (by stream), then report. `sink` None: the processor emits no
    events (a view writer), and an emission would be a programming error."""
    report = BatchReport(records=records, failed=dict(effects.failed))
    for index, rejection in effects.quarantined:
        entry = QuarantineEntry(records[index], rejection)
        try:
            quarantine.write(entry)
        except Exception as exc:  # noqa: BLE001 - the record is retried, nothing is lost
            report.failed[index] = f"quarantine write failed: {exc}"
        else:
            report.quarantined.append(entry)
    by_stream: dict[str, list[Emission]] = defaultdict(list)
    for emission in effects.emissions:
        if emission.cause not in report.failed:
            by_stream[emission.stream].append(emission)
    for stream, emissions in by_stream.items():
        out = [
            OutRecord(partition_key=e.envelope.key, data=e.envelope.to_bytes(), tag=n)
            for n, e in enumerate(emissions)
        ]
        if sink is None:
            raise AssertionError(f"an emission to {stream} from a processor without a sink")
        failures = sink.emit(stream, out)
        failed_tags = set()
        for failure in failures:
            failed_tags.add(failure.tag)
            report.failed.setdefault(emissions[failure.tag].cause, failure.reason)
        report.emitted.extend(e for n, e in enumerate(emissions) if n not in failed_tags)
    return report
