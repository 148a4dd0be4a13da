"""Versions of the views: the registry, diff, promote and retire.

The registry is the pipeline's control table (`versions`): the live pointer item `@live` and
one record per version built by replay (how it was built, its state, its replay checkpoint).
v1, the deployed pipeline's version, needs no record. The pointer and naming rules readers use
live in `cascata_runtime.versions`, so the query function and this module cannot disagree.

States of a version built by replay: `building` (a replay is running or was interrupted; run
it again to continue), `ready` (complete, may be promoted), `retired` (its tables and streams
are deleted; the record stays as history). v1 is `deployed`.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from cascata.console import CliError
from cascata.pipeline import FIRST_VERSION, Pipeline, Table, check_version
from cascata.project import current_pipeline
from cascata_runtime.versions import KEY, LIVE_POINTER, live_version

BUILDING = "building"
READY = "ready"
RETIRED = "retired"
DEPLOYED = "deployed"

_DES = TypeDeserializer()
_SER = TypeSerializer()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class VersionRecord:
    """One version built by replay, as the registry keeps it."""

    version: str
    state: str
    replay_from: str
    since: str | None
    until: str
    config: dict[str, dict[str, str]] = field(default_factory=dict)
    """Function name -> environment overrides the version was built with."""
    created_at: str = ""
    updated_at: str = ""
    completed_at: str | None = None
    records: int = 0
    """Origin records replayed so far."""
    checkpoints: dict[str, dict[str, int]] = field(default_factory=dict)
    """`processor/stream` -> shard -> the last position every effect of which is stored."""
    clock_ms: int = 0
    """The replay clock (the newest arrival time replayed), so a resumed run continues it."""
    republish: str | None = None
    """Archive replays: the republish state (`cascata_runtime.republish.RepublishState`)."""
    runs: int = 0
    lease_owner: str | None = None
    """The replay process building this version (`host:pid:nonce`), while it runs."""
    lease_until_ms: int = 0

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            KEY: self.version, "state": self.state, "replay_from": self.replay_from,
            "until": self.until, "config": json.dumps(self.config, sort_keys=True),
            "created_at": self.created_at, "updated_at": self.updated_at,
            "records": self.records, "checkpoints": json.dumps(self.checkpoints),
            "clock_ms": self.clock_ms, "runs": self.runs,
        }
        if self.since:
            item["since"] = self.since
        if self.completed_at:
            item["completed_at"] = self.completed_at
        if self.republish:
            item["republish"] = self.republish
        if self.lease_owner:
            item["lease_owner"] = self.lease_owner
            item["lease_until_ms"] = self.lease_until_ms
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> VersionRecord:
        return cls(
            version=str(item[KEY]), state=str(item["state"]),
            replay_from=str(item["replay_from"]), since=item.get("since"),
            until=str(item["until"]), config=json.loads(item.get("config") or "{}"),
            created_at=str(item.get("created_at", "")),
            updated_at=str(item.get("updated_at", "")),
            completed_at=item.get("completed_at"), records=int(item.get("records", 0)),
            checkpoints={k: {s: int(p) for s, p in v.items()}
                         for k, v in json.loads(item.get("checkpoints") or "{}").items()},
            clock_ms=int(item.get("clock_ms", 0)), republish=item.get("republish"),
            runs=int(item.get("runs", 0)), lease_owner=item.get("lease_owner"),
            lease_until_ms=int(item.get("lease_until_ms", 0)),
        )

    def summary(self, live: str) -> dict[str, Any]:
        return {
            "version": self.version, "state": self.state, "live": self.version == live,
            "replay_from": self.replay_from, "since": self.since, "until": self.until,
            "config": self.config, "records": self.records, "created_at": self.created_at,
            "completed_at": self.completed_at,
        }


def plain(value: Any) -> Any:
    """DynamoDB values as JSON-safe data: integers stay integers, never floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, bytes):
        return value.value.hex()
    if isinstance(value, bytes):
        return value.hex()
    return value


