"""The local stand-in for Firehose: raw streams copied to the archive bucket.

On AWS a Firehose delivery stream per archived stream buffers records, runs the archive
transformation and writes gzip objects under the partition prefixes. Locally an event source
mapping feeds the same records, batch by batch, through the same `archive_entry`, and each
batch becomes one object per partition it touches. Object names are derived from the batch's
shard and first and last sequence numbers, so a retried batch overwrites its own objects rather
than adding copies; readers still de-duplicate by (stream, shard, sequence number, subsequence
number), because a bisected retry groups records differently.

Firehose de-aggregates KPL aggregates before its transformation; here `decode_event` does, and
each user record's line carries its subsequence number, as Firehose's metadata gives it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cascata_runtime.archive import (
    RawRecord,
    archive_entry,
    encode_object,
    group_by_partition,
    object_key,
)
from cascata_runtime.records import decode_event


class Archiver:
    """A Lambda-shaped function writing each Kinesis batch to the archive bucket."""

    def __init__(self, s3: Any, bucket: str, stream: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._stream = stream
        self.objects_written = 0
        self.records_archived = 0

    def __call__(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        records = decode_event(event)
        if not records:
            return {"batchItemFailures": []}
        entries = [
            archive_entry(RawRecord(
                stream=self._stream,
                shard_id=r.position.shard,
                sequence_number=r.position.sequence,
                partition_key=r.partition_key,
                # Floor, as the replay compares arrival times with --until.
                arrival_ms=math.floor(r.arrival_epoch_s * 1000),
                # A record whose base64 could not be decoded is kept as the error it is.
                data=r.data,
                subsequence_number=r.position.subsequence,
            ))
            for r in records
        ]
        first, last = records[0].position, records[-1].position
        for partition, group in group_by_partition(entries).items():
            key = object_key(partition, first.shard, first.sequence, last.sequence)
            # Any failure raises: the mapping retries the batch and the keys are the same.
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=encode_object(group),
                                ContentType="application/x-ndjson", ContentEncoding="gzip")
            self.objects_written += 1
        self.records_archived += len(entries)
        return {"batchItemFailures": []}
