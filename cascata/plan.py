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

`compare` prices the same plan on each broker (`BROKERS`) term by term, in Decimal, with its
floor (the same deployment at zero traffic) and the rates at which two brokers' totals cross.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
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
    retention_hours: int = 24
    """How long a broker keeps records: Kinesis includes 24 hours in its shard price, MSK bills
    the bytes it keeps."""
    kafka_zones: int = 3
    """Zones of the MSK variant's VPC (`kafka.zone_count`: 3 in the prod stage, 2 in dev).
    Interface endpoints are billed per zone; provisioned brokers are placed one per zone."""
    kafka_min_pollers: int = 1
    """`kafka.min_pollers`: the provisioned pollers each Kafka mapping keeps (the stacks'
    default)."""
    broker_min_volume_gb: int = 100
    """The smallest storage volume a provisioned broker is given (assumed; MSK accepts 1 GB
    and up)."""

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
    pipeline: Pipeline | None = field(default=None, repr=False)
    """The declaration planned (the broker comparison reads its mappings and archives)."""

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
    return _build(rate, record_bytes, pipeline, assumptions)


def _build(rate: float, record_bytes: int, pipeline: Pipeline, a: Assumptions) -> Plan:
    """The plan at `rate`, which may be zero here (the floor of the broker comparison)."""
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
    monthly["per_million_events"] = (monthly["total"] / (rate * SECONDS_PER_MONTH) * 1e6
                                     if rate else 0.0)
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
                origins=tuple(s.name for s in pipeline.streams if s.origin), pipeline=pipeline)


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


# The broker comparison ------------------------------------------------------------------

BROKERS = ("kinesis", "msk-serverless", "msk-provisioned")
"""The brokers a declared pipeline can run on: Kinesis (the default stacks) and MSK (the
`broker=msk` variant renders MSK Serverless; provisioned brokers are the other MSK cluster type
a user could point it at)."""
BROKER_NAMES = MappingProxyType({"kinesis": "Kinesis", "msk-serverless": "MSK Serverless",
                                 "msk-provisioned": "MSK provisioned"})
GIB = 1024 ** 3
CENT = Decimal("0.01")
KAFKA_POLLER_BYTES = 5_000_000
KAFKA_POLLER_INVOCATIONS = 5
"""One provisioned Kafka poller handles up to 5 MB/s or 5 concurrent invocations."""
EPU_POLLERS = 10
EPU_BYTES = 20_000_000
"""One Event Poller Unit holds up to 10 pollers and 20 MB/s; a mapping outside a poller group
(the stacks name none) holds its own (Lambda developer guide, Kafka scaling modes)."""
INTERFACE_ENDPOINTS = ("Lambda", "STS", "X-Ray")
"""The MSK variant's interface endpoints, one per zone each (`cascata.cdk.kafka`)."""
FIREHOSE_RECORD_ROUNDING = 5 * 1024
PROVISIONED_BROKER = "kafka.m7g.large"
BROKER_STORAGE_MIB_S = 78.75
BROKER_NETWORK_MIB_S = 117.0
STORAGE_IO_FACTOR = 6.5
NETWORK_IO_BASE = 5.7
BROKER_PARTITIONS = 1000
STORAGE_HEADROOM = 2.0
"""Sizing of provisioned brokers, as AWS's MSK sizing tool does it: a kafka.m7g.large broker
writes 78.75 MiB/s to storage and sends 117 MiB/s; each MiB/s produced costs 6.5 MiB/s of
storage writes (replicas, lagging readers, rebalancing, one zone down) and 5.7 MiB/s plus the
consumers' share (scaled up for one zone down) of network; 1,000 partition replicas a broker
are recommended; volumes are given twice the data they keep."""
MSK_REPLICATION = 3


