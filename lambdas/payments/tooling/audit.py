"""`cascata audit`: the batch layer. Recompute the views from the archive, reconcile them.

The stream pipeline promises views equal to the ones computed from the set of distinct valid
input events. The audit checks that promise the Lambda-architecture way: one batch pass over
the archive (every raw record of payments-raw and customers, in S3) recomputes the views in SQL
on DuckDB, and every item of the version's tables is compared with its recomputation. The SQL
(`payments/tooling/audit_sql/*.sql`, run in name order) keeps to CTEs and window functions
so the same text can run on Athena over the same layout; the module around it only moves data:
it lays the
archive out for DuckDB, loads the configuration tables, scans DynamoDB and compares.

What is recomputed, and compared on business attributes only (never fences, TTLs,
versions, field times, notification marks):

- validation: every record is checked as validate (payments-raw) and profiles (customers) check
  it, in SQL mirroring `cascata_runtime.envelope` and `payments.domain.schemas`; a rejected
  record is quarantined by the pipeline and applied nowhere, here as there.
- `balances`: per account, the balance per currency and the number of postings.
- `profiles`: registration fields (last writer by event time), registered_at, activity per
  currency and direction, first and last payment, the most recent counterparties.
- `alerts-view`: the three fraud rules with the `FraudRules` given (thresholds, tier limits,
  currency weights, velocity interval and maximum, payee memory), each alert's item with its
  id, key and evidence. Streaming semantics are kept where they matter: a payer's payments are
  evaluated in its shard's order, and the tier is the one the profile held when fraud-detect
  read it, i.e. from the customer events that ARRIVED before the payment (by arrival time). A
  payment evaluated before its customer's registration was processed therefore shows as a
  difference: that is a true finding (the stream pipeline used another tier), not noise. So
  does a payer whose event times go backwards along its shard, where fraud-detect's result
  depends on batching (it sorts one batch's payments by event time).
- `activity-view`: not compared exactly (see NOT_EXACT): which payments a window's final result
  holds and which went to the late side output depends on how the shards' progress interleaved
  in processing time, which the archive does not record. What is checked is what holds
  whatever that interleaving: every window item belongs to a (account, window) with payments,
  its count, sum and max are at most, and its min at least, those of all its payments.

Known limits of the SQL validation (each stated where it matters): a JSON object with a
duplicate key (Python keeps the last value, DuckDB reads the first); an
occurred_at written with non-ASCII digits (Python's `\\d` accepts them), counted as rejected;
and for records of the pipeline's own types (ledger.posting, ...) on an origin stream, which
both sides reject, the code may differ; so may it for records archived under `errors/`, whose
code is the archive's reason.

The report lists every difference (`limit_examples` keeps the first N of each view), with the
view's key, the attribute path and both values, JSON-safe: money stays an integer, a DynamoDB
number with a fraction becomes its exact text, never a float.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeAlias

import duckdb

from cascata_runtime import envelope
from cascata_runtime.archive import (
    ERRORS,
    EVENTS,
    KINDS,
    ArchiveEntry,
    RawRecord,
    archive_entry,
    encode_object,
    object_key,
    sort_key,
)
from payments.domain.fraud import REFERENCE_EXPONENT, RULES, FraudRules
from payments.domain.iso import COUNTRIES, CURRENCY_EXPONENTS
from payments.domain.profiles import COUNTERPARTIES
from payments.domain.windows import SHARDS_PARTITION, WindowConfig

BALANCES = "balances"
PROFILES = "profiles"
ALERTS = "alerts-view"
ACTIVITY = "activity-view"
VIEWS = (BALANCES, PROFILES, ALERTS, ACTIVITY)

Kind: TypeAlias = Literal["missing_in_view", "unexpected_in_view", "field"]
Progress: TypeAlias = Callable[[str], None]

NOT_EXACT = (
    "compared as bounds only: which payments a window's final result holds and which went to "
    "the late side output depends on how the shards' progress interleaved in processing time, "
    "which the archive does not record. Checked instead, whatever the interleaving: every "
    "window item is a (account, window) the batch has payments for; its window, start and end "
    "match; its count, sum_minor, max_minor and payments are at most, and its min_minor at "
    "least, those of all the window's payments"
)
NO_TABLE = "no table of this version was given"

_BATCH_TABLES = {
    BALANCES: "batch_balances",
    PROFILES: "batch_profiles",
    ALERTS: "batch_alerts",
    ACTIVITY: "batch_activity",
}


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """How one view is reconciled: its key, the business attributes compared, and whether the
    batch values are exact or upper bounds."""

    name: str
    key: tuple[str, ...]
    attributes: tuple[str, ...]
    bounded: bool = False
    skip_partition: str | None = None
    """Items under this partition key value are the processor's bookkeeping, not the view."""


