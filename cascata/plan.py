"""`cascata plan`: capacity, limits and monthly cost of the declared pipeline at an event rate.

What comes from the declaration (`cascata.pipeline`): the streams, who reads and writes each
(consumers per stream), each processor's batch size, batching window, parallelization factor,
memory and reserved concurrency, which tables it writes, and each origin stream's share of the
event rate (`Stream.share_of_rate`). What the declaration cannot say (how many records a
processor emits per record it reads, how many items it writes, how much CPU it spends) is the
processor's cost model (`Processor.cost_model`, a function of `Assumptions` returning a
`Model`), declared by the application beside its code; every figure in one names where it
comes from. A processor without one gets conservative defaults (1:1 on every output, one
write per record on every table it writes) and the plan says so. `ASSUMPTIONS` holds what is
true of any pipeline (utilisation targets, Lambda's CPU share, request latencies, keys).

The AWS limits checked are in `LIMITS` (documented defaults; several can be raised by a quota
request). Prices come from `cascata.prices`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cascata import prices
from cascata.pipeline import Pipeline, Processor, ResourceKind
from cascata.project import ProjectError, current_pipeline, load_hook

MIB = 1024 * 1024
SECONDS_PER_MONTH = prices.HOURS_PER_MONTH * 3600
MAX_RATE = 10_000_000.0
"""Events per second beyond which a plan is meaningless here (it would take tens of thousands
of shards per stream); refused as an argument error."""
ON_DEMAND_START_BYTES = 4 * MIB
ON_DEMAND_START_RECORDS = 4000
"""Write capacity of a new on-demand stream (it then adapts up to twice its previous peak)."""
MAX_RECORD_BYTES = MIB
"""A Kinesis record (data plus partition key) is at most 1 MiB unless the stream opts in to
larger records."""


@dataclass(frozen=True, slots=True)
class Limit:
    value: float
    unit: str
    source: str


LIMITS: Mapping[str, Limit] = MappingProxyType(
    {
        "kinesis_shard_write_bytes": Limit(1 * MIB, "bytes/s per shard", "Kinesis quotas"),
        "kinesis_shard_write_records": Limit(1000, "records/s per shard", "Kinesis quotas"),
        "kinesis_shard_read_bytes": Limit(2 * MIB, "bytes/s per shard, shared by consumers",
                                          "Kinesis quotas (shared throughput)"),
        "kinesis_shard_read_calls": Limit(5, "GetRecords/s per shard, shared by consumers",
                                          "Kinesis quotas (shared throughput)"),
        "kinesis_account_shards": Limit(500, "shards per account in us-east-1",
                                        "Kinesis shard quota (adjustable)"),
        "kinesis_on_demand_write_bytes": Limit(200 * MIB, "bytes/s per on-demand stream",
                                               "Kinesis on-demand quotas (adjustable)"),
        "kinesis_on_demand_write_records": Limit(200_000, "records/s per on-demand stream",
                                                 "Kinesis on-demand quotas (adjustable)"),
        "kinesis_record_bytes": Limit(MAX_RECORD_BYTES, "bytes per record (data + key)",
                                      "Kinesis quotas (default record size)"),
        "lambda_payload_bytes": Limit(6_291_456, "bytes per invocation event",
                                      "Lambda quotas (synchronous invocation payload)"),
        "lambda_account_concurrency": Limit(1000, "concurrent executions per account",
                                            "Lambda quotas (adjustable)"),
        "lambda_reserved_concurrency": Limit(0, "concurrent executions reserved",
                                             "the declaration (reserved_concurrency)"),
        "esm_lane_concurrency": Limit(1, "concurrent invocation per shard and "
                                      "parallelization slot",
                                      "Lambda event source mapping for Kinesis"),
        "dynamodb_key_wcu": Limit(1000, "write units/s per partition key",
                                  "DynamoDB partition throughput"),
        "dynamodb_key_rcu": Limit(3000, "read units/s per partition key",
                                  "DynamoDB partition throughput"),
        "dynamodb_table_wcu": Limit(40_000, "write units/s per on-demand table",
                                    "DynamoDB table quota (adjustable)"),
        "dynamodb_table_rcu": Limit(40_000, "read units/s per on-demand table",
                                    "DynamoDB table quota (adjustable)"),
    }
)


# The assumptions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assumptions:
    target_utilisation: float = 0.8
    """Shards are sized so that no per-shard limit is used beyond this share (headroom for
    bursts and uneven keys)."""
    poll_interval_s: float = 1.0
    """Lambda polls each shard about once per second when it has caught up (reference 2.3), so
    a lane's batch holds about one second of records when the batching window is shorter."""
    lambda_full_vcpu_mb: int = 1769
    """At 1,769 MB a function has the equivalent of one vCPU; below, CPU time stretches in
    proportion (Lambda documentation, memory and computing power)."""
    local_core_per_vcpu: float = 1.0
    """One core of the machine the bench ran on is taken as one Lambda vCPU (arm64)."""
    envelope_bytes_per_record: int = 600
    """JSON around each record in a Lambda Kinesis event (ids, ARNs, key, a 56-digit sequence
    number): about 580 bytes measured on the local runtime's events with AWS-length values; the
    data itself grows by 4/3 in base64."""
    default_record_bytes: int = 600
    """Bytes of a derived record whose processor's model does not say how much it adds."""
    keys: int = 1_000_000
    """Distinct accounts. With many keys a batch rarely touches an account twice, so the
    per-key coalescing of balances, profiles and windows saves little: the conservative case."""
    hot_key_share: float = 0.01
    """Share of payments that involve the busiest account (a large merchant)."""
    latency_ms: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({
        "dynamodb.GetItem": 5, "dynamodb.PutItem": 5, "dynamodb.UpdateItem": 5,
        "dynamodb.DeleteItem": 5, "dynamodb.BatchGetItem": 10, "dynamodb.BatchWriteItem": 10,
        "dynamodb.Query": 10, "dynamodb.TransactWriteItems": 15,
        "kinesis.PutRecords": 25, "s3.PutObject": 30, "sns.Publish": 20,
        "sts.GetCallerIdentity": 20}))
    """Wall time of one request as seen from Lambda in the same region (DynamoDB's documented
    single-digit milliseconds; the others typical): assumed, not measured. Requests are taken as
    sequential, which overstates functions that overlap them (balances and profiles write from
    8 threads)."""
    default_latency_ms: float = 10.0

    def request_ms(self, operation: str) -> float:
        return float(self.latency_ms.get(operation, self.default_latency_ms))

    def cpu_stretch(self, memory_mb: int) -> float:
        return max(1.0, self.lambda_full_vcpu_mb / memory_mb) * self.local_core_per_vcpu


