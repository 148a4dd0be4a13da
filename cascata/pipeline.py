"""The declaration API: a pipeline declared once as plain data.

An application declares its dataflow with these types (streams, tables, buckets, queues,
topics, the processors that connect them with every event source mapping setting, scheduled
and API functions, archives) in one `Pipeline` value; the project's setting names it
(`cascata.project`). The CDK rendering (`cascata.cdk`) renders it for AWS and the local runtime
(`cascata.local`) on the embedded emulator; a test asserts that the synthesized template agrees
with it. This module must never import aws_cdk or boto3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Any, Literal

LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "us-east-1"

ORIGIN_STREAMS_ENV = "ORIGIN_STREAMS"
"""Set for each processor reading an origin stream: the gate's policy per physical stream."""
DEDUPE_TABLE_ENV = "DEDUPE_TABLE"
"""The table of the origin gate's duplicate markers, bound to every processor reading an
origin stream."""

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_HOOK = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")

StartingPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]


class Broker(str, Enum):
    """Which log carries the streams: Kinesis (default) or Amazon MSK topics."""

    KINESIS = "kinesis"
    MSK = "msk"


class ResourceKind(str, Enum):
    STREAM = "stream"
    TABLE = "table"
    BUCKET = "bucket"
    QUEUE = "queue"
    TOPIC = "topic"


@dataclass(frozen=True, slots=True)
class Stream:
    """A Kinesis stream (or MSK topic). `partition_key` documents what the record key is."""

    name: str
    partition_key: str
    description: str
    origin: bool = False
    """An input from outside the pipeline (producers write it): archived, shared by every
    version of the views. Other streams are derived by processors and belong to a version."""
    dedupe_horizon_s: int = 3600
    """Origin streams: a copy of an event (same `event_id`) arriving within this many seconds
    of the first arrival is suppressed exactly, in every view (`cascata_runtime.origin`)."""
    max_future_skew_s: int = 300
    """Origin streams: an event dated more than this after its arrival is quarantined."""
    earliest: str = "2000-01-01T00:00:00Z"
    """Origin streams: an event dated before this is quarantined."""
    share_of_rate: float = 1.0
    """Origin streams: records per event of `cascata plan --rate` (a side input such as a
    CRM feed is a small share of the main one)."""
    kind: ResourceKind = field(default=ResourceKind.STREAM, init=False)

    def origin_policy(self, *, replayed: bool = False) -> dict[str, Any]:
        """The gate's policy for this origin stream, as the functions receive it. `replayed`:
        the stream is a version's replay stream refilled from the archive, whose records carry
        their original arrival time (believed on such a stream only)."""
        policy: dict[str, Any] = {
            "dedupe_horizon_s": self.dedupe_horizon_s,
            "max_future_skew_s": self.max_future_skew_s,
            "earliest": self.earliest,
        }
        if replayed:
            policy["replayed"] = True
        return policy


@dataclass(frozen=True, slots=True)
class Index:
    """A global secondary index (string keys), for a view read by another key.

    `projection` ALL copies every attribute (the index serves reads on its own); KEYS_ONLY
    copies only the keys (the index finds items, reads go to the table), which keeps index
    writes small when the indexed items change often.
    """

    name: str
    partition_key: str
    sort_key: str | None = None
    projection: Literal["ALL", "KEYS_ONLY"] = "ALL"


@dataclass(frozen=True, slots=True)
class Table:
    """A DynamoDB table holding a materialized view or processor state (string keys)."""

    name: str
    description: str
    partition_key: str = "pk"
    sort_key: str | None = None
    ttl_attribute: str | None = None
    indexes: tuple[Index, ...] = ()
    role: Literal["view", "state", "control"] = "view"
    """`view`: a materialized view readers query (compared by `diff` and `audit`); `state`: a
    processor's own state; both exist once per version. `control`: the pipeline's own
    bookkeeping (the version registry), one table shared by every version."""
    bookkeeping: tuple[str, ...] = ()
    """Attributes that record how an item was processed (fences, item versions, TTLs,
    delivery receipts), not what the view says: `diff` and `audit` ignore them."""
    internal_partitions: tuple[str, ...] = ()
    """Partition keys of processor bookkeeping items kept in a view's table (not view rows)."""
    kind: ResourceKind = field(default=ResourceKind.TABLE, init=False)