SPECS: Mapping[str, ViewSpec] = {
    BALANCES: ViewSpec(BALANCES, ("account_id",), ("balances", "postings")),
    PROFILES: ViewSpec(PROFILES, ("customer_id",), (
        "name", "email", "country", "tier", "registered_at", "as_payer", "as_payee",
        "first_seen_at", "last_seen_at", "counterparties", "counterparties_truncated",
    )),
    ALERTS: ViewSpec(ALERTS, ("account_id", "alert_key"), (
        "day", "alert_id", "occurred_at", "rule", "severity", "payment_event_id", "evidence",
        "amount_minor", "currency",
    )),
    ACTIVITY: ViewSpec(
        ACTIVITY, ("account_id", "window_key"),
        ("window", "window_start", "window_end", "totals", "payments"),
        bounded=True, skip_partition=SHARDS_PARTITION,
    ),
}


@dataclass(frozen=True, slots=True)
class Difference:
    view: str
    key: Mapping[str, Any]
    kind: Kind
    field: str | None
    """The attribute path (`balances.USD`, `evidence.count`) of a `field` difference."""
    batch_value: Any
    """What the batch computed (the whole item for `missing_in_view`); JSON-safe."""
    view_value: Any
    """What the table holds (the whole item for `unexpected_in_view`); JSON-safe."""

    def to_json(self) -> dict[str, Any]:
        # `view` names the view; the value found in it is `view_value` (one object cannot
        # hold two `view` keys).
        return {
            "view": self.view,
            "key": dict(self.key),
            "kind": self.kind,
            "field": self.field,
            "batch": self.batch_value,
            "view_value": self.view_value,
        }


@dataclass(frozen=True, slots=True)
class ViewSummary:
    batch_keys: int
    view_keys: int
    differences: int

    def to_json(self) -> dict[str, int]:
        return {
            "batch_keys": self.batch_keys,
            "view_keys": self.view_keys,
            "differences": self.differences,
        }


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    objects: int
    events: int
    """Distinct records archived as events (valid or not: validation is the views' business)."""
    errors: int
    """Distinct records archived as errors (not UTF-8, not JSON, no valid occurred_at)."""

    def to_json(self) -> dict[str, int]:
        return {"objects": self.objects, "events": self.events, "errors": self.errors}


@dataclass(frozen=True, slots=True)
class AuditReport:
    version: str
    archive: ArchiveSummary
    views: Mapping[str, ViewSummary]
    differences: tuple[Difference, ...]
    """Every difference, or the first `limit_examples` of each view when a limit was given."""
    not_compared: Mapping[str, str] = field(default_factory=dict)

    @property
    def total_differences(self) -> int:
        return sum(v.differences for v in self.views.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "archive": self.archive.to_json(),
            "total_differences": self.total_differences,
            "views": {name: summary.to_json() for name, summary in self.views.items()},
            "differences": [d.to_json() for d in self.differences],
            "not_compared": dict(self.not_compared),
        }


# --- the batch recomputation -------------------------------------------------------------------


def recompute(archive_dir: Path, rules: FraudRules) -> dict[str, list[dict[str, Any]]]:
    """Every view recomputed from a local copy of the archive (the bucket's `events/` and
    `errors/` trees): view name -> items, each with the item's key and business attributes
    as the view stores them (an absent attribute is absent). activity-view's items are the
    totals of all the window's payments: bounds, see NOT_EXACT."""
    with _recomputed(archive_dir, rules) as conn:
        return _batch_views(conn)