@dataclass(frozen=True, slots=True)
class Term:
    """One line of a bill: `quantity` of `unit` a month at `unit_price` each. A quantity of
    None was not estimated and a unit price of None is not confirmed: either way the term has
    no monthly figure and is left out of the totals (never counted as zero)."""

    name: str
    quantity: Decimal | None
    unit: str
    unit_price: Decimal | None
    source: str
    note: str = ""
    shared: bool = False
    """The same on every broker (Lambda, tables, S3, SNS)."""

    @property
    def monthly(self) -> Decimal | None:
        if self.quantity is None or self.unit_price is None:
            return None
        return self.quantity * self.unit_price

    @property
    def status(self) -> str:
        if self.unit_price is None:
            return "not priced"
        if self.quantity is None:
            return "not estimated"
        return "priced"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "quantity": _text(self.quantity), "unit": self.unit,
            "unit_price_usd": _text(self.unit_price),
            "monthly_usd": _text(_cents(self.monthly)), "source": self.source,
            "status": self.status, "shared": self.shared}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class BrokerCost:
    """What the declared pipeline costs a month on one broker at the plan's rate, and at zero
    traffic (the floor: what it costs to exist)."""

    broker: str
    sizing: str
    terms: tuple[Term, ...]
    floor_terms: tuple[Term, ...]
    mode: str = ""
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> Decimal:
        return _sum(self.terms)

    @property
    def floor(self) -> Decimal:
        return _sum(self.floor_terms)

    @property
    def rate_dependent(self) -> Decimal:
        return self.total - self.floor

    @property
    def unpriced(self) -> list[Term]:
        return [t for t in self.terms if t.monthly is None]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": BROKER_NAMES[self.broker], "sizing": self.sizing,
            "total_usd": _text(_round(self.total)),
            "floor_usd": _text(_round(self.floor)),
            "rate_dependent_usd": _text(_round(self.total) - _round(self.floor)),
            "terms": [t.to_json() for t in self.terms],
            "floor_terms": [t.to_json() for t in self.floor_terms],
            "not_priced": [t.name for t in self.unpriced if t.status == "not priced"],
            "not_estimated": [t.name for t in self.unpriced if t.status == "not estimated"],
            "notes": list(self.notes)}
        if self.mode:
            out["mode"] = self.mode
        return out


@dataclass(frozen=True, slots=True)
class Crossover:
    """Where two brokers' monthly totals cross: `cheaper_below` is the cheaper one below
    `rate` events per second, `cheaper_above` above it."""

    cheaper_below: str
    cheaper_above: str
    rate: float

    def to_json(self) -> dict[str, Any]:
        return {"between": sorted([self.cheaper_below, self.cheaper_above]),
                "rate_eps": _r(self.rate), "cheaper_below": self.cheaper_below,
                "cheaper_above": self.cheaper_above}


@dataclass(frozen=True, slots=True)
class Comparison:
    rate: float
    record_bytes: int
    options: Mapping[str, BrokerCost]
    crossovers: tuple[Crossover, ...]
    searched_up_to: float
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        pairs = [sorted(p) for p in itertools.combinations(self.options, 2)]
        crossed = {tuple(c.to_json()["between"]) for c in self.crossovers}
        return {
            "rate_eps": self.rate, "record_bytes": self.record_bytes,
            "money": "USD a month, as decimal strings; a term without a price or a quantity "
                     "has monthly_usd null and is not in the totals",
            "options": {b: o.to_json() for b, o in self.options.items()},
            "crossovers": [c.to_json() for c in self.crossovers],
            "no_crossover": [p for p in pairs if tuple(p) not in crossed],
            "searched_up_to_eps": self.searched_up_to,
            "notes": list(self.notes),
        }