@dataclass(frozen=True, slots=True)
class Bucket:
    """An S3 bucket (quarantine, on-failure records, archive)."""

    name: str
    description: str
    kind: ResourceKind = field(default=ResourceKind.BUCKET, init=False)


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    description: str
    kind: ResourceKind = field(default=ResourceKind.QUEUE, init=False)


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    description: str
    kind: ResourceKind = field(default=ResourceKind.TOPIC, init=False)


Resource = Stream | Table | Bucket | Queue | Topic


@dataclass(frozen=True, slots=True)
class Binding:
    """A resource handed to a function through one environment variable.

    `access` is what the function may do with it; the stacks grant exactly that.
    """

    env: str
    resource: str
    access: Literal["read", "write", "read_write"]


@dataclass(frozen=True, slots=True)
class EventSource:
    """The event source mapping of a processor, in Lambda's own terms.

    Defaults are production defaults, not Lambda's service defaults: partial batch responses,
    bisect, bounded retries and a maximum record age well below the stream retention.
    """

    stream: str
    starting_position: StartingPosition = "TRIM_HORIZON"
    starting_position_timestamp: float | None = None
    """Epoch seconds; required with AT_TIMESTAMP, refused otherwise."""
    batch_size: int = 100
    batching_window_s: int = 0
    parallelization_factor: int = 1
    bisect_on_error: bool = True
    max_retries: int = 5
    max_record_age_s: int = 3600
    report_batch_item_failures: bool = True
    tumbling_window_s: int = 0
    on_failure: str = "failures"
    filters: tuple[str, ...] = ()
    """Each filter is an event pattern as a JSON string, exactly as FilterCriteria holds it."""

    def validate(self) -> list[str]:
        """Range checks from the Lambda API reference; returns human-readable problems."""
        problems = []
        if (self.starting_position == "AT_TIMESTAMP") != (
            self.starting_position_timestamp is not None
        ):
            problems.append(
                "starting_position_timestamp is required with AT_TIMESTAMP and only with it"
            )
        if not 1 <= self.batch_size <= 10_000:
            problems.append(f"batch_size {self.batch_size} is outside 1..10000")
        if not 0 <= self.batching_window_s <= 300:
            problems.append(f"batching_window_s {self.batching_window_s} is outside 0..300")
        if not 1 <= self.parallelization_factor <= 10:
            problems.append(
                f"parallelization_factor {self.parallelization_factor} is outside 1..10"
            )
        if not (self.max_retries == -1 or 0 <= self.max_retries <= 10_000):
            problems.append(f"max_retries {self.max_retries} is outside -1 or 0..10000")
        if not (self.max_record_age_s == -1 or 60 <= self.max_record_age_s <= 604_800):
            problems.append(
                f"max_record_age_s {self.max_record_age_s} is outside -1 or 60..604800"
            )
        if not 0 <= self.tumbling_window_s <= 900:
            problems.append(f"tumbling_window_s {self.tumbling_window_s} is outside 0..900")
        if len(self.filters) > 5:
            problems.append(f"{len(self.filters)} filters; at most 5 are allowed")
        for pattern in self.filters:
            try:
                parsed = json.loads(pattern)
            except ValueError as exc:
                problems.append(f"filter {pattern!r} is not JSON: {exc}")
                continue
            if not isinstance(parsed, dict):
                problems.append(f"filter {pattern!r} is not a JSON object")
        return problems


class _HasHandler:
    """`handler` is `package.module.function` inside the Lambda asset."""

    __slots__ = ()
    handler: str

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def function(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True, slots=True)
class Tunables:
    """What a version of a processor may change: `replay --set PROCESSOR.NAME=VALUE`.

    The values a version records go to the function as one JSON object in `variable` (an
    optional setting of the function), and `check` (`module:function`, given the settings as a
    dict) returns them checked and normalised, keeping only what differs from the defaults, or
    raises ValueError naming what is wrong: the command line runs it before a replay starts,
    so a wrong value never reaches a function."""

    variable: str
    check: str