def checked_records(archive_dir: Path) -> list[dict[str, Any]]:
    """Every distinct archived record with the SQL validation's verdict: `source`
    (payments-raw, customers, or None for another stream), `shard_id`, `sequence_number`,
    `subsequence` (a KPL user record's index in its aggregate, 0 for a record not
    aggregated), `kind` (events/errors), `event_id`, `event_type`, `reject_code` (None when
    accepted) and `accepted`."""
    with _recomputed(archive_dir, FraudRules(), views=False) as conn:
        cursor = conn.execute(
            "SELECT source, stream, shard_id, sequence_number, subsequence, kind, event_id, "
            "event_type, reject_code, accepted FROM checked ORDER BY stream, shard_id, "
            "sequence_digits, sequence_number, subsequence"
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def archive_objects(records: Iterable[RawRecord]) -> dict[str, bytes]:
    """Raw records laid out as the archive: object key -> gzip JSON Lines, one object per
    (partition, shard), named by its first and last sequence numbers like the archiver's (the
    user records of a KPL aggregate share theirs, told apart by their subsequence numbers)."""
    groups: dict[tuple[Any, str], list[ArchiveEntry]] = {}
    for record in records:
        entry = archive_entry(record)
        groups.setdefault((entry.partition, record.shard_id), []).append(entry)
    out: dict[str, bytes] = {}
    for (partition, shard), entries in groups.items():
        entries.sort(key=lambda e: sort_key(e.line))
        first, last = entries[0].line["sequence_number"], entries[-1].line["sequence_number"]
        out[object_key(partition, shard, str(first), str(last))] = encode_object(entries)
    return out


@contextmanager
def _recomputed(
    archive_dir: Path, rules: FraudRules, *, views: bool = True,
    arrived: tuple[int | None, int | None] = (None, None),
) -> Iterator[duckdb.DuckDBPyConnection]:
    conn = duckdb.connect(":memory:")
    try:
        _load_parameters(conn, rules)
        _load_archive(conn, archive_dir)
        since_ms, until_ms = arrived
        # A version replayed from --since to --until holds what arrived in [since, until).
        if since_ms is not None:
            conn.execute("DELETE FROM archive_lines WHERE arrival_ms < ?", [since_ms])
        if until_ms is not None:
            conn.execute("DELETE FROM archive_lines WHERE arrival_ms >= ?", [until_ms])
        for name, sql in _sql_files():
            if views or name < "10":
                conn.execute(sql)
        yield conn
    finally:
        conn.close()


def _sql_files() -> list[tuple[str, str]]:
    folder = resources.files("payments.tooling.audit_sql")
    return sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )


def _load_parameters(conn: duckdb.DuckDBPyConnection, rules: FraudRules) -> None:
    """The configuration the SQL reads as tables: ISO codes, the fraud rules, the windows."""
    _table(conn, "audit_currencies", "code VARCHAR, exponent INTEGER, unit HUGEINT",
           [(code, exp, 10**exp) for code, exp in sorted(CURRENCY_EXPONENTS.items())])
    _table(conn, "audit_countries", "code VARCHAR", [(c,) for c in sorted(COUNTRIES)])
    _table(conn, "audit_tiers", "tier VARCHAR, limit_minor HUGEINT",
           sorted(rules.tier_limits_minor.items()))
    _table(conn, "audit_weights", "currency VARCHAR, weight HUGEINT",
           sorted(rules.currency_weights.items()))
    _table(conn, "audit_windows", "name VARCHAR, size_s BIGINT, advance_s BIGINT",
           [(w.name, w.size_s, w.advance_s) for w in WindowConfig().windows])
    severities = {rule: rules.severities[rule] for rule in RULES}
    params: dict[str, tuple[str, Any]] = {
        "default_tier": ("VARCHAR", rules.default_tier),
        "velocity_max_payments": ("BIGINT", rules.velocity_max_payments),
        "velocity_interval_s": ("BIGINT", rules.velocity_interval_s),
        "velocity_interval_ms": ("BIGINT", rules.velocity_interval_s * 1000),
        "retention_ms": ("BIGINT", rules.retention_ms),
        "velocity_keep": ("BIGINT", rules.velocity_keep),
        "new_payee_threshold_minor": ("HUGEINT", rules.new_payee_threshold_minor),
        "known_payees_cap": ("BIGINT", rules.known_payees_cap),
        "reference_unit": ("HUGEINT", 10**REFERENCE_EXPONENT),
        "counterparties": ("BIGINT", COUNTERPARTIES),
        # Alert ids are uuid5 under the pipeline's namespace for derived event ids.
        "alert_namespace": ("VARCHAR", envelope._NAMESPACE.hex),
        "severity_tier_limit": ("VARCHAR", severities["tier_limit"]),
        "severity_velocity": ("VARCHAR", severities["velocity"]),
        "severity_new_payee": ("VARCHAR", severities["new_payee"]),
    }
    _table(conn, "audit_params",
           ", ".join(f"{name} {kind}" for name, (kind, _) in params.items()),
           [tuple(value for _, value in params.values())])