def compare(result: Plan, brokers: Sequence[str] = BROKERS) -> Comparison:
    """The plan's pipeline at the plan's rate on each of `brokers`: every term, the floor (the
    same deployment at zero traffic) and the rates at which two brokers' totals cross."""
    unknown = [b for b in brokers if b not in BROKERS]
    if unknown or not brokers:
        raise PlanError(f"--broker must be one of {', '.join(BROKERS)} or all, got "
                        f"{', '.join(unknown) or 'nothing'}")
    if result.pipeline is None:
        raise PlanError("this plan does not carry its pipeline")
    pipeline, a = result.pipeline, result.assumptions
    zero = _build(0.0, result.record_bytes, pipeline, a)
    options: dict[str, BrokerCost] = {}
    for broker in dict.fromkeys(brokers):
        options[broker] = _broker_cost(result, zero, broker)
    crossovers: list[Crossover] = []
    totals: dict[float, dict[str, Decimal]] = {}

    def total(rate: float) -> Mapping[str, Decimal]:
        if rate not in totals:
            at = _build(rate, result.record_bytes, pipeline, a) if rate else zero
            totals[rate] = {b: _broker_cost(at, zero, b).total for b in options}
        return totals[rate]

    grid = [0.0] + [10 ** (k / 8) for k in range(-16, 8 * 7 + 1)]
    for first, second in itertools.combinations(options, 2):
        for low, high in itertools.pairwise(grid):
            before = total(low)[first] - total(low)[second]
            after = total(high)[first] - total(high)[second]
            if before == 0 or after == 0 or (before < 0) == (after < 0):
                continue
            lo, hi = max(low, grid[1] / 10), high
            for _ in range(20):
                mid = math.sqrt(lo * hi)
                diff = total(mid)[first] - total(mid)[second]
                lo, hi = (mid, hi) if (diff < 0) == (before < 0) else (lo, mid)
            below, above = (first, second) if before < 0 else (second, first)
            crossovers.append(Crossover(below, above, hi))
    notes = [
        "Lambda, the tables, S3 and SNS are taken to cost the same on every broker (same "
        "batches); the KMS key, log storage, table storage and the scheduled and API functions "
        "are not planned on any",
        f"MSK keeps records {a.retention_hours} h and has as many partitions per topic as the "
        f"Kinesis plan has ordered lanes (shards x parallelization factor)",
    ]
    if pipeline.archives:
        notes.append("the archive's transformation function is not counted; MSK variants "
                     "have no archive (Firehose reads Kinesis streams)")
    return Comparison(rate=result.rate, record_bytes=result.record_bytes, options=options,
                      crossovers=tuple(crossovers), searched_up_to=grid[-1],
                      notes=tuple(notes))


def _broker_cost(result: Plan, zero: Plan, broker: str) -> BrokerCost:
    shared = _shared_terms(result)
    shared_floor = _shared_terms(zero)
    if broker == "kinesis":
        modes = {m: _kinesis_terms(result, m) for m in ("provisioned", "on_demand")}
        mode = min(modes, key=lambda m: (_sum(modes[m][1]), m))
        sizing, terms, notes = modes[mode]
        floor = _kinesis_terms(zero, mode)[1]
        return BrokerCost(broker, sizing, (*terms, *shared), (*floor, *shared_floor),
                          mode=mode, notes=notes)
    build = _msk_serverless_terms if broker == "msk-serverless" else _msk_provisioned_terms
    sizing, terms, notes = build(result)
    floor = build(zero)[1]
    return BrokerCost(broker, sizing, (*terms, *shared), (*floor, *shared_floor), notes=notes)


_Terms = tuple[str, tuple[Term, ...], tuple[str, ...]]


def _term(name: str, quantity: float | None, price: str, *, note: str = "",
          shared: bool = False, unit: str = "") -> Term:
    p = prices.PRICES[price]
    return Term(name, None if quantity is None else _dec(quantity), unit or p.per,
                prices.amount(price), prices.SOURCES[p.source], note, shared)


def _shared_terms(result: Plan) -> tuple[Term, ...]:
    fns = result.functions.values()
    invocations = sum(f.invocations_per_s for f in fns) * SECONDS_PER_MONTH
    gb_seconds = sum(f.invocations_per_s * f.duration_ms / 1000 * f.memory_mb / 1024
                     for f in fns) * SECONDS_PER_MONTH
    wcu = sum(t.wcu_per_s for t in result.tables.values()) * SECONDS_PER_MONTH
    rcu = sum(t.rcu_per_s for t in result.tables.values()) * SECONDS_PER_MONTH
    puts = sum(f.requests_per_s.get("s3.PutObject", 0.0) for f in fns) * SECONDS_PER_MONTH
    publishes = sum(f.requests_per_s.get("sns.Publish", 0.0) for f in fns) * SECONDS_PER_MONTH
    return (
        _term("Lambda requests", invocations, "lambda_request", shared=True),
        _term("Lambda duration", gb_seconds, "lambda_gb_second_arm", shared=True),
        _term("DynamoDB writes", wcu, "dynamodb_write_request_unit", shared=True),
        _term("DynamoDB reads", rcu, "dynamodb_read_request_unit", shared=True),
        _term("S3 PUT (quarantine)", puts, "s3_put", shared=True),
        _term("SNS publishes", publishes, "sns_publish", shared=True),
    )


