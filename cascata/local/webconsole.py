"""The web console of `cascata up`: a static page over a small JSON API, on loopback.

The page (`console_static/`: HTML, CSS and a script, no build step) draws the topology and polls
`/api/status`, the same document `cascata status --json` prints (`cascata.local.observe`). The
API is read-only but for one explicit action, sending a fixed quarantined or on-failure record
back to its stream:

    GET  /api/overview                     app, stage, region, endpoints, topology
    GET  /api/status                       backlog, counters, rates, quarantined, view sizes
    GET  /api/streams                      every stream and its shards
    GET  /api/streams/<stream>/records     ?shard=&limit=  the last records, decoded
    GET  /api/views                        every table, its keys and the versions
    GET  /api/views/<table>                ?key=&sort=&version=  one key's items, or
                                           ?limit=&cursor=&version=  a page of the table
    GET  /api/failures                     ?kind=quarantine|on_failure&processor=&limit=
    GET  /api/failures/entry               ?id=  one entry in full
    POST /api/failures/resend              {"id", "record", "data", "again"}
    GET  /api/versions                     the live pointer and every version
    GET  /api/versions/diff                ?a=&b=  how two versions' views differ

Every request passes `cascata.local.guard` first (loopback Host, no other Origin, no CORS);
every parameter has a size and shape limit, and a bad one gets a 400 with one sentence.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from cascata.local.esm_sources import KafkaSource, KinesisBackendSource, backlog_of
from cascata.local.guard import LoopbackGuard
from cascata.local.objects import list_keys
from cascata.local.observe import (
    QUARANTINE_PREFIX,
    build_status,
    quarantine_buckets,
    topology,
)
from cascata.local.runtime import LocalRuntime
from cascata.pipeline import Pipeline, Table, check_version
from cascata_runtime import kpl
from cascata_runtime.policy import MAX_RECORD_BYTES, parse_json
from cascata_runtime.rejection import Rejection

log = logging.getLogger(__name__)

ON_FAILURE_PREFIX = "aws/lambda/"
"""Where Lambda puts on-failure records in an S3 destination (`esm_destinations`)."""
RESENT_PREFIX = "cascata/console/resent/"
"""Beside each entry sent back: when, to which stream, at which sequence number."""
MAX_BODY_BYTES = 4 * MAX_RECORD_BYTES
"""A resend body: one record of at most 1 MiB, escaped as a JSON string."""
MAX_QUERY_BYTES = 4096
MAX_KEY_BYTES = 1024
MAX_CURSOR_CHARS = 2048
MAX_SHOWN_BYTES = 64 * 1024
"""Record data shown in a listing; longer data is cut (the entry view shows it whole)."""
MAX_LIMIT = 200
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
     "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
     "frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/static/console.css": ("console.css", "text/css; charset=utf-8"),
}


class ApiError(Exception):
    """A request the API refuses: its HTTP status and one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ConsoleData:
    """What the console shows, read from a running `LocalRuntime` and its embedded emulator."""

    runtime: LocalRuntime
    endpoints: Mapping[str, Any] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pipeline(self) -> Pipeline:
        return self.runtime.pipeline

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.runtime.aws.client(service)
            return self._clients[service]

    def names(self) -> Mapping[str, str]:
        assert self.runtime.provisioned is not None
        return self.runtime.provisioned.names

    # -- overview and status -------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        aws = self.runtime.aws
        return {"app": self.pipeline.app, "stage": self.runtime.stage, "region": aws.region,
                "endpoints": dict(self.endpoints), "topology": topology(self.pipeline)}

    def status(self) -> dict[str, Any]:
        aws = self.runtime.aws
        return build_status(self.pipeline, self.runtime.checkpoint_report(),
                            names=self.names(), backlog=self._backlog,
                            dynamodb=self.client("dynamodb"), s3=self.client("s3"),
                            region=aws.region, stage=self.runtime.stage, account=aws.account)

    def _source(self, physical: str) -> KinesisBackendSource | KafkaSource:
        if self.runtime.kafka is not None:
            return KafkaSource(self.runtime.kafka, physical)
        aws = self.runtime.aws
        return KinesisBackendSource(physical, account=aws.account, region=aws.region)

    def _backlog(self, physical: str, checkpoints: Mapping[str, str]) -> tuple[int, int]:
        return backlog_of(self._source(physical), checkpoints)

    # -- streams -------------------------------------------------------------------------

    def streams(self) -> list[dict[str, Any]]:
        out = []
        for stream in self.pipeline.streams:
            source = self._source(self.names()[stream.name])
            shards = []
            for shard in source.list_shards():
                count, _ = source.backlog(shard.shard_id, None)
                shards.append({"id": shard.shard_id, "open": not shard.closed,
                               "records": count})
            out.append({"name": stream.name, "physical": self.names()[stream.name],
                        "origin": stream.origin, "partition_key": stream.partition_key,
                        "description": stream.description, "shards": shards})
        return out

    def stream_records(self, stream: str, shard: str | None, limit: int) -> dict[str, Any]:
        declared = self._declared(stream, kind="stream")
        source = self._source(self.names()[declared])
        shard_ids = [s.shard_id for s in source.list_shards()]
        if shard is None:
            shard = shard_ids[0] if shard_ids else ""
        if shard not in shard_ids:
            raise ApiError(404, f"stream {declared} has no shard {shard[:80]!r}; its shards: "
                                f"{', '.join(shard_ids)}")
        records = source.tail(shard, limit)
        # Kafka keys are bytes, carried in base64 as the MSK event carries them.
        key = ((lambda k: _unbase64(k).decode("utf-8", "replace"))
               if isinstance(source, KafkaSource) else str)
        return {"stream": declared, "shard": shard, "shards": shard_ids,
                "records": [decoded_record(r.position, key(r.partition_key), r.arrival,
                                           base64.b64decode(r.data or ""))
                            for r in reversed(records)]}

    # -- views ---------------------------------------------------------------------------

    def views(self) -> dict[str, Any]:
        registry = self._registry()
        live = registry.live() if registry else "v1"
        versions = ["v1"] + ([r.version for r in registry.records()] if registry else [])
        return {"live": live, "versions": versions, "tables": [
            {"name": t.name, "role": t.role, "partition_key": t.partition_key,
             "sort_key": t.sort_key, "description": t.description}
            for t in self.pipeline.tables]}

    def view_lookup(self, table: str, key: str, sort: str | None, version: str | None,
                    limit: int) -> dict[str, Any]:
        declared = self._table(table)
        physical, version = self._physical_table(declared, version)
        ddb = self.client("dynamodb")
        if declared.sort_key is None or sort is not None:
            wire = {declared.partition_key: {"S": key}}
            if declared.sort_key is not None and sort is not None:
                wire[declared.sort_key] = {"S": sort}
            found = ddb.get_item(TableName=physical, Key=wire, ConsistentRead=True).get("Item")
            items = [found] if found else []
        else:
            answer = ddb.query(TableName=physical, KeyConditionExpression="#k = :v",
                               ExpressionAttributeNames={"#k": declared.partition_key},
                               ExpressionAttributeValues={":v": {"S": key}},
                               ScanIndexForward=False, Limit=limit, ConsistentRead=True)
            items = answer.get("Items", [])
        return {"table": declared.name, "version": version, "key": key, "sort": sort,
                "items": [from_wire(i) for i in items]}

    def view_page(self, table: str, limit: int, cursor: str | None, version: str | None
                  ) -> dict[str, Any]:
        declared = self._table(table)
        physical, version = self._physical_table(declared, version)
        kwargs: dict[str, Any] = {"TableName": physical, "Limit": limit}
        if cursor:
            kwargs["ExclusiveStartKey"] = decode_cursor(cursor, declared)
        answer = self.client("dynamodb").scan(**kwargs)
        last = answer.get("LastEvaluatedKey")
        return {"table": declared.name, "version": version,
                "items": [from_wire(i) for i in answer.get("Items", [])],
                "cursor": encode_cursor(last) if last else None}

    def _table(self, name: str) -> Table:
        declared = self._declared(name, kind="table")
        return next(t for t in self.pipeline.tables if t.name == declared)

    def _physical_table(self, table: Table, version: str | None) -> tuple[str, str]:
        from cascata.versions import table_exists, table_name

        registry = self._registry()
        if version is None:
            version = registry.live() if registry else "v1"
        try:
            check_version(version)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        aws = self.runtime.aws
        physical = table_name(self.pipeline, table.name, version, stage=self.runtime.stage,
                              account=aws.account, region=aws.region)
        if version != "v1" and not table_exists(self.client("dynamodb"), physical):
            raise ApiError(404, f"version {version} has no {table.name} table")
        return physical, version

    def _registry(self) -> Any:
        from cascata.versions import Registry

        control = self.pipeline.control_table
        if control is None:
            return None
        return Registry(self.client("dynamodb"), self.names()[control.name])

    # -- versions ------------------------------------------------------------------------

    def versions(self) -> dict[str, Any]:
        from cascata.versions import DEPLOYED

        registry = self._registry()
        if registry is None:
            return {"live": "v1", "versions": [], "registry": False}
        live = registry.live()
        rows = [{"version": "v1", "state": DEPLOYED, "live": live == "v1"}]
        rows += [r.summary(live) for r in registry.records()]
        return {"live": live, "versions": rows, "registry": True}

    def diff(self, a: str, b: str) -> dict[str, Any]:
        from cascata.versions import diff_versions, views_exist

        aws = self.runtime.aws
        for version in (a, b):
            try:
                check_version(version)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
            if not views_exist(self.client("dynamodb"), version, stage=self.runtime.stage,
                               account=aws.account, region=aws.region,
                               pipeline=self.pipeline):
                raise ApiError(404, f"version {version} has no views here")
        report = diff_versions(self.client("dynamodb"), a, b, stage=self.runtime.stage,
                               account=aws.account, region=aws.region,
                               pipeline=self.pipeline, examples=5)
        return report.to_json()

    # -- failures ------------------------------------------------------------------------

    def failure_buckets(self) -> dict[str, set[str]]:
        """Declared bucket -> the kinds of entries it holds."""
        kinds: dict[str, set[str]] = {}
        for bucket in quarantine_buckets(self.pipeline).values():
            kinds.setdefault(bucket, set()).add("quarantine")
        buckets = {b.name for b in self.pipeline.buckets}
        for proc in self.pipeline.processors:
            for src in proc.sources:
                if src.on_failure in buckets:
                    kinds.setdefault(src.on_failure, set()).add("on_failure")
        return kinds

    def failures(self, kind: str, processor: str | None, limit: int) -> dict[str, Any]:
        if kind not in ("quarantine", "on_failure"):
            raise ApiError(400, "kind must be quarantine or on_failure")
        if processor is not None:
            self._declared(processor, kind="processor")
        s3 = self.client("s3")
        mapping_of = self._mapping_names()
        found: list[tuple[datetime, str, str]] = []
        for bucket, kinds in sorted(self.failure_buckets().items()):
            if kind not in kinds:
                continue
            prefix = QUARANTINE_PREFIX if kind == "quarantine" else ON_FAILURE_PREFIX
            if kind == "quarantine" and processor is not None:
                prefix += f"{processor}/"
            physical = self.names()[bucket]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=physical,
                                                                     Prefix=prefix):
                for obj in page.get("Contents", []):
                    if kind == "on_failure" and processor is not None:
                        esm = obj["Key"][len(ON_FAILURE_PREFIX):].split("/", 1)[0]
                        if mapping_of.get(esm, "").split("/", 1)[0] != processor:
                            continue
                    found.append((obj["LastModified"], bucket, obj["Key"]))
        found.sort(reverse=True)
        # One listing of the "sent back" notes per bucket, not one request per entry.
        noted = {bucket: set(list_keys(s3, self.names()[bucket], RESENT_PREFIX))
                 for bucket in {b for _, b, _ in found[:limit]}}
        entries = [self.entry(f"{bucket}/{key}", full=False,
                              maybe_resent=RESENT_PREFIX + key in noted[bucket])
                   for _, bucket, key in found[:limit]]
        return {"kind": kind, "total": len(found), "shown": len(entries), "entries": entries}

    def entry(self, entry_id: str, *, full: bool = True,
              maybe_resent: bool = True) -> dict[str, Any]:
        """One entry; `maybe_resent=False` (the caller listed the notes) skips looking for a
        "sent back" note."""
        bucket, key = self._entry_id(entry_id)
        s3 = self.client("s3")
        physical = self.names()[bucket]
        try:
            body = s3.get_object(Bucket=physical, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            raise ApiError(404, f"no entry {entry_id[:200]!r}") from None
        resent = self._resent(physical, key) if maybe_resent else None
        kind = "quarantine" if key.startswith(QUARANTINE_PREFIX) else "on_failure"
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            return {"id": entry_id, "kind": kind, "processor": None, "source": {}, "at": None,
                    "reason": {"code": "unreadable", "reason": "the entry is not a JSON object"},
                    "records": [], "resent": resent}
        if key.startswith(QUARANTINE_PREFIX):
            source = dict(document.get("source", {}))
            source["stream"] = self._stream_name(source.get("stream", ""))
            data = base64.b64decode(document.get("data_base64", ""))
            records = [decoded_record(source.get("sequence", ""),
                                      document.get("partition_key", ""),
                                      document.get("approximate_arrival"), data,
                                      full=full, stream=source["stream"])]
            return {"id": entry_id, "kind": "quarantine", "processor": document.get("processor"),
                    "reason": document.get("reason", {}), "source": source,
                    "at": document.get("approximate_arrival"), "records": records,
                    "resent": resent}
        context = document.get("requestContext", {})
        info = document.get("KinesisBatchInfo") or document.get("KafkaBatchInfo") or {}
        esm = key[len(ON_FAILURE_PREFIX):].split("/", 1)[0]
        mapping = self._mapping_names().get(esm, "")
        payload = document.get("payload")
        if isinstance(payload, str):  # the MSK shape: the event as an escaped JSON string
            with contextlib.suppress(ValueError):
                payload = json.loads(payload)
        batch = payload.get("Records") if isinstance(payload, dict) else None
        records = []
        for record in batch if isinstance(batch, list) else []:
            if not isinstance(record, dict):
                continue
            kinesis = record.get("kinesis", {})
            stream = self._stream_name(str(record.get("eventSourceARN", "")).rsplit("/", 1)[-1])
            try:
                data = base64.b64decode(kinesis.get("data", ""), validate=True)
            except (binascii.Error, ValueError):
                data = str(kinesis.get("data", "")).encode()
            records.append(decoded_record(kinesis.get("sequenceNumber", ""),
                                          kinesis.get("partitionKey", ""),
                                          kinesis.get("approximateArrivalTimestamp"), data,
                                          full=full, stream=stream))
        groups = payload.get("records") if isinstance(payload, dict) else None
        for group in groups.values() if isinstance(groups, dict) else ():
            for record in group if isinstance(group, list) else ():
                if isinstance(record, dict):
                    records.append(_kafka_entry_record(record, full=full,
                                                       stream=self._stream_name(
                                                           str(record.get("topic", "")))))
        kafka_batch = next(iter((info.get("recordsInfo") or {}).items()), None)
        if kafka_batch is not None:  # KafkaBatchInfo: one topic-partition per batch
            partition, offsets = kafka_batch
            info = {"streamArn": partition.rsplit("-", 1)[0], "shardId": partition,
                    "startSequenceNumber": offsets.get("firstRecordOffset"),
                    "endSequenceNumber": offsets.get("lastRecordOffset")}
        reason = {"code": context.get("condition", ""),
                  "reason": _on_failure_reason(document)}
        return {"id": entry_id, "kind": "on_failure",
                "processor": mapping.split("/", 1)[0] or None, "mapping": mapping or None,
                "reason": reason,
                "source": {"stream": self._stream_name(
                               str(info.get("streamArn", "")).rsplit("/", 1)[-1]),
                           "shard": info.get("shardId"),
                           "sequence": info.get("startSequenceNumber"),
                           "end_sequence": info.get("endSequenceNumber")},
                "at": document.get("timestamp"), "records": records, "resent": resent}

    def resend(self, entry_id: str, index: int, data: str, *, again: bool) -> dict[str, Any]:
        """Put a fixed record of an entry back on the stream it came from, once (`again`
        sends it once more), and note that beside the entry."""
        entry = self.entry(entry_id)
        records = entry["records"]
        if not 0 <= index < len(records):
            raise ApiError(400, f"entry has {len(records)} record(s); record {index} does not "
                                "exist")
        if entry["resent"] and not again:
            raise ApiError(409, f"this entry was sent back at {entry['resent']['at']} (sequence "
                                f"{entry['resent']['sequence']}); send it again with "
                                "\"again\": true")
        raw = data.encode("utf-8", "surrogatepass")
        parsed = parse_json(raw, max_bytes=MAX_RECORD_BYTES, what="the fixed record")
        if isinstance(parsed, Rejection):
            raise ApiError(400, parsed.reason)
        if not isinstance(parsed, dict):
            raise ApiError(400, "the fixed record must be a JSON object (an event)")
        record = records[index]
        declared = self._declared_physical_stream(record.get("stream") or
                                                  entry["source"].get("stream") or "")
        physical = self.names()[declared]
        partition_key = record.get("partition_key") or "resent"
        if self.runtime.kafka is not None:
            partition, offset = self.runtime.kafka.produce(
                physical, partition_key[:256].encode("utf-8"), raw)
            shard, sequence = f"{physical}-{partition}", str(offset)
        else:
            answer = self.client("kinesis").put_record(StreamName=physical, Data=raw,
                                                       PartitionKey=partition_key[:256])
            shard, sequence = answer["ShardId"], answer["SequenceNumber"]
        note = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "stream": declared,
                "shard": shard, "sequence": sequence, "record": index, "bytes": len(raw)}
        bucket, key = self._entry_id(entry_id)
        self.client("s3").put_object(Bucket=self.names()[bucket], Key=RESENT_PREFIX + key,
                                     Body=json.dumps(note).encode(),
                                     ContentType="application/json")
        return {"id": entry_id, **note}

    def _resent(self, physical_bucket: str, key: str) -> dict[str, Any] | None:
        s3 = self.client("s3")
        try:
            body = s3.get_object(Bucket=physical_bucket, Key=RESENT_PREFIX + key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        note: dict[str, Any] = json.loads(body)
        return note

    def _entry_id(self, entry_id: str) -> tuple[str, str]:
        bucket, _, key = entry_id.partition("/")
        kinds = self.failure_buckets()
        if bucket not in kinds or len(entry_id) > MAX_KEY_BYTES or ".." in key or not (
                key.startswith(QUARANTINE_PREFIX) or key.startswith(ON_FAILURE_PREFIX)):
            raise ApiError(400, f"{entry_id[:200]!r} is not a quarantine or on-failure entry "
                                "of this pipeline")
        return bucket, key

    def _mapping_names(self) -> dict[str, str]:
        return {mapping.uuid: key for key, mapping in self.runtime.mappings.items()}

    def _declared(self, name: str, *, kind: str) -> str:
        pool = {"stream": [s.name for s in self.pipeline.streams],
                "table": [t.name for t in self.pipeline.tables],
                "processor": [p.name for p in self.pipeline.processors]}[kind]
        if name not in pool:
            raise ApiError(404, f"no {kind} named {name[:100]!r}; declared: {', '.join(pool)}")
        return name

    def _stream_name(self, physical: str) -> str:
        """The declared name of one of this pipeline's streams, else `physical` as it is."""
        names = self.names()
        return next((s.name for s in self.pipeline.streams if names[s.name] == physical),
                    physical)

    def _declared_physical_stream(self, physical: str) -> str:
        for stream in self.pipeline.streams:
            if self.names()[stream.name] == physical or stream.name == physical:
                return stream.name
        raise ApiError(400, f"the record came from {physical[:200]!r}, which is not a stream "
                            "of this pipeline")


def _on_failure_reason(document: Mapping[str, Any]) -> str:
    context = document.get("requestContext", {})
    condition = context.get("condition", "")
    response = document.get("responseContext") or {}
    attempts = context.get("approximateInvokeCount")
    if condition == "RetryAttemptsExhausted":
        error = response.get("functionError")
        return (f"retries exhausted after {attempts} invocation(s)"
                + (f"; the function failed ({error})" if error else
                   "; the function reported the records as failed"))
    if condition == "RecordAgeExceeded":
        return "the records were older than the mapping's maximum record age"
    if condition == "MaximumPayloadSizeExceeded":
        return "the batch was larger than an invocation may carry"
    return str(condition)


def _unbase64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value or ""), validate=True)
    except (binascii.Error, ValueError):
        return str(value or "").encode()