class Registry:
    """The version registry of one stage, over a DynamoDB client."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self.table = table

    def _get(self, key: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(TableName=self.table, Key={KEY: {"S": key}},
                                  ConsistentRead=True).get("Item")
        return {k: _DES.deserialize(v) for k, v in item.items()} if item else None

    def live(self) -> str:
        return live_version(self._get(LIVE_POINTER))

    def get(self, version: str) -> VersionRecord | None:
        item = self._get(version)
        return VersionRecord.from_item(item) if item else None

    def records(self) -> list[VersionRecord]:
        out = []
        for page in self._ddb.get_paginator("scan").paginate(TableName=self.table,
                                                            ConsistentRead=True):
            for raw in page["Items"]:
                item = {k: _DES.deserialize(v) for k, v in raw.items()}
                if item[KEY] != LIVE_POINTER:
                    out.append(VersionRecord.from_item(item))
        return sorted(out, key=lambda r: int(r.version[1:]))

    def create(self, record: VersionRecord) -> None:
        """Register a new version; refuses a name already taken (two replays racing)."""
        try:
            self._ddb.put_item(
                TableName=self.table, Item=_wire(record.to_item()),
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": KEY},
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            raise CliError(f"{record.version} already exists; choose another version "
                           "or retire it first") from None

    def save(self, record: VersionRecord) -> None:
        """Store the record; a record under a lease only while this process still holds it
        and nobody retired the version meanwhile (the lease is renewed with every save)."""
        record.updated_at = now_iso()
        if not record.lease_owner:
            self._ddb.put_item(TableName=self.table, Item=_wire(record.to_item()))
            return
        record.lease_until_ms = _now_ms() + LEASE_MS
        try:
            self._ddb.put_item(
                TableName=self.table, Item=_wire(record.to_item()),
                ConditionExpression="lease_owner = :me AND #s <> :retired",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":me": {"S": record.lease_owner},
                                           ":retired": {"S": RETIRED}},
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            raise CliError(f"{record.version} was retired or taken over by another replay "
                           "while this one ran; this run stops") from None

    def acquire(self, record: VersionRecord, owner: str) -> None:
        """Take the lease of a version being built, or say who holds it: two processes
        replaying one version would each apply the same records."""
        holder = record.lease_owner
        if holder and holder != owner and record.lease_until_ms > _now_ms() and _alive(holder):
            raise CliError(f"{record.version} is being replayed by another process ({holder}); "
                           "wait for it, or run again once it has stopped")
        record.lease_owner = owner
        record.lease_until_ms = _now_ms() + LEASE_MS
        expected = ({"ConditionExpression": "attribute_not_exists(lease_owner)"} if not holder
                    else {"ConditionExpression": "lease_owner = :seen",
                          "ExpressionAttributeValues": {":seen": {"S": holder}}})
        try:
            self._ddb.put_item(TableName=self.table, Item=_wire(record.to_item()), **expected)
        except self._ddb.exceptions.ConditionalCheckFailedException:
            raise CliError(f"{record.version} was taken by another replay just now") from None

    def mark_retired(self, record: VersionRecord) -> None:
        """Mark a version retired before anything is deleted, in one transaction that holds
        only while it is not live and no running replay holds it."""
        holder = record.lease_owner
        if holder and record.lease_until_ms > _now_ms() and _alive(holder):
            raise CliError(f"{record.version} is being replayed ({holder}); stop that replay "
                           "first")
        record.state, record.lease_owner, record.lease_until_ms = RETIRED, None, 0
        record.updated_at = now_iso()
        guard = ("attribute_not_exists(lease_owner)" if not holder
                 else "attribute_not_exists(lease_owner) OR lease_owner = :seen")
        values: dict[str, Any] = {":retired": {"S": RETIRED}}
        if holder:
            values[":seen"] = {"S": holder}
        try:
            self._ddb.transact_write_items(TransactItems=[
                {"ConditionCheck": {
                    "TableName": self.table, "Key": {KEY: {"S": LIVE_POINTER}},
                    "ConditionExpression": "attribute_not_exists(#k) OR #live <> :v",
                    "ExpressionAttributeNames": {"#k": KEY, "#live": "live"},
                    "ExpressionAttributeValues": {":v": {"S": record.version}},
                }},
                {"Put": {
                    "TableName": self.table, "Item": _wire(record.to_item()),
                    "ConditionExpression": f"#s <> :retired AND ({guard})",
                    "ExpressionAttributeNames": {"#s": "state"},
                    "ExpressionAttributeValues": values,
                }},
            ])
        except self._ddb.exceptions.TransactionCanceledException:
            raise CliError(f"{record.version} became live, was retired or was taken by a "
                           "replay meanwhile; nothing was deleted") from None

    def release(self, record: VersionRecord) -> None:
        """Store the record a last time and let go of the lease."""
        owner = record.lease_owner
        if not owner:
            return
        self.save(record)
        record.lease_owner, record.lease_until_ms = None, 0
        record.updated_at = now_iso()
        self._ddb.put_item(
            TableName=self.table, Item=_wire(record.to_item()),
            ConditionExpression="lease_owner = :me",
            ExpressionAttributeValues={":me": {"S": owner}},
        )

    def promote(self, version: str, *, deployed: Callable[[str], bool] | None = None
                ) -> tuple[str, str]:
        """Point readers at `version` with one conditional write; (previous, new).

        `deployed(version)`: whether the version's views exist without a registry record (a
        version stack on AWS that follows the stream keeps none: it is never "complete")."""
        check_version(version)
        record = None if version == FIRST_VERSION else self.get(version)
        if version != FIRST_VERSION:
            if record is None and not (deployed and deployed(version)):
                raise CliError(f"{version} does not exist; `cascata versions` lists them")
            if record is not None and record.state != READY:
                raise CliError(f"{version} is {record.state}, not ready: only a complete "
                               "replay can be promoted")
        current = self._get(LIVE_POINTER)
        previous = live_version(current)
        if previous == version:
            return previous, version
        # One transaction: the pointer moves only if it is still what was read (two promotes
        # racing cannot both win) and the version is still ready (a retire racing this one
        # cannot leave readers on deleted tables).
        pointer: dict[str, Any] = {
            "TableName": self.table,
            "Item": _wire({KEY: LIVE_POINTER, "live": version, "previous": previous,
                           "switched_at": now_iso()}),
        }
        if current is None:
            pointer.update(ConditionExpression="attribute_not_exists(#k)",
                           ExpressionAttributeNames={"#k": KEY})
        else:
            pointer.update(ConditionExpression="#live = :previous",
                           ExpressionAttributeNames={"#live": "live"},
                           ExpressionAttributeValues={":previous": {"S": previous}})
        items: list[dict[str, Any]] = [{"Put": pointer}]
        if record is not None:
            items.append({"ConditionCheck": {
                "TableName": self.table, "Key": {KEY: {"S": version}},
                "ConditionExpression": "#s = :ready",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":ready": {"S": READY}},
            }})
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except self._ddb.exceptions.TransactionCanceledException:
            raise CliError("the live version or the version's state changed while promoting; "
                           "run the command again") from None
        return previous, version


LEASE_MS = 30_000
"""A replay renews its lease with every checkpoint (every two seconds)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _alive(owner: str) -> bool:
    """Whether a lease holder may still be running: on this host, its process must exist
    (a killed replay is resumed at once); elsewhere, only expiry tells."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wire(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _SER.serialize(v) for k, v in item.items() if v is not None}


# --- reading views --------------------------------------------------------------------------


def table_name(pipeline: Pipeline, table: str, version: str, *, stage: str, account: str,
               region: str) -> str:
    base = pipeline if version == FIRST_VERSION else pipeline.for_version(version)
    return base.physical_name(table, stage=stage, account=account, region=region)


def scan_view(dynamodb: Any, table: Table, physical: str) -> Iterator[dict[str, Any]]:
    """Every row of a view as plain data (internal partitions skipped), strongly consistent."""
    for page in dynamodb.get_paginator("scan").paginate(TableName=physical,
                                                        ConsistentRead=True):
        for raw in page["Items"]:
            item = {k: _DES.deserialize(v) for k, v in raw.items()}
            if str(item.get(table.partition_key)) in table.internal_partitions:
                continue
            yield item


def row_key(table: Table, item: Mapping[str, Any]) -> dict[str, str]:
    key = {table.partition_key: str(item[table.partition_key])}
    if table.sort_key:
        key[table.sort_key] = str(item[table.sort_key])
    return key


def content(table: Table, item: Mapping[str, Any]) -> dict[str, Any]:
    """What a row says, without its bookkeeping, as plain data."""
    return {k: plain(v) for k, v in item.items() if k not in table.bookkeeping}


def view_rows(dynamodb: Any, table: Table, physical: str) -> dict[str, dict[str, Any]]:
    """Rows by their key (as a canonical JSON string) -> content."""
    return {json.dumps(row_key(table, item), sort_keys=True): content(table, item)
            for item in scan_view(dynamodb, table, physical)}


def views_exist(dynamodb: Any, version: str, *, stage: str, account: str, region: str,
                pipeline: Pipeline | None = None) -> bool:
    """Whether every view of `version` has its table."""
    pipeline = pipeline or current_pipeline()
    return all(table_exists(dynamodb, table_name(pipeline, t.name, version, stage=stage,
                                                 account=account, region=region))
               for t in pipeline.views)


def table_exists(dynamodb: Any, name: str) -> bool:
    try:
        dynamodb.describe_table(TableName=name)
    except dynamodb.exceptions.ResourceNotFoundException:
        return False
    return True


# --- diff -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Difference:
    view: str
    key: Mapping[str, str]
    kind: str
    """`only_in_a`, `only_in_b` or `changed`."""
    fields: tuple[str, ...] = ()
    a: Any = None
    b: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"view": self.view, "key": dict(self.key), "kind": self.kind,
                "fields": list(self.fields), "a": self.a, "b": self.b}


@dataclass(frozen=True, slots=True)
class DiffReport:
    a: str
    b: str
    views: Mapping[str, Mapping[str, int]]
    differences: tuple[Difference, ...]
    examples_per_view: int | None

    @property
    def total_differences(self) -> int:
        return sum(v["differences"] for v in self.views.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "total_differences": self.total_differences,
            "views": {name: dict(counts) for name, counts in self.views.items()},
            "differences": [d.to_json() for d in self.differences],
            "examples_per_view": self.examples_per_view,
        }


def compare_rows(view: str, a: Mapping[str, Mapping[str, Any]],
                 b: Mapping[str, Mapping[str, Any]]) -> list[Difference]:
    out: list[Difference] = []
    for key in sorted(set(a) | set(b)):
        parsed = json.loads(key)
        if key not in b:
            out.append(Difference(view, parsed, "only_in_a", a=a[key]))
        elif key not in a:
            out.append(Difference(view, parsed, "only_in_b", b=b[key]))
        elif a[key] != b[key]:
            fields = tuple(sorted(f for f in set(a[key]) | set(b[key])
                                  if a[key].get(f) != b[key].get(f)))
            out.append(Difference(view, parsed, "changed", fields,
                                  {f: a[key].get(f) for f in fields},
                                  {f: b[key].get(f) for f in fields}))
    return out


def diff_versions(
    dynamodb: Any, a: str, b: str, *, stage: str, account: str, region: str,
    pipeline: Pipeline | None = None, examples: int | None = 5,
    on_view: Callable[[str], None] | None = None,
) -> DiffReport:
    """Every view of version `a` against the same view of version `b`, row by row."""
    pipeline = pipeline or current_pipeline()
    for version in (a, b):
        check_version(version)
    counts: dict[str, dict[str, int]] = {}
    shown: list[Difference] = []
    for table in pipeline.views:
        if on_view:
            on_view(table.name)
        names = [table_name(pipeline, table.name, v, stage=stage, account=account,
                            region=region) for v in (a, b)]
        for version, name in zip((a, b), names, strict=True):
            if not table_exists(dynamodb, name):
                raise CliError(f"{version} has no {table.name} table ({name}); "
                               "`cascata versions` lists the versions")
        rows_a, rows_b = (view_rows(dynamodb, table, n) for n in names)
        found = compare_rows(table.name, rows_a, rows_b)
        counts[table.name] = {"rows_a": len(rows_a), "rows_b": len(rows_b),
                              "differences": len(found)}
        shown.extend(found if examples is None else found[:examples])
    return DiffReport(a, b, counts, tuple(shown), examples)


# --- retire ---------------------------------------------------------------------------------


def retire(
    aws: Any, registry: Registry, version: str, *, stage: str, pipeline: Pipeline | None = None,
) -> list[str]:
    """Delete a version's tables and streams (never the live version, never v1 here: v1 is
    the deployed stack's, removed with it). Returns what was deleted."""
    pipeline = pipeline or current_pipeline()
    check_version(version)
    if version == FIRST_VERSION:
        raise CliError("v1 is the deployed pipeline's version: it is removed with its stack "
                       "(make destroy), not retired")
    if registry.live() == version:
        raise CliError(f"{version} is live; promote another version first")
    record = registry.get(version)
    if record is None:
        raise CliError(f"{version} does not exist; `cascata versions` lists them")
    registry.mark_retired(record)
    built = pipeline.for_version(version, replay_from=record.replay_from)  # type: ignore[arg-type]
    deleted: list[str] = []
    ddb, kinesis = aws.client("dynamodb"), aws.client("kinesis")
    for table in built.versioned_tables:
        name = built.physical_name(table.name, stage=stage, account=aws.account,
                                   region=aws.region)
        try:
            ddb.delete_table(TableName=name)
            deleted.append(name)
        except ddb.exceptions.ResourceNotFoundException:
            pass
    for stream in built.streams:
        if not built.versioned(stream.name):
            continue
        name = built.physical_name(stream.name, stage=stage)
        try:
            kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
            deleted.append(name)
        except kinesis.exceptions.ResourceNotFoundException:
            pass
    return deleted