@dataclass(frozen=True, slots=True)
class Processor(_HasHandler):
    """One Lambda function consuming one or more streams through event source mappings."""

    name: str
    handler: str
    description: str
    sources: tuple[EventSource, ...]
    bindings: tuple[Binding, ...]
    memory_mb: int = 512
    timeout_s: int = 60
    reserved_concurrency: int | None = None
    replayable: bool = True
    """False for a processor whose effect leaves the pipeline (a notification to people):
    a replay must not repeat it, so a version being rebuilt runs without it."""
    tunables: Tunables | None = None
    """The settings a version may change (`replay --set`); None: none."""
    cost_model: str | None = None
    """`module:function(assumptions) -> cascata.plan.Model`: how the processor's work grows with
    its input, for `cascata plan`; None: the planner's generic model (1:1 outputs, one write per
    record on every table it writes)."""


@dataclass(frozen=True, slots=True)
class ScheduledFunction(_HasHandler):
    """A function run every `every_s` seconds (EventBridge Scheduler on AWS, the local
    runtime's clock locally), e.g. to close event-time windows of keys that went quiet."""

    name: str
    handler: str
    description: str
    every_s: int
    bindings: tuple[Binding, ...]
    memory_mb: int = 512
    timeout_s: int = 60
    reserved_concurrency: int | None = 1


@dataclass(frozen=True, slots=True)
class Route:
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    """API Gateway route path, parameters in braces: `/accounts/{id}`."""

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class ApiFunction(_HasHandler):
    """A function behind an HTTP API (API Gateway HTTP API with IAM authorization on AWS,
    the local runtime's HTTP server locally)."""

    name: str
    handler: str
    description: str
    routes: tuple[Route, ...]
    bindings: tuple[Binding, ...]
    throttle_rps: int = 100
    throttle_burst: int = 200
    memory_mb: int = 512
    timeout_s: int = 29
    reserved_concurrency: int | None = None


Function = Processor | ScheduledFunction | ApiFunction


@dataclass(frozen=True, slots=True)
class Archive:
    """A raw stream copied to S3 for good (Firehose on AWS, the local archiver locally), in the
    layout `cascata_runtime.archive` documents, so history outlives stream retention."""

    stream: str
    bucket: str
    handler: str = "cascata_runtime.archive.handler"
    """The record transformation that turns each record into an archive line."""
    buffer_interval_s: int = 60
    buffer_size_mib: int = 64
    """Firehose buffering hints (dynamic partitioning needs at least 64 MiB)."""


FIRST_VERSION = "v1"
_VERSION = re.compile(r"^v[1-9][0-9]{0,4}$")
ReplayFrom = Literal["stream", "archive"]