ASSUMPTIONS = Assumptions()


@dataclass(frozen=True, slots=True)
class TableUse:
    """How a processor writes one table, per input record."""

    table: str
    coalesced: bool = True
    """One write per distinct item of a batch (read once, written once), else one per record."""
    keys_per_record: float = 1.0
    """Keys (accounts, payers) an input record touches."""
    items_per_key: float = 1.0
    """Items written per touched key (windows: one per window the payment falls in)."""
    writes_per_record: float = 1.0
    """For an uncoalesced table: writes per input record."""
    wcu_per_write: float = 1.0
    rcu_per_item: float = 1.0
    """Strongly consistent read units per item read before writing (0: blind writes)."""
    hot: bool = True
    """Whether the busiest account's writes land on one item of this table."""


@dataclass(frozen=True, slots=True)
class Model:
    outputs: Mapping[str, float]
    """Output stream -> records emitted per input record."""
    tables: tuple[TableUse, ...] = ()
    quarantine_per_record: float = 0.0
    publishes_per_record: float = 0.0
    us_per_record: float = 500.0
    """Handler CPU microseconds per record at about the declared batch size."""
    parallelism: int = 1
    """How many per-item requests (`PARALLEL_OPERATIONS`) the handler has in flight at once
    (the stateful handlers write from a pool of 8 threads)."""
    added_bytes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Output stream -> bytes an output record adds to the record it derives from (lineage,
    normalised fields); an output not named here carries `default_record_bytes`."""
    basis: str = "assumed"


PARALLEL_OPERATIONS = frozenset({"dynamodb.PutItem", "dynamodb.UpdateItem",
                                 "dynamodb.DeleteItem", "sns.Publish"})


def model_for(proc: Processor, pipeline: Pipeline, a: Assumptions) -> Model:
    """The processor's declared cost model at these assumptions, its outputs those it
    declares; or the generic one when it declares none."""
    if proc.cost_model is None:
        written = [b.resource for b in proc.bindings
                   if b.access in ("write", "read_write")
                   and pipeline.resource(b.resource).kind is ResourceKind.TABLE]
        return Model(
            outputs=dict.fromkeys(pipeline.outputs(proc.name), 1.0),
            tables=tuple(TableUse(t, coalesced=False) for t in written),
            basis="no model for this processor: 1:1 on every output, one write per record "
                  "on every table it writes, 500 µs CPU per record (all assumed)",
        )
    try:
        model = load_hook(proc.cost_model, what=f"{proc.name}'s cost model")(a)
    except ProjectError as exc:
        raise PlanError(str(exc)) from None
    if not isinstance(model, Model):
        raise PlanError(f"{proc.name}'s cost model {proc.cost_model!r} returned "
                        f"{type(model).__name__}, not a cascata.plan.Model")
    outputs = {s: model.outputs.get(s, 1.0) for s in pipeline.outputs(proc.name)}
    return dataclasses.replace(model, outputs=outputs)


def invocation_ms(
    *,
    cpu_us_per_record: float,
    records: float,
    requests: Mapping[str, float],
    memory_mb: int,
    parallelism: int = 1,
    a: Assumptions = ASSUMPTIONS,
) -> float:
    """Billed milliseconds of one invocation: CPU stretched to the memory's vCPU share, plus the
    wall time of its requests, per-item ones `parallelism` at a time, the others one after the
    other. Lambda rounds up to the millisecond."""
    cpu_ms = cpu_us_per_record * records / 1000 * a.cpu_stretch(memory_mb)
    io_ms = sum(n * a.request_ms(op) / (parallelism if op in PARALLEL_OPERATIONS else 1)
                for op, n in requests.items())
    return float(max(1, math.ceil(cpu_ms + io_ms)))


# The plan ---------------------------------------------------------------------------------


class PlanError(ValueError):
    """Arguments the planner refuses (one line for the user)."""


@dataclass
class StreamPlan:
    name: str
    records_per_s: float = 0.0
    bytes_per_s: float = 0.0
    consumers: int = 0
    shards: int = 1
    record_bytes: float = 0.0
    put_payload_units_per_s: float = 0.0
    ingest_kb_per_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "records_per_s": _r(self.records_per_s),
            "bytes_per_s": _r(self.bytes_per_s),
            "record_bytes": _r(self.record_bytes),
            "consumers": self.consumers,
            "shards": self.shards,
        }


@dataclass
class FunctionPlan:
    name: str
    records_per_s: float
    batch_size: float
    invocations_per_s: float
    duration_ms: float
    busy_concurrency: float
    max_concurrency: int
    reserved_concurrency: int | None
    memory_mb: int
    requests_per_s: dict[str, float]
    basis: str

    def to_json(self) -> dict[str, Any]:
        return {
            "records_per_s": _r(self.records_per_s),
            "batch_size": _r(self.batch_size),
            "invocations_per_s": _r(self.invocations_per_s),
            "duration_ms": _r(self.duration_ms),
            "concurrency": {"busy": _r(self.busy_concurrency), "max": self.max_concurrency,
                            "reserved": self.reserved_concurrency},
            "memory_mb": self.memory_mb,
            "requests_per_s": {k: _r(v) for k, v in sorted(self.requests_per_s.items())},
            "basis": self.basis,
        }


@dataclass
class TablePlan:
    name: str
    wcu_per_s: float = 0.0
    rcu_per_s: float = 0.0
    hot_key_wcu_per_s: float = 0.0
    hot_key_rcu_per_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"wcu_per_s": _r(self.wcu_per_s), "rcu_per_s": _r(self.rcu_per_s),
                "hot_key_wcu_per_s": _r(self.hot_key_wcu_per_s),
                "hot_key_rcu_per_s": _r(self.hot_key_rcu_per_s)}


@dataclass(frozen=True, slots=True)
class Check:
    limit: str
    resource: str
    figure: float
    maximum: float
    unit: str
    advice: str

    @property
    def hit(self) -> bool:
        return self.figure > self.maximum

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "resource": self.resource, "figure": _r(self.figure),
                "max": self.maximum, "unit": self.unit, "hit": self.hit,
                "source": LIMITS[self.limit].source, "advice": self.advice}


@dataclass
class Plan:
    rate: float
    record_bytes: int
    assumptions: Assumptions
    streams: dict[str, StreamPlan]
    functions: dict[str, FunctionPlan]
    tables: dict[str, TablePlan]
    monthly_usd: dict[str, float]
    kinesis_usd: dict[str, float]
    kinesis_mode: str
    checks: list[Check]
    notes: list[str]
    origins: tuple[str, ...] = ()
    """The origin streams, fed at their share of the rate."""

    @property
    def hits(self) -> list[Check]:
        return [c for c in self.checks if c.hit]

    def to_json(self) -> dict[str, Any]:
        a = self.assumptions
        return {
            "rate_eps": self.rate,
            "record_bytes": self.record_bytes,
            "kinesis_mode": self.kinesis_mode,
            "shards": {n: s.shards for n, s in self.streams.items()},
            "on_demand_capacity": {
                n: {"write_mib_per_s": _r(s.bytes_per_s / MIB),
                    "write_records_per_s": _r(s.records_per_s),
                    "read_mib_per_s": _r(s.bytes_per_s * s.consumers / MIB)}
                for n, s in self.streams.items() if s.records_per_s > 0},
            "streams": {n: s.to_json() for n, s in self.streams.items()},
            "functions": {n: f.to_json() for n, f in self.functions.items()},
            "dynamodb": {n: t.to_json() for n, t in self.tables.items()},
            "monthly_usd": {k: round(v, 2) for k, v in self.monthly_usd.items()},
            "kinesis_monthly_usd_by_mode": {k: round(v, 2) for k, v in self.kinesis_usd.items()},
            "limits_hit": [c.to_json() for c in self.hits],
            "limits_checked": [c.to_json() for c in self.checks],
            "notes": self.notes,
            "assumptions": {
                "target_utilisation": a.target_utilisation, "keys": a.keys,
                "hot_key_share": a.hot_key_share,
                "share_of_rate": {s: p.records_per_s / self.rate for s, p in self.streams.items()
                                  if s in self.origins},
                "latency_ms": dict(a.latency_ms), "lambda_full_vcpu_mb": a.lambda_full_vcpu_mb,
            },
            "prices": {"as_of": prices.AS_OF, "region": prices.REGION},
        }


def check_arguments(rate: float, record_bytes: int) -> None:
    if not math.isfinite(rate) or rate <= 0:
        raise PlanError(f"--rate must be a positive number of events per second, got {rate:g}")
    if rate > MAX_RATE:
        raise PlanError(f"--rate {rate:g} events/s is beyond what this planner models "
                        f"(at most {MAX_RATE:,.0f})")
    if record_bytes <= 0:
        raise PlanError(f"--record-bytes must be a positive number of bytes, got {record_bytes}")
    if record_bytes > MAX_RECORD_BYTES:
        raise PlanError(f"--record-bytes {record_bytes:,} is over Kinesis's record size limit "
                        f"of {MAX_RECORD_BYTES:,} bytes")


def plan(
    rate: float,
    record_bytes: int,
    *,
    pipeline: Pipeline | None = None,
    assumptions: Assumptions = ASSUMPTIONS,
) -> Plan:
    pipeline = pipeline or current_pipeline()
    check_arguments(rate, record_bytes)
    a = assumptions
    if a.keys <= 0:
        raise PlanError("--keys must be positive")
    if not 0 <= a.hot_key_share <= 1:
        raise PlanError("--hot-key-share must be from 0 to 1")
    models = {p.name: model_for(p, pipeline, a) for p in pipeline.processors}
    streams = {s.name: StreamPlan(s.name) for s in pipeline.streams}
    for proc in pipeline.processors:
        for src in proc.sources:
            streams[src.stream].consumers += 1
    for origin in (s for s in pipeline.streams if s.origin):
        _add(streams[origin.name], rate * origin.share_of_rate, record_bytes)
    notes: list[str] = []
    processed: set[str] = set()
    writers = {s: {p.name for p in pipeline.processors if s in pipeline.outputs(p.name)}
               for s in streams}
    pending = list(pipeline.processors)
    while pending:
        ready = [p for p in pending
                 if all(writers[src.stream] - {p.name} <= processed for src in p.sources)]
        proc = ready[0] if ready else pending[0]
        pending.remove(proc)
        processed.add(proc.name)
        records_in = sum(streams[s.stream].records_per_s for s in proc.sources)
        bytes_in = sum(streams[s.stream].bytes_per_s for s in proc.sources)
        size_in = bytes_in / records_in if records_in else float(record_bytes)
        added = models[proc.name].added_bytes
        for out, ratio in models[proc.name].outputs.items():
            out_bytes = (size_in + added[out] if out in added
                         else float(a.default_record_bytes))
            _add(streams[out], records_in * ratio, out_bytes)
    for stream in streams.values():
        stream.shards = _shards(stream, a)
    functions: dict[str, FunctionPlan] = {}
    tables: dict[str, TablePlan] = {}
    checks: list[Check] = []
    for proc in pipeline.processors:
        functions[proc.name] = _function(proc, models[proc.name], streams, tables, checks, a)
    _stream_checks(streams, checks, a)
    _concurrency_checks(functions, checks)
    for table in tables.values():
        checks.append(Check("dynamodb_table_wcu", table.name, table.wcu_per_s,
                            LIMITS["dynamodb_table_wcu"].value, LIMITS["dynamodb_table_wcu"].unit,
                            "ask for a higher table quota or switch to provisioned capacity"))
        checks.append(Check("dynamodb_table_rcu", table.name, table.rcu_per_s,
                            LIMITS["dynamodb_table_rcu"].value, LIMITS["dynamodb_table_rcu"].unit,
                            "ask for a higher table quota or switch to provisioned capacity"))
        checks.append(Check("dynamodb_key_wcu", f"{table.name} (busiest key)",
                            table.hot_key_wcu_per_s, LIMITS["dynamodb_key_wcu"].value,
                            LIMITS["dynamodb_key_wcu"].unit,
                            "the busiest key's item cannot absorb its writes: shard the "
                            "account's item (write sharding) or coalesce over longer batches"))
        checks.append(Check("dynamodb_key_rcu", f"{table.name} (busiest key)",
                            table.hot_key_rcu_per_s, LIMITS["dynamodb_key_rcu"].value,
                            LIMITS["dynamodb_key_rcu"].unit, "cache or shard the hot item"))
    kinesis_usd = _kinesis_cost(streams)
    mode = min(kinesis_usd, key=lambda k: kinesis_usd[k])
    monthly = _monthly(functions, tables, kinesis_usd[mode], streams, models, pipeline, a)
    monthly["per_million_events"] = monthly["total"] / (rate * SECONDS_PER_MONTH) * 1e6
    if pipeline.apis or pipeline.scheduled:
        names = ", ".join([f.name for f in pipeline.apis] + [f.name for f in pipeline.scheduled])
        notes.append(f"not planned (their load does not follow the event rate): {names}")
    busiest = max(streams.values(), key=lambda s: s.bytes_per_s)
    if mode == "on_demand" and (busiest.bytes_per_s > ON_DEMAND_START_BYTES
                                or busiest.records_per_s > ON_DEMAND_START_RECORDS):
        notes.append(f"a new on-demand stream starts at 4 MiB/s and 4,000 records/s and "
                     f"adapts to twice its previous peak; {busiest.name} needs "
                     f"{busiest.bytes_per_s / MIB:,.1f} MiB/s: ramp traffic up or start "
                     f"provisioned")
    unmodelled = [p.name for p in pipeline.processors if p.cost_model is None]
    if unmodelled:
        notes.append(f"default assumptions for processors without a model: "
                     f"{', '.join(unmodelled)}")
    return Plan(rate=rate, record_bytes=record_bytes, assumptions=a, streams=streams,
                functions=functions, tables=tables, monthly_usd=monthly,
                kinesis_usd=kinesis_usd, kinesis_mode=mode, checks=checks, notes=notes,
                origins=tuple(s.name for s in pipeline.streams if s.origin))


def _add(stream: StreamPlan, records_per_s: float, record_bytes: float) -> None:
    stream.records_per_s += records_per_s
    stream.bytes_per_s += records_per_s * record_bytes
    stream.record_bytes = (stream.bytes_per_s / stream.records_per_s
                          if stream.records_per_s else 0.0)
    stream.put_payload_units_per_s += records_per_s * max(1, math.ceil(record_bytes / 25_600))
    stream.ingest_kb_per_s += records_per_s * max(1, math.ceil(record_bytes / 1024))


def _shards(stream: StreamPlan, a: Assumptions) -> int:
    u = a.target_utilisation
    need = max(
        stream.records_per_s / (LIMITS["kinesis_shard_write_records"].value * u),
        stream.bytes_per_s / (LIMITS["kinesis_shard_write_bytes"].value * u),
        stream.bytes_per_s * max(1, stream.consumers)
        / (LIMITS["kinesis_shard_read_bytes"].value * u),
    )
    return max(1, math.ceil(need))


def distinct(touches: float, keys: int) -> float:
    """Expected distinct keys among `touches` uniform draws from `keys` keys."""
    if touches <= 0:
        return 0.0
    return keys * -math.expm1(-touches / keys)


def _function(
    proc: Processor,
    model: Model,
    streams: Mapping[str, StreamPlan],
    tables: dict[str, TablePlan],
    checks: list[Check],
    a: Assumptions,
) -> FunctionPlan:
    records_in = 0.0
    invocations = 0.0
    max_concurrency = 0
    requests: dict[str, float] = {}
    payload_limit = LIMITS["lambda_payload_bytes"].value
    batches: list[float] = []
    for src in proc.sources:
        stream = streams[src.stream]
        if stream.records_per_s <= 0:
            max_concurrency += stream.shards * src.parallelization_factor
            continue
        lanes = stream.shards * src.parallelization_factor
        max_concurrency += lanes
        per_lane = stream.records_per_s / lanes
        encoded = math.ceil(stream.record_bytes / 3) * 4 + a.envelope_bytes_per_record
        fits = max(1, int(payload_limit // encoded))
        checks.append(Check(
            "lambda_payload_bytes", f"{proc.name} ← {src.stream}", src.batch_size * encoded,
            payload_limit, LIMITS["lambda_payload_bytes"].unit,
            f"a full batch of {src.batch_size} (what a backlog brings) would not fit; Lambda "
            f"cuts batches to about {fits} records (lower batch_size to make that explicit)"))
        batch = min(src.batch_size, fits,
                    max(1.0, per_lane * max(a.poll_interval_s, src.batching_window_s)))
        batches.append(batch)
        records_in += stream.records_per_s
        invocations += stream.records_per_s / batch
    batch = records_in / invocations if invocations else 0.0
    for ratio in model.outputs.values():
        out_records = batch * ratio
        if out_records > 0:
            requests["kinesis.PutRecords"] = requests.get("kinesis.PutRecords", 0.0) + (
                max(1, math.ceil(out_records / 500)) * invocations)
    if model.quarantine_per_record:
        requests["s3.PutObject"] = records_in * model.quarantine_per_record
    if model.publishes_per_record:
        requests["sns.Publish"] = records_in * model.publishes_per_record
    hot_share = a.hot_key_share
    for use in model.tables:
        table = tables.setdefault(use.table, TablePlan(use.table))
        if use.coalesced and invocations:
            keys = distinct(batch * use.keys_per_record, a.keys)
            items = keys * use.items_per_key
            writes = items * invocations
            reads = items * use.rcu_per_item * invocations
            if use.rcu_per_item:
                requests["dynamodb.BatchGetItem"] = requests.get("dynamodb.BatchGetItem", 0.0) \
                    + max(1, math.ceil(items / 100)) * invocations
            requests["dynamodb.PutItem"] = requests.get("dynamodb.PutItem", 0.0) + writes
            # The busiest key's item is written at most once per invocation of its lane.
            lanes = max(1, max_concurrency)
            hot_writes = min(records_in * hot_share * use.keys_per_record,
                             invocations / lanes) if use.hot else 0.0
        else:
            writes = records_in * use.writes_per_record
            reads = writes * use.rcu_per_item
            requests["dynamodb.UpdateItem"] = requests.get("dynamodb.UpdateItem", 0.0) + writes
            hot_writes = records_in * hot_share * use.writes_per_record if use.hot else 0.0
        table.wcu_per_s += writes * use.wcu_per_write
        table.rcu_per_s += reads
        table.hot_key_wcu_per_s += hot_writes * use.items_per_key * use.wcu_per_write
        table.hot_key_rcu_per_s += hot_writes * use.items_per_key * use.rcu_per_item
    per_invocation = {op: n / invocations for op, n in requests.items()} if invocations else {}
    duration = invocation_ms(cpu_us_per_record=model.us_per_record, records=batch,
                             requests=per_invocation, memory_mb=proc.memory_mb,
                             parallelism=model.parallelism, a=a) if invocations else 0.0
    busy = invocations * duration / 1000
    fn = FunctionPlan(
        name=proc.name, records_per_s=records_in, batch_size=batch,
        invocations_per_s=invocations, duration_ms=duration, busy_concurrency=busy,
        max_concurrency=max_concurrency, reserved_concurrency=proc.reserved_concurrency,
        memory_mb=proc.memory_mb, requests_per_s=requests, basis=model.basis,
    )
    return fn


def _stream_checks(streams: Mapping[str, StreamPlan], checks: list[Check],
                   a: Assumptions) -> None:
    total_shards = 0
    for s in streams.values():
        if s.records_per_s <= 0:
            continue
        total_shards += s.shards
        hot_records = s.records_per_s * a.hot_key_share
        checks.append(Check(
            "kinesis_shard_write_records", f"{s.name} (busiest key)", hot_records,
            LIMITS["kinesis_shard_write_records"].value, LIMITS["kinesis_shard_write_records"].unit,
            "one partition key maps to one shard: adding shards does not help; split the "
            "hot account's records over several keys"))
        checks.append(Check(
            "kinesis_shard_write_bytes", f"{s.name} (busiest key)", hot_records * s.record_bytes,
            LIMITS["kinesis_shard_write_bytes"].value, LIMITS["kinesis_shard_write_bytes"].unit,
            "one partition key maps to one shard: split the hot account's records over "
            "several keys"))
        checks.append(Check(
            "kinesis_shard_read_calls", s.name, float(s.consumers),
            LIMITS["kinesis_shard_read_calls"].value, LIMITS["kinesis_shard_read_calls"].unit,
            "each consumer polls every shard about once a second: use enhanced fan-out "
            "consumers beyond five (and for latency beyond two)"))
        checks.append(Check(
            "kinesis_on_demand_write_bytes", s.name, s.bytes_per_s,
            LIMITS["kinesis_on_demand_write_bytes"].value,
            LIMITS["kinesis_on_demand_write_bytes"].unit,
            "above this an on-demand stream throttles: use provisioned shards or ask for more"))
        checks.append(Check(
            "kinesis_on_demand_write_records", s.name, s.records_per_s,
            LIMITS["kinesis_on_demand_write_records"].value,
            LIMITS["kinesis_on_demand_write_records"].unit,
            "above this an on-demand stream throttles: use provisioned shards or ask for more"))
        checks.append(Check(
            "kinesis_record_bytes", s.name, s.record_bytes, LIMITS["kinesis_record_bytes"].value,
            LIMITS["kinesis_record_bytes"].unit,
            "derived records carry lineage and grow: keep input records smaller"))
    checks.append(Check(
        "kinesis_account_shards", "all streams (provisioned)", float(total_shards),
        LIMITS["kinesis_account_shards"].value, LIMITS["kinesis_account_shards"].unit,
        "ask for a higher shard quota, or run the streams on-demand"))


def _concurrency_checks(functions: Mapping[str, FunctionPlan], checks: list[Check]) -> None:
    limit = LIMITS["lambda_account_concurrency"]
    busy = sum(f.busy_concurrency for f in functions.values())
    ceiling = sum(f.max_concurrency for f in functions.values())
    checks.append(Check("lambda_account_concurrency", "all processors (busy)", busy,
                        limit.value, limit.unit, "ask for a higher concurrency quota"))
    checks.append(Check("lambda_account_concurrency",
                        "all processors (every shard lane busy at once, e.g. catching up)",
                        float(ceiling), limit.value, limit.unit,
                        "a backlog would throttle some mappings: ask for a higher quota"))
    for f in functions.values():
        if f.reserved_concurrency is not None:
            checks.append(Check("lambda_reserved_concurrency", f"{f.name} (reserved)",
                                f.busy_concurrency, float(f.reserved_concurrency), "concurrent "
                                "executions reserved for the function",
                                "raise reserved_concurrency in the declaration"))
        checks.append(Check("esm_lane_concurrency", f"{f.name} (one per shard lane)",
                            f.busy_concurrency, float(f.max_concurrency),
                            "concurrent invocations its mappings can run (shards x "
                            "parallelization factor)",
                            "the function cannot keep up and its iterator age grows: raise "
                            "parallelization_factor or the source's shards"))


def _kinesis_cost(streams: Mapping[str, StreamPlan]) -> dict[str, float]:
    active = [s for s in streams.values() if s.records_per_s > 0]
    provisioned = sum(
        s.shards * prices.HOURS_PER_MONTH * prices.usd("kinesis_shard_hour")
        + s.put_payload_units_per_s * SECONDS_PER_MONTH * prices.usd("kinesis_put_payload_unit")
        for s in active)
    on_demand = sum(
        prices.HOURS_PER_MONTH * prices.usd("kinesis_on_demand_stream_hour")
        + s.ingest_kb_per_s * SECONDS_PER_MONTH / MIB
        * (prices.usd("kinesis_on_demand_ingest_gb")
           + max(1, s.consumers) * prices.usd("kinesis_on_demand_retrieval_gb"))
        for s in active)
    return {"provisioned": provisioned, "on_demand": on_demand}


def _monthly(
    functions: Mapping[str, FunctionPlan],
    tables: Mapping[str, TablePlan],
    kinesis: float,
    streams: Mapping[str, StreamPlan],
    models: Mapping[str, Model],
    pipeline: Pipeline,
    a: Assumptions,
) -> dict[str, float]:
    lambda_usd = sum(
        f.invocations_per_s * SECONDS_PER_MONTH * prices.usd("lambda_request")
        + f.invocations_per_s * SECONDS_PER_MONTH * f.duration_ms / 1000 * f.memory_mb / 1024
        * prices.usd("lambda_gb_second_arm")
        for f in functions.values())
    dynamodb = sum(
        (t.wcu_per_s * prices.usd("dynamodb_write_request_unit")
         + t.rcu_per_s * prices.usd("dynamodb_read_request_unit")) * SECONDS_PER_MONTH
        for t in tables.values())
    s3 = sum(f.requests_per_s.get("s3.PutObject", 0.0) for f in functions.values()) \
        * SECONDS_PER_MONTH * prices.usd("s3_put")
    sns = sum(f.requests_per_s.get("sns.Publish", 0.0) for f in functions.values()) \
        * SECONDS_PER_MONTH * prices.usd("sns_publish")
    total = kinesis + lambda_usd + dynamodb + s3 + sns
    return {"kinesis": kinesis, "lambda": lambda_usd, "dynamodb": dynamodb, "s3": s3,
            "sns": sns, "total": total}


def _r(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    return round(value, digits)


# Rendering ---------------------------------------------------------------------------------


def render(result: Plan) -> None:
    from rich.table import Table

    from cascata.console import out

    out.print(f"[bold]plan[/] for {result.rate:,.6g} events/s of {result.record_bytes:,} bytes "
              f"(prices {prices.REGION}, {prices.AS_OF})")
    streams = Table(title="streams", title_justify="left", header_style="bold")
    for col in ("stream", "records/s", "MB/s", "record B", "consumers", "shards"):
        streams.add_column(col, justify="left" if col == "stream" else "right")
    for s in result.streams.values():
        streams.add_row(s.name, f"{s.records_per_s:,.1f}", f"{s.bytes_per_s / 1e6:,.3f}",
                        f"{s.record_bytes:,.0f}", str(s.consumers), str(s.shards))
    out.print(streams)
    fns = Table(title="functions", title_justify="left", header_style="bold")
    for col in ("function", "records/s", "batch", "invocations/s", "ms/invocation",
                "concurrency busy/max"):
        fns.add_column(col, justify="left" if col == "function" else "right")
    for f in result.functions.values():
        fns.add_row(f.name, f"{f.records_per_s:,.1f}", f"{f.batch_size:,.0f}",
                    f"{f.invocations_per_s:,.2f}", f"{f.duration_ms:,.0f}",
                    f"{f.busy_concurrency:,.2f} / {f.max_concurrency}")
    out.print(fns)
    tbl = Table(title="DynamoDB (on-demand)", title_justify="left", header_style="bold")
    for col in ("table", "WCU/s", "RCU/s", "busiest key WCU/s"):
        tbl.add_column(col, justify="left" if col == "table" else "right")
    for t in result.tables.values():
        tbl.add_row(t.name, f"{t.wcu_per_s:,.1f}", f"{t.rcu_per_s:,.1f}",
                    f"{t.hot_key_wcu_per_s:,.1f}")
    out.print(tbl)
    m = result.monthly_usd
    other = result.kinesis_usd["provisioned" if result.kinesis_mode == "on_demand"
                               else "on_demand"]
    out.print(
        f"monthly: [bold]${m['total']:,.2f}[/] (Kinesis {result.kinesis_mode.replace('_', '-')} "
        f"${m['kinesis']:,.2f}; the other mode ${other:,.2f}; Lambda ${m['lambda']:,.2f}; "
        f"DynamoDB ${m['dynamodb']:,.2f}; S3 ${m['s3']:,.2f}; SNS ${m['sns']:,.2f}); "
        f"${m['per_million_events']:,.2f} per million events"
    )
    hits = result.hits
    if not hits:
        out.print("[green]no AWS limit is hit[/] "
                  f"({len(result.checks)} checked; --json lists them)")
    for c in hits:
        out.print(f"[red]LIMIT[/] {c.resource}: {_fmt(c.figure)} > {_fmt(c.maximum)} "
                  f"{c.unit} ({c.limit}); {c.advice}")
    for note in result.notes:
        out.print(f"note: {note}")


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"