def _kafka_entry_record(record: Mapping[str, Any], *, full: bool, stream: str
                        ) -> dict[str, Any]:
    """A record of an MSK event (key and value in base64, timestamp in ms), for people."""
    timestamp = record.get("timestamp")
    return decoded_record(record.get("offset", ""),
                          _unbase64(record.get("key")).decode("utf-8", "replace"),
                          timestamp / 1000.0 if isinstance(timestamp, int | float) else None,
                          _unbase64(record.get("value")), full=full, stream=stream)


def decoded_record(sequence: Any, partition_key: str, arrival: Any, data: bytes, *,
                   full: bool = False, stream: str | None = None) -> dict[str, Any]:
    """A record for people: its data as JSON or text when it is, base64 when not, KPL
    aggregates taken apart; data longer than `MAX_SHOWN_BYTES` is cut unless `full`."""
    out: dict[str, Any] = {"sequence": str(sequence), "partition_key": partition_key,
                           "arrival": _iso(arrival), "bytes": len(data)}
    if stream:
        out["stream"] = stream
    if kpl.is_aggregated(data):
        parts = kpl.deaggregate(data)
        if isinstance(parts, kpl.Malformed):
            out["aggregate_error"] = parts.reason
        else:
            out["aggregated"] = [decoded_record(f"{sequence}/{i}", p.partition_key, arrival,
                                                p.data, full=full)
                                 for i, p in enumerate(parts)]
    shown = data if full else data[:MAX_SHOWN_BYTES]
    out["truncated"] = len(shown) < len(data)
    try:
        text = shown.decode("utf-8")
    except UnicodeDecodeError:
        out["data_base64"] = base64.b64encode(shown).decode()
        return out
    out["data_text"] = text
    if not out["truncated"]:
        value = parse_json(shown, what="record")
        if not isinstance(value, Rejection):
            out["json"] = value
    return out


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), UTC).isoformat(timespec="milliseconds")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds")
    return str(value)


