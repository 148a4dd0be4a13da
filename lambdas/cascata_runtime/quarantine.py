"""The quarantine: every record a processor refuses, with the reason and where it came from.

One S3 object per refused record, at a key derived from the source position, so a redelivered
batch overwrites the same objects instead of adding copies: writing is idempotent. The user
records of a KPL aggregate share its sequence number; each has its own object, named by its
subsequence as well.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cascata_runtime.envelope import Rejection
from cascata_runtime.ports import ObjectStore
from cascata_runtime.records import InputRecord

PREFIX = "quarantine"


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    record: InputRecord
    rejection: Rejection


def quarantine_key(processor: str, record: InputRecord) -> str:
    day = datetime.fromtimestamp(record.arrival_epoch_s, UTC).strftime("%Y/%m/%d")
    pos = record.position
    name = f"{int(pos.sequence):020d}"
    if pos.subsequence is not None:
        name += f"-{pos.subsequence:06d}"
    return f"{PREFIX}/{processor}/{day}/{pos.stream}/{pos.shard}/{name}.json"


def quarantine_body(processor: str, entry: QuarantineEntry) -> bytes:
    record = entry.record
    body: dict[str, object] = {
        "processor": processor,
        "reason": entry.rejection.as_dict(),
        "source": record.position.as_dict(),
        "partition_key": record.partition_key,
        "approximate_arrival": datetime.fromtimestamp(record.arrival_epoch_s, UTC).isoformat(),
        "data_base64": base64.b64encode(record.data).decode(),
    }
    with contextlib.suppress(UnicodeDecodeError):
        body["data_text"] = record.data.decode("utf-8")
    return json.dumps(body, sort_keys=True).encode()


class QuarantineWriter:
    def __init__(self, store: ObjectStore, *, bucket: str, processor: str) -> None:
        self._store = store
        self._bucket = bucket
        self._processor = processor

    def write(self, entry: QuarantineEntry) -> None:
        self._store.put(
            self._bucket,
            quarantine_key(self._processor, entry.record),
            quarantine_body(self._processor, entry),
        )