def _table(
    conn: duckdb.DuckDBPyConnection, name: str, columns: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """A small table from Python values, in one statement (executemany runs one per row)."""
    conn.execute(f"CREATE TABLE {name} ({columns})")
    if rows:
        placeholders = "(" + ", ".join(["?"] * len(rows[0])) + ")"
        values = ", ".join([placeholders] * len(rows))
        # Only placeholders and this module's own table names are formatted in.
        conn.execute(f"INSERT INTO {name} VALUES {values}",  # noqa: S608
                     [value for row in rows for value in row])


_INSERT_LINES = """
INSERT INTO archive_lines
SELECT filename, $kind, stream, shard_id, sequence_number, subsequence_number, partition_key,
       arrival_ms, data, json_extract_string(error, '$.code')
FROM read_json($pattern, format = 'newline_delimited', compression = 'gzip',
               hive_partitioning = true, filename = true,
               columns = {'stream': 'VARCHAR', 'shard_id': 'VARCHAR',
                          'sequence_number': 'VARCHAR', 'subsequence_number': 'BIGINT',
                          'partition_key': 'VARCHAR', 'arrival_ms': 'BIGINT',
                          'data': 'VARCHAR', 'data_base64': 'VARCHAR', 'error': 'JSON'})
"""


def _load_archive(conn: duckdb.DuckDBPyConnection, archive_dir: Path) -> None:
    """Every archive line into `archive_lines`. Hive partitioning, as Athena's tables will
    have it: `stream` comes from the object's prefix (the partition), `date` and `hour` too.
    `subsequence_number` is NULL on a line that has none (a record not aggregated)."""
    conn.execute(
        "CREATE TABLE archive_lines (object_key VARCHAR, kind VARCHAR, stream VARCHAR, "
        "shard_id VARCHAR, sequence_number VARCHAR, subsequence_number BIGINT, "
        "partition_key VARCHAR, arrival_ms BIGINT, data VARCHAR, error_code VARCHAR)"
    )
    for kind in KINDS:
        if not any((archive_dir / kind).glob("stream=*/date=*/hour=*/*")):
            continue
        pattern = str(archive_dir / kind / "stream=*" / "date=*" / "hour=*" / "*")
        conn.execute(_INSERT_LINES, {"kind": kind, "pattern": pattern})


def _batch_views(conn: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for view, table in _BATCH_TABLES.items():
        rows = conn.execute(f"SELECT item FROM {table}").fetchall()  # noqa: S608 - constant
        out[view] = sorted(
            ({k: v for k, v in json.loads(item).items() if v is not None} for (item,) in rows),
            key=lambda item: tuple(str(item[k]) for k in SPECS[view].key),
        )
    return out


def _archive_counts(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    counts = dict(conn.execute("SELECT kind, COUNT(*) FROM lines GROUP BY kind").fetchall())
    return int(counts.get(EVENTS, 0)), int(counts.get(ERRORS, 0))


# --- the audit --------------------------------------------------------------------------------


def run_audit(
    *,
    s3: Any,
    dynamodb: Any,
    archive_bucket: str,
    tables: Mapping[str, str],
    rules: FraudRules,
    version: str,
    on_progress: Progress | None = None,
    limit_examples: int | None = None,
    arrived: tuple[int | None, int | None] = (None, None),
) -> AuditReport:
    """Recompute every view from the archive in `archive_bucket` and reconcile it with the
    tables of `version` (`tables`: declared view name -> physical table; a view without a
    table is reported under `not_compared`). `rules` are the fraud rules that version runs;
    `arrived` the (since, until) arrival bounds in epoch ms of the history it was built from."""
    unknown = sorted(set(tables) - set(VIEWS))
    if unknown:
        raise ValueError(f"unknown view(s) {', '.join(unknown)}; known: {', '.join(VIEWS)}")
    if limit_examples is not None and limit_examples < 0:
        raise ValueError("limit_examples must not be negative")
    say = on_progress or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="cascata-audit-") as tmp:
        root = Path(tmp)
        objects = _download(s3, archive_bucket, root, say)
        say(f"recomputing the views from {objects} archive objects (DuckDB)")
        with _recomputed(root, rules, arrived=arrived) as conn:
            batch = _batch_views(conn)
            events, errors = _archive_counts(conn)
    summaries: dict[str, ViewSummary] = {}
    differences: list[Difference] = []
    not_compared: dict[str, str] = {}
    for view in VIEWS:
        table = tables.get(view)
        if table is None:
            not_compared[view] = NO_TABLE
            continue
        spec = SPECS[view]
        if spec.bounded:
            not_compared[view] = NOT_EXACT
        say(f"scanning {view} ({table})")
        items = [i for i in scan_table(dynamodb, table)
                 if spec.skip_partition is None or i.get(spec.key[0]) != spec.skip_partition]
        found = reconcile(spec, batch[view], items)
        summaries[view] = ViewSummary(len(batch[view]), len(items), len(found))
        differences.extend(found if limit_examples is None else found[:limit_examples])
    say(f"{sum(s.differences for s in summaries.values())} differences")
    return AuditReport(
        version=version,
        archive=ArchiveSummary(objects, events, errors),
        views=summaries,
        differences=tuple(differences),
        not_compared=not_compared,
    )


def _download(s3: Any, bucket: str, root: Path, say: Progress) -> int:
    """The archive objects under `events/` and `errors/`, kept at their keys below `root`."""
    keys = [
        obj["Key"]
        for kind in KINDS
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{kind}/")
        for obj in page.get("Contents", [])
        if _is_archive_key(obj["Key"])
    ]
    say(f"downloading {len(keys)} archive objects from s3://{bucket}")
    for key in keys:
        target = root.joinpath(*PurePosixPath(key).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return len(keys)


def _is_archive_key(key: str) -> bool:
    """`<kind>/stream=../date=../hour=../<object>`, and nothing that could leave the folder."""
    parts = PurePosixPath(key).parts
    return (
        len(parts) == 5
        and parts[0] in KINDS
        and parts[1].startswith("stream=")
        and parts[2].startswith("date=")
        and parts[3].startswith("hour=")
        and all(p not in ("", ".", "..") for p in parts)
    )


def scan_table(dynamodb: Any, table: str) -> Iterator[dict[str, Any]]:
    """Every item of `table`, strongly consistent, as plain Python values."""
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for raw in page["Items"]:
            yield {k: des.deserialize(v) for k, v in raw.items()}


# --- reconciliation ---------------------------------------------------------------------------


Path_: TypeAlias = tuple[str, ...]


def reconcile(
    spec: ViewSpec, batch: Sequence[Mapping[str, Any]], items: Sequence[Mapping[str, Any]]
) -> list[Difference]:
    """Every difference between the batch items and the view's items, on the spec's key and
    attributes, in a stable order (key, then attribute path)."""
    expected = {_key(spec, b): b for b in batch}
    found: dict[tuple[str, ...], Mapping[str, Any]] = {}
    out: list[Difference] = []
    for item in items:
        found[_key(spec, item)] = item
    for key in sorted(set(expected) | set(found)):
        b, v = expected.get(key), found.get(key)
        key_json = dict(zip(spec.key, key, strict=True))
        if v is None:
            if not spec.bounded:
                out.append(Difference(spec.name, key_json, "missing_in_view", None,
                                      _business(spec, b), None))
            continue
        if b is None:
            out.append(Difference(spec.name, key_json, "unexpected_in_view", None, None,
                                  _business(spec, v)))
            continue
        want, got = _leaves(_business(spec, b)), _leaves(_business(spec, v))
        for path in sorted(set(want) | set(got)):
            w, g = want.get(path, _ABSENT), got.get(path, _ABSENT)
            if not _agrees(spec, path, w, g):
                out.append(Difference(
                    spec.name, key_json, "field", _field_name(path),
                    None if w is _ABSENT else w, None if g is _ABSENT else g,
                ))
    return out


_ABSENT: Any = object()


def _key(spec: ViewSpec, item: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(_plain(item.get(k))) for k in spec.key)


def _business(spec: ViewSpec, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {a: _plain(item[a]) for a in spec.attributes if a in item}


def _leaves(value: Any, path: Path_ = ()) -> dict[Path_, Any]:
    """A nested map as {attribute path: value}; an empty map is a value of its own."""
    if isinstance(value, Mapping) and value:
        out: dict[Path_, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, (*path, str(k))))
        return out
    return {path: value}


def _agrees(spec: ViewSpec, path: Path_, batch: Any, view: Any) -> bool:
    if not spec.bounded:
        return batch is not _ABSENT and view is not _ABSENT and _same(batch, view)
    # Bounds: the view holds a subset of the window's payments (possibly none of a cell's).
    if view is _ABSENT:
        return True
    if batch is _ABSENT:
        return False
    if _is_int(batch) and _is_int(view):
        return bool(view >= batch) if path[-1] == "min_minor" else bool(view <= batch)
    return _same(batch, view)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same kind: True is not 1, and "1" is not 1."""
    return type(a) is type(b) and bool(a == b)


def _field_name(path: Path_) -> str:
    """Dotted, with a component quoted when it holds a dot (account ids often do)."""
    return ".".join(json.dumps(p) if "." in p or '"' in p else p for p in path)


def _plain(value: Any) -> Any:
    """DynamoDB values as JSON-safe Python: Decimal to int (or its exact text when it has a
    fraction, never a float), binary to base64, sets to sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return str(Decimal(repr(value)))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raw = getattr(value, "value", None)  # boto3's Binary
    if isinstance(raw, bytes | bytearray):
        return base64.b64encode(bytes(raw)).decode("ascii")
    return str(value)