def _kinesis_terms(result: Plan, mode: str) -> _Terms:
    """Every declared stream exists whether or not traffic reaches it, so each is billed."""
    streams = list(result.streams.values())
    hours = prices.HOURS_PER_MONTH
    if mode == "provisioned":
        shards = sum(s.shards for s in streams)
        terms = [
            _term("Kinesis shard-hours", shards * hours, "kinesis_shard_hour"),
            _term("Kinesis PUT payload units",
                  sum(s.put_payload_units_per_s for s in streams) * SECONDS_PER_MONTH,
                  "kinesis_put_payload_unit", unit="PUT payload unit (25 KB)"),
        ]
        sizing = f"{len(streams)} streams, {shards} shards (provisioned)"
    else:
        terms = [
            _term("Kinesis on-demand stream-hours", len(streams) * hours,
                  "kinesis_on_demand_stream_hour"),
            _term("Kinesis on-demand data in",
                  sum(s.ingest_kb_per_s for s in streams) * SECONDS_PER_MONTH / MIB,
                  "kinesis_on_demand_ingest_gb", unit="GB (records rounded up to 1 KB)"),
            _term("Kinesis on-demand data out",
                  sum(s.ingest_kb_per_s * max(1, s.consumers) for s in streams)
                  * SECONDS_PER_MONTH / MIB, "kinesis_on_demand_retrieval_gb",
                  unit="GB read (records rounded up to 1 KB)"),
        ]
        sizing = f"{len(streams)} streams (on-demand)"
    archives = result.pipeline.archives if result.pipeline else ()
    if archives:
        billed = stored = objects = 0.0
        for archive in archives:
            s = result.streams[archive.stream]
            if s.records_per_s <= 0:
                continue
            per_record = math.ceil(s.record_bytes / FIREHOSE_RECORD_ROUNDING)
            billed += s.records_per_s * per_record * FIREHOSE_RECORD_ROUNDING
            stored += s.bytes_per_s
            objects += max(SECONDS_PER_MONTH / archive.buffer_interval_s,
                           s.bytes_per_s * SECONDS_PER_MONTH / (archive.buffer_size_mib * MIB))
        names = ", ".join(a.stream for a in archives)
        terms += [
            _term(f"Firehose archive ingest ({names})", billed * SECONDS_PER_MONTH / GIB,
                  "firehose_ingest_gb", unit="GB (records rounded up to 5 KB)"),
            _term("Firehose dynamic partitioning", stored * SECONDS_PER_MONTH / GIB,
                  "firehose_dynamic_partitioning_gb", unit="GB"),
            _term("Firehose objects delivered", objects,
                  "firehose_dynamic_partitioning_objects", unit="S3 object",
                  note="at least one a buffer interval while records arrive"),
        ]
    return sizing, tuple(terms), ()


def _partitions(result: Plan) -> dict[str, int]:
    """Partitions per topic: as many as the Kinesis plan has ordered lanes (Kafka has no
    parallelization factor: one poller per partition keeps per-key order)."""
    factor = dict.fromkeys(result.streams, 1)
    for proc in (result.pipeline.processors if result.pipeline else ()):
        for src in proc.sources:
            factor[src.stream] = max(factor[src.stream], src.parallelization_factor)
    return {n: s.shards * factor[n] for n, s in result.streams.items()}