_DESERIALIZER = TypeDeserializer()


def from_wire(item: Mapping[str, Any]) -> dict[str, Any]:
    from cascata.versions import plain

    return {k: plain(_DESERIALIZER.deserialize(v)) for k, v in sorted(item.items())}


def encode_cursor(key: Mapping[str, Any]) -> str:
    text = json.dumps(key, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, table: Table) -> dict[str, Any]:
    """A page cursor back to the key it holds, which must name exactly this table's key
    attributes, each a string."""
    problem = f"cursor is not one this API gave for {table.name}"
    if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
        raise ApiError(400, problem)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise ApiError(400, problem) from None
    value = parse_json(raw, max_bytes=MAX_CURSOR_CHARS, max_depth=3, what="cursor")
    attributes = {table.partition_key} | ({table.sort_key} if table.sort_key else set())
    if not isinstance(value, dict) or set(value) != attributes or not all(
            isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str)
            for v in value.values()):
        raise ApiError(400, problem)
    return value


# -- HTTP --------------------------------------------------------------------------------------


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _text(request: Request, name: str, *, required: bool = False,
          limit: int = MAX_KEY_BYTES) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(400, f"{name} is required")
        return None
    if len(raw.encode("utf-8", "surrogatepass")) > limit:
        raise ApiError(400, f"{name} is longer than {limit} bytes")
    return raw