def check_version(version: str) -> str:
    """`version` if it is a version name (v1, v2, ... v99999), else ValueError saying so."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ValueError(f"version {version!r} is not a version name like v2 (v1 to v99999)")
    return version


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The whole dataflow. Resource names are short logical names; physical names derive."""

    app: str
    streams: tuple[Stream, ...]
    tables: tuple[Table, ...]
    buckets: tuple[Bucket, ...]
    queues: tuple[Queue, ...]
    topics: tuple[Topic, ...]
    processors: tuple[Processor, ...]
    scheduled: tuple[ScheduledFunction, ...] = ()
    apis: tuple[ApiFunction, ...] = ()
    archives: tuple[Archive, ...] = ()
    version: str = FIRST_VERSION
    """Which version of the views this pipeline writes. v1 is the deployed pipeline; others
    are built by replay (`for_version`)."""
    replay_from: ReplayFrom | None = None
    """None for the live pipeline; for a replay, where history comes from. From the archive,
    the origin streams are replay streams of the version's own, refilled from S3."""

    def for_version(self, version: str, *, replay_from: ReplayFrom = "stream") -> Pipeline:
        """The pipeline that rebuilds `version` of every view: the same processors and code,
        writing the version's own tables and derived streams, without the processors whose
        effects leave the pipeline, without APIs (readers follow the live pointer) and
        without archives (history is archived once)."""
        check_version(version)
        if version == FIRST_VERSION:
            raise ValueError(f"{FIRST_VERSION} is the deployed pipeline's version; "
                             "replay into a new version (v2, v3, ...)")
        if replay_from not in ("stream", "archive"):
            raise ValueError(f"replay_from must be stream or archive, got {replay_from!r}")
        return replace(
            self,
            version=version,
            replay_from=replay_from,
            # History is old by definition: a maximum record age would discard what is being
            # replayed (Lambda checks it before the first attempt too). Retries stay bounded.
            processors=tuple(
                replace(p, sources=tuple(replace(s, max_record_age_s=-1) for s in p.sources))
                for p in self.processors if p.replayable
            ),
            apis=(),
            archives=(),
        )

    def versioned(self, resource: str) -> bool:
        """Whether each version has its own copy of a resource (its name carries the version).

        Views, processor state and derived streams do; origin streams, buckets, queues, topics
        and control tables are shared. Replaying from the archive, the origin streams too are
        the version's own replay streams."""
        res = self.resource(resource)
        if isinstance(res, Table):
            return res.role != "control"
        if isinstance(res, Stream):
            return not res.origin or self.replay_from == "archive"
        return False

    def owns(self, resource: str) -> bool:
        """Whether this pipeline creates a resource (a version references the shared ones)."""
        return self.replay_from is None or self.versioned(resource)

    @property
    def views(self) -> tuple[Table, ...]:
        return tuple(t for t in self.tables if t.role == "view")

    @property
    def versioned_tables(self) -> tuple[Table, ...]:
        return tuple(t for t in self.tables if t.role != "control")

    @property
    def control_table(self) -> Table | None:
        """The version registry (the one `role="control"` table), which replay, versions,
        promote and the query functions' live pointer use; None when not declared."""
        return next((t for t in self.tables if t.role == "control"), None)

    @property
    def failures_bucket(self) -> str | None:
        """Where the event source mappings' on-failure records go (the first source's
        destination that is a bucket); the local runtime keeps its status report there."""
        buckets = {b.name for b in self.buckets}
        for proc in self.processors:
            for src in proc.sources:
                if src.on_failure in buckets:
                    return src.on_failure
        return self.buckets[0].name if self.buckets else None

    def outputs(self, processor: str) -> tuple[str, ...]:
        """The streams a processor writes (its bindings to declared streams with write
        access), in declaration order."""
        streams = {s.name for s in self.streams}
        return tuple(b.resource for b in self.function(processor).bindings
                     if b.resource in streams and b.access != "read")

    def bound(self, function: str, env: str) -> str | None:
        """The resource a function's binding `env` names, if it has that binding."""
        return next((b.resource for b in self.function(function).bindings if b.env == env),
                    None)

    @property
    def functions(self) -> tuple[Function, ...]:
        """Every Lambda function: stream processors, scheduled functions, API functions."""
        return (*self.processors, *self.scheduled, *self.apis)

    def function(self, name: str) -> Function:
        for fn in self.functions:
            if fn.name == name:
                return fn
        known = ", ".join(f.name for f in self.functions)
        raise KeyError(f"no function named {name!r}; declared: {known}")

    def resources(self) -> Mapping[str, Resource]:
        items: list[Resource] = [
            *self.streams,
            *self.tables,
            *self.buckets,
            *self.queues,
            *self.topics,
        ]
        return MappingProxyType({r.name: r for r in items})

    def resource(self, name: str) -> Resource:
        try:
            return self.resources()[name]
        except KeyError:
            raise KeyError(f"no resource named {name!r} in the pipeline") from None

    def processor(self, name: str) -> Processor:
        for proc in self.processors:
            if proc.name == name:
                return proc
        known = ", ".join(p.name for p in self.processors)
        raise KeyError(f"no processor named {name!r}; declared: {known}")

    def physical_name(
        self,
        resource: str,
        *,
        stage: str,
        account: str = LOCAL_ACCOUNT,
        region: str = LOCAL_REGION,
    ) -> str:
        """The AWS name of a declared resource or function in a stage.

        Buckets live in a global namespace, so their names carry the account and region.
        """
        suffix = "" if self.version == FIRST_VERSION else f"-{self.version}"
        if any(f.name == resource for f in self.functions):
            return f"{self.app}-{stage}-{resource}{suffix}"
        res = self.resource(resource)
        base = f"{self.app}-{stage}-{res.name}"
        if res.kind is ResourceKind.BUCKET:
            return f"{base}-{account}-{region}"
        return base + suffix if self.versioned(resource) else base

    def environment(
        self,
        processor: str,
        *,
        stage: str,
        account: str = LOCAL_ACCOUNT,
        region: str = LOCAL_REGION,
    ) -> dict[str, str]:
        """The environment variables a function's settings module reads, with their values."""
        fn = self.function(processor)
        env = {
            b.env: self.physical_name(b.resource, stage=stage, account=account, region=region)
            for b in fn.bindings
        }
        env["PIPELINE_STAGE"] = stage
        if isinstance(fn, Processor):
            origins = {
                # From the archive, the origin streams are the version's replay streams.
                self.physical_name(src.stream, stage=stage, account=account, region=region):
                    stream.origin_policy(replayed=self.replay_from == "archive")
                for src in fn.sources
                if isinstance(stream := self.resource(src.stream), Stream) and stream.origin
            }
            if origins:
                env[ORIGIN_STREAMS_ENV] = json.dumps(origins, sort_keys=True,
                                                     separators=(",", ":"))
        return env

    def validate(self) -> list[str]:
        """Every structural problem in the declaration, as sentences. Empty means sound."""
        problems: list[str] = []
        names = [r.name for r in self.resources().values()]
        declared: tuple[Resource, ...] = (
            *self.streams, *self.tables, *self.buckets, *self.queues, *self.topics
        )
        all_names = [r.name for r in declared]
        for dup in sorted({n for n in all_names if all_names.count(n) > 1}):
            problems.append(f"resource name {dup!r} is declared more than once")
        for name in names:
            if not _NAME.match(name):
                problems.append(
                    f"name {name!r} must be 2-40 characters of a-z, 0-9 and '-', "
                    "starting with a letter"
                )
        fn_names = [f.name for f in self.functions]
        for dup in sorted({n for n in fn_names if fn_names.count(n) > 1}):
            problems.append(f"function {dup!r} is declared more than once")
        for name in fn_names:
            if not _NAME.match(name):
                problems.append(
                    f"name {name!r} must be 2-40 characters of a-z, 0-9 and '-', "
                    "starting with a letter"
                )
        resources = self.resources()
        for proc in self.processors:
            if not proc.sources:
                problems.append(f"{proc.name}: a processor needs at least one source")
            streams = [src.stream for src in proc.sources]
            for dup in sorted({n for n in streams if streams.count(n) > 1}):
                problems.append(f"{proc.name}: stream {dup!r} is a source twice")
            for src in proc.sources:
                res = resources.get(src.stream)
                if res is None or res.kind is not ResourceKind.STREAM:
                    problems.append(f"{proc.name}: source {src.stream!r} is not a stream")
                dest = resources.get(src.on_failure)
                if dest is None or dest.kind not in (
                    ResourceKind.BUCKET,
                    ResourceKind.QUEUE,
                    ResourceKind.TOPIC,
                ):
                    problems.append(
                        f"{proc.name}: on_failure {src.on_failure!r} is not a bucket, "
                        "queue or topic"
                    )
                problems.extend(f"{proc.name}: {p}" for p in src.validate())
                if src.parallelization_factor > 1 and self.outputs(proc.name):
                    problems.append(
                        f"{proc.name}: parallelization_factor > 1 on {src.stream!r} and it "
                        "emits events: concurrent lanes of one shard break the low-water "
                        "marks its outputs carry (cascata_runtime.lineage)"
                    )
                if isinstance(res, Stream) and res.origin and not any(
                    b.env == DEDUPE_TABLE_ENV for b in proc.bindings
                ):
                    problems.append(
                        f"{proc.name}: reads origin stream {src.stream!r} without a "
                        f"{DEDUPE_TABLE_ENV} binding (its duplicate gate)"
                    )
                for binding in proc.bindings:
                    if binding.resource == src.stream and binding.access != "read":
                        problems.append(
                            f"{proc.name}: writes to its own source stream {binding.resource!r}"
                        )
            if proc.tunables is not None:
                if not _ENV_NAME.match(proc.tunables.variable) or proc.tunables.variable in {
                        b.env for b in proc.bindings}:
                    problems.append(f"{proc.name}: tunables variable "
                                    f"{proc.tunables.variable!r} must be an environment name "
                                    "no binding uses")
                if not _HOOK.match(proc.tunables.check):
                    problems.append(f"{proc.name}: tunables check {proc.tunables.check!r} is "
                                    "not module:function")
            if proc.cost_model is not None and not _HOOK.match(proc.cost_model):
                problems.append(f"{proc.name}: cost_model {proc.cost_model!r} is not "
                                "module:function")
        for sched in self.scheduled:
            if not 60 <= sched.every_s <= 86_400 or sched.every_s % 60:
                problems.append(
                    f"{sched.name}: every_s {sched.every_s} must be whole minutes, 1 min to 1 day"
                )
        for api in self.apis:
            keys = [r.key for r in api.routes]
            if not keys:
                problems.append(f"{api.name}: an API function needs at least one route")
            for dup in sorted({k for k in keys if keys.count(k) > 1}):
                problems.append(f"{api.name}: route {dup!r} is declared twice")
            for route in api.routes:
                if not route.path.startswith("/"):
                    problems.append(f"{api.name}: route path {route.path!r} must start with /")
        for stream_decl in self.streams:
            if stream_decl.origin:
                if not 60 <= stream_decl.dedupe_horizon_s <= 7 * 86_400:
                    problems.append(f"stream {stream_decl.name!r}: dedupe_horizon_s must be "
                                    "from 60 s to 7 days")
                if not 0 <= stream_decl.max_future_skew_s <= 86_400:
                    problems.append(f"stream {stream_decl.name!r}: max_future_skew_s must be "
                                    "from 0 to 1 day")
                if not 0 <= stream_decl.share_of_rate <= 1000:
                    problems.append(f"stream {stream_decl.name!r}: share_of_rate must be from "
                                    "0 to 1000")
                if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
                                stream_decl.earliest):
                    problems.append(f"stream {stream_decl.name!r}: earliest must be RFC 3339 "
                                    "UTC like 2000-01-01T00:00:00Z")
        for archive in self.archives:
            stream = resources.get(archive.stream)
            if not isinstance(stream, Stream) or not stream.origin:
                problems.append(f"archive of {archive.stream!r}: not an origin stream")
            bucket = resources.get(archive.bucket)
            if bucket is None or bucket.kind is not ResourceKind.BUCKET:
                problems.append(f"archive of {archive.stream!r}: {archive.bucket!r} is not a "
                                "bucket")
            if not 60 <= archive.buffer_interval_s <= 900:
                problems.append(f"archive of {archive.stream!r}: buffer_interval_s is outside "
                                "60..900")
            if not 64 <= archive.buffer_size_mib <= 128:
                problems.append(f"archive of {archive.stream!r}: buffer_size_mib is outside "
                                "64..128 (dynamic partitioning needs at least 64)")
        controls = [t.name for t in self.tables if t.role == "control"]
        if len(controls) > 1:
            problems.append(f"more than one control table: {', '.join(controls)}")
        all_routes = [r.key for a in self.apis for r in a.routes]
        for dup in sorted({k for k in all_routes if all_routes.count(k) > 1}):
            problems.append(f"route {dup!r} belongs to more than one function")
        for fn in self.functions:
            envs = [b.env for b in fn.bindings]
            for dup in sorted({e for e in envs if envs.count(e) > 1}):
                problems.append(f"{fn.name}: environment variable {dup} is bound twice")
            for binding in fn.bindings:
                if not _ENV_NAME.match(binding.env):
                    problems.append(f"{fn.name}: {binding.env!r} is not an environment name")
                if binding.resource not in resources:
                    problems.append(
                        f"{fn.name}: binding {binding.env} names unknown resource "
                        f"{binding.resource!r}"
                    )
        return problems

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON view of the declaration (for `cascata plan` and documentation)."""
        return {
            "app": self.app,
            "resources": [
                {**asdict(r), "kind": r.kind.value} for r in self.resources().values()
            ],
            "functions": [{"kind": type(f).__name__, **asdict(f)} for f in self.functions],
            "archives": [asdict(a) for a in self.archives],
            "version": self.version,
        }