def _kafka_terms(result: Plan) -> tuple[Term, ...]:
    """What any MSK cluster adds on the Lambda and network side: each Kafka mapping's Event
    Poller Units, and the VPC's interface endpoints."""
    a = result.assumptions
    epus = 0
    for proc in (result.pipeline.processors if result.pipeline else ()):
        fn = result.functions[proc.name]
        for src in proc.sources:
            s = result.streams[src.stream]
            share = s.records_per_s / fn.records_per_s if fn.records_per_s else 0.0
            pollers = max(a.kafka_min_pollers,
                          math.ceil(s.bytes_per_s / KAFKA_POLLER_BYTES),
                          math.ceil(fn.busy_concurrency * share / KAFKA_POLLER_INVOCATIONS))
            epus += max(1, math.ceil(pollers / EPU_POLLERS),
                        math.ceil(s.bytes_per_s / EPU_BYTES))
    endpoints = len(INTERFACE_ENDPOINTS) * a.kafka_zones
    return (
        _term("Lambda Event Poller Unit-hours", epus * prices.HOURS_PER_MONTH,
              "lambda_event_poller_unit_hour",
              note=f"{epus} EPU: each Kafka mapping holds its own (no poller group), "
                   f"min_pollers {a.kafka_min_pollers}"),
        _term(f"VPC interface endpoint-hours ({', '.join(INTERFACE_ENDPOINTS)})",
              endpoints * prices.HOURS_PER_MONTH, "vpc_interface_endpoint_az_hour",
              note=f"{len(INTERFACE_ENDPOINTS)} endpoints x {a.kafka_zones} zones"),
        _term("VPC interface endpoint data processed", None, "vpc_interface_endpoint_gb",
              note="traces and credentials only; not estimated"),
    )


def _kafka_traffic(result: Plan) -> tuple[float, float]:
    """Bytes a second produced to and fetched from the topics."""
    streams = result.streams.values()
    return (sum(s.bytes_per_s for s in streams),
            sum(s.bytes_per_s * s.consumers for s in streams))


def _msk_serverless_terms(result: Plan) -> _Terms:
    hours = prices.HOURS_PER_MONTH
    partitions = sum(_partitions(result).values())
    produced, fetched = _kafka_traffic(result)
    kept = produced * result.assumptions.retention_hours * 3600 / GIB
    terms = (
        _term("MSK Serverless cluster-hours", hours, "msk_serverless_cluster_hour"),
        _term("MSK Serverless partition-hours", partitions * hours,
              "msk_serverless_partition_hour"),
        _term("MSK Serverless storage", kept, "msk_serverless_storage_gib_month",
              unit="GiB-month"),
        _term("MSK Serverless data in", produced * SECONDS_PER_MONTH / GIB,
              "msk_serverless_data_in_gib", unit="GiB"),
        _term("MSK Serverless data out", fetched * SECONDS_PER_MONTH / GIB,
              "msk_serverless_data_out_gib", unit="GiB"),
        *_kafka_terms(result),
    )
    notes = ("MSK Serverless throughput quotas per partition and per cluster are not "
             "checked here",)
    return f"1 cluster, {partitions} partitions", terms, notes


def provisioned_brokers(result: Plan) -> int:
    """kafka.m7g.large brokers for the plan's traffic: one per zone at least, a multiple of the
    zones, enough for the produced bytes at the target utilisation and for the replicas."""
    a = result.assumptions
    zones = a.kafka_zones
    produced, fetched = _kafka_traffic(result)
    fan_out = fetched / produced if produced else 1.0
    per_broker = min(BROKER_STORAGE_MIB_S / STORAGE_IO_FACTOR,
                     BROKER_NETWORK_MIB_S / (fan_out * zones / (zones - 1) + NETWORK_IO_BASE))
    replicas = sum(_partitions(result).values()) * min(MSK_REPLICATION, zones)
    need = max(zones, math.ceil(produced / MIB / (per_broker * a.target_utilisation)),
               math.ceil(replicas / BROKER_PARTITIONS))
    return math.ceil(need / zones) * zones


def _msk_provisioned_terms(result: Plan) -> _Terms:
    a = result.assumptions
    brokers = provisioned_brokers(result)
    replication = min(MSK_REPLICATION, a.kafka_zones)
    produced, fetched = _kafka_traffic(result)
    kept = produced * a.retention_hours * 3600 * replication * STORAGE_HEADROOM / GIB
    volume = max(a.broker_min_volume_gb, math.ceil(kept / brokers))
    crossing = (produced + fetched) * (a.kafka_zones - 1) / a.kafka_zones
    terms = (
        _term(f"MSK broker-hours ({PROVISIONED_BROKER})", brokers * prices.HOURS_PER_MONTH,
              "msk_broker_hour_m7g_large"),
        _term("MSK broker storage", brokers * volume, "msk_broker_storage_gb_month",
              note=f"{volume} GB a broker, replication factor {replication}"),
        Term("Data between zones (clients and brokers)",
             _dec(crossing * SECONDS_PER_MONTH / 1e9), "GB", None,
             "https://aws.amazon.com/ec2/pricing/on-demand/",
             "not priced: whether Lambda's pollers and functions pay regional transfer to "
             "brokers in other zones is not confirmed"),
        *_kafka_terms(result),
    )
    notes = ("the stacks render MSK Serverless only: this is the cost of pointing the same "
             "functions at a provisioned cluster",)
    return f"{brokers} x {PROVISIONED_BROKER}, {a.kafka_zones} zones", terms, notes