class ConsoleApp:
    """The console's WSGI application (wrap it in `LoopbackGuard` to serve it)."""

    def __init__(self, data: ConsoleData) -> None:
        self.data = data
        self.url_map = Map([
            Rule("/", endpoint="static", methods=["GET"]),
            Rule("/static/<name>", endpoint="static", methods=["GET"]),
            Rule("/api/overview", endpoint="overview", methods=["GET"]),
            Rule("/api/status", endpoint="status", methods=["GET"]),
            Rule("/api/streams", endpoint="streams", methods=["GET"]),
            Rule("/api/streams/<stream>/records", endpoint="stream_records", methods=["GET"]),
            Rule("/api/views", endpoint="views", methods=["GET"]),
            Rule("/api/views/<table>", endpoint="view", methods=["GET"]),
            Rule("/api/failures", endpoint="failures", methods=["GET"]),
            Rule("/api/failures/entry", endpoint="failure", methods=["GET"]),
            Rule("/api/failures/resend", endpoint="resend", methods=["POST"]),
            Rule("/api/versions", endpoint="versions", methods=["GET"]),
            Rule("/api/versions/diff", endpoint="diff", methods=["GET"]),
        ], strict_slashes=False)
        self._handlers: dict[str, Callable[[Request, dict[str, str]], Any]] = {
            "overview": lambda r, a: data.overview(),
            "status": lambda r, a: data.status(),
            "streams": lambda r, a: {"streams": data.streams()},
            "stream_records": lambda r, a: data.stream_records(
                a["stream"], _text(r, "shard", limit=128), _int(r, "limit", 25, 1, MAX_LIMIT)),
            "views": lambda r, a: data.views(),
            "view": self._view,
            "failures": lambda r, a: data.failures(
                _text(r, "kind", limit=32) or "quarantine", _text(r, "processor", limit=128),
                _int(r, "limit", 50, 1, MAX_LIMIT)),
            "failure": lambda r, a: data.entry(str(_text(r, "id", required=True))),
            "resend": self._resend,
            "versions": lambda r, a: data.versions(),
            "diff": lambda r, a: data.diff(str(_text(r, "a", required=True, limit=16)),
                                           str(_text(r, "b", required=True, limit=16))),
        }

    def _view(self, request: Request, args: dict[str, str]) -> Any:
        version = _text(request, "version", limit=16)
        key = _text(request, "key")
        limit = _int(request, "limit", 25, 1, MAX_LIMIT)
        if key is not None:
            return self.data.view_lookup(args["table"], key, _text(request, "sort"), version,
                                         limit)
        return self.data.view_page(args["table"], limit,
                                   _text(request, "cursor", limit=MAX_CURSOR_CHARS), version)

    def _resend(self, request: Request, args: dict[str, str]) -> Any:
        if request.mimetype != "application/json":
            raise ApiError(415, "send the fixed record as application/json")
        raw = request.get_data(cache=False)
        body = parse_json(raw, max_bytes=MAX_BODY_BYTES, what="the body")
        if isinstance(body, Rejection):
            raise ApiError(400, body.reason)
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        unknown = set(body) - {"id", "record", "data", "again"}
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
        entry_id, index, data, again = (body.get("id"), body.get("record", 0),
                                        body.get("data"), body.get("again", False))
        if not isinstance(entry_id, str) or not isinstance(data, str):
            raise ApiError(400, "id and data must be strings")
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(again, bool):
            raise ApiError(400, "record must be a whole number and again true or false")
        return self.data.resend(entry_id, index, data, again=again)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        response = self._dispatch(request)
        for name, value in SECURITY_HEADERS:
            response.headers[name] = value
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if len(request.query_string) > MAX_QUERY_BYTES:
            return _error(414, f"the query string is longer than {MAX_QUERY_BYTES} bytes")
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return _error(404, f"no such page: {request.path[:200]}")
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            return _error(405, f"{request.method} is not allowed here (allowed: {allowed})")
        except HTTPException as exc:
            return _error(exc.code or 400, exc.description or "bad request")
        if endpoint == "static":
            return _static(request.path)
        try:
            value = self._handlers[endpoint](request, dict(args))
        except ApiError as exc:
            return _error(exc.status, str(exc))
        except HTTPException as exc:  # a body over the limit
            return _error(exc.code or 400, exc.description or "bad request")
        except Exception as exc:  # one sentence to the page, the detail logged
            log.exception("console request %s failed", request.path)
            return _error(500, f"the request failed: {type(exc).__name__}: {exc}"[:500])
        return Response(json.dumps(value, default=str), status=200,
                        mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status=status, mimetype="application/json")


def _static(path: str) -> Response:
    found = STATIC.get(path)
    if found is None:
        return _error(404, f"no such page: {path[:200]}")
    name, content_type = found
    body = resources.files("cascata.local").joinpath("console_static", name).read_bytes()
    return Response(body, status=200, content_type=content_type)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class ConsoleServer:
    """The console on 127.0.0.1:`port` (0: any free port), on a thread of its own."""

    def __init__(self, data: ConsoleData, *, port: int = 0) -> None:
        self.guard = LoopbackGuard(ConsoleApp(data), port=port)
        # Bound here, so a port in use is an OSError for the caller to report (werkzeug would
        # print and exit); the server takes a duplicate of the socket.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:
            listening.bind(("127.0.0.1", port))
            listening.listen(64)
            self._server: BaseWSGIServer = make_server(
                "127.0.0.1", listening.getsockname()[1], self.guard, threaded=True,
                request_handler=_QuietHandler, fd=listening.fileno())
        self.guard.port = self._server.port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, daemon=True,
                                        name="cascata-console")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def start(self) -> ConsoleServer:
        self._thread.start()
        return self

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