def _dec(value: float) -> Decimal:
    value = float(value)
    return Decimal(int(value)) if value.is_integer() else Decimal(repr(value))


def _sum(terms: Sequence[Term]) -> Decimal:
    return sum((m for t in terms if (m := t.monthly) is not None), Decimal(0))


def _round(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _cents(value: Decimal | None) -> Decimal | None:
    return None if value is None else _round(value)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


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


def render_comparison(comparison: Comparison) -> None:
    from rich.table import Table

    from cascata.console import out

    options = comparison.options
    out.print(f"[bold]by broker[/] at {comparison.rate:,.6g} events/s, USD a month "
              f"(floor: the same deployment at zero traffic)")
    summary = Table(title="brokers", title_justify="left", header_style="bold")
    for col in ("broker", "sizing", "floor", "with traffic", "total", "not in the total"):
        summary.add_column(col, justify="right" if col in ("floor", "with traffic", "total")
                           else "left")
    for o in options.values():
        summary.add_row(BROKER_NAMES[o.broker], o.sizing, _usd(o.floor),
                        _usd(o.total - o.floor), f"[bold]{_usd(o.total)}[/]",
                        ", ".join(f"{t.name} ({t.status})" for t in o.unpriced) or "-")
    out.print(summary)
    first = next(iter(options.values()))
    for o in options.values():
        _terms_table(BROKER_NAMES[o.broker], [t for t in o.terms if not t.shared],
                     o.floor_terms)
    _terms_table("the same on every broker", [t for t in first.terms if t.shared],
                 first.floor_terms)
    partial = " (priced terms only)" if any(o.unpriced for o in options.values()) else ""
    for c in comparison.crossovers:
        out.print(f"crossover{partial}: {BROKER_NAMES[c.cheaper_below]} is cheaper below about "
                  f"{_fmt(c.rate)} events/s, {BROKER_NAMES[c.cheaper_above]} above")
    crossed = {frozenset((c.cheaper_below, c.cheaper_above)) for c in comparison.crossovers}
    for x, y in itertools.combinations(options, 2):
        if frozenset((x, y)) not in crossed:
            cheaper = x if options[x].total <= options[y].total else y
            out.print(f"no crossover{partial}: {BROKER_NAMES[cheaper]} is cheaper than "
                      f"{BROKER_NAMES[y if cheaper == x else x]} at every rate up to "
                      f"{_fmt(comparison.searched_up_to)} events/s")
    for o in options.values():
        for note in o.notes:
            out.print(f"note ({BROKER_NAMES[o.broker]}): {note}")
    for note in comparison.notes:
        out.print(f"note: {note}")


def _terms_table(title: str, terms: Sequence[Term], floor: Sequence[Term]) -> None:
    from rich.table import Table

    from cascata.console import out

    at_zero = {t.name: t for t in floor}
    table = Table(title=title, title_justify="left", header_style="bold")
    for col in ("term", "quantity", "unit", "unit price", "monthly", "at zero traffic"):
        table.add_column(col, justify="left" if col in ("term", "unit") else "right")
    for t in terms:
        zero = at_zero.get(t.name)
        table.add_row(t.name, "-" if t.quantity is None else _fmt(float(t.quantity)), t.unit,
                      "not priced" if t.unit_price is None else _unit_price(t.unit_price),
                      _usd(t.monthly) if t.monthly is not None else t.status,
                      "-" if zero is None or zero.monthly is None else _usd(zero.monthly))
    out.print(table)


def _unit_price(value: Decimal) -> str:
    return f"${value:.2f}" if value == _round(value) else f"${value:f}"


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"${_round(value):,}"
