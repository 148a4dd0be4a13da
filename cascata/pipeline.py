"""The payments pipeline, declared once as plain data.

This module is the single source of truth for the dataflow: streams, tables, buckets, queues,
topics and the processors that connect them, with every event source mapping setting. The CDK
stacks (`stacks/`) render it for AWS and the local runtime (`cascata.local`) renders it on the
embedded emulator; a test asserts that the synthesized template agrees with it. It must never
import aws_cdk or boto3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Literal

APP_NAME = "cascata"
LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "us-east-1"

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")

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
    kind: ResourceKind = field(default=ResourceKind.STREAM, init=False)


@dataclass(frozen=True, slots=True)
class Table:
    """A DynamoDB table holding a materialized view or processor state."""

    name: str
    description: str
    partition_key: str = "pk"
    sort_key: str | None = None
    ttl_attribute: str | None = None
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


@dataclass(frozen=True, slots=True)
class Processor:
    """One Lambda function: consumes `source`, emits to streams, writes views."""

    name: str
    handler: str
    description: str
    source: EventSource
    bindings: tuple[Binding, ...]
    memory_mb: int = 512
    timeout_s: int = 60
    reserved_concurrency: int | None = None

    @property
    def outputs(self) -> tuple[str, ...]:
        """Streams this processor writes to (by binding), in declaration order."""
        return tuple(b.resource for b in self.bindings if b.env.endswith("_STREAM"))

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def function(self) -> str:
        return self.handler.rsplit(".", 1)[1]


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
        if any(p.name == resource for p in self.processors):
            return f"{self.app}-{stage}-{resource}"
        res = self.resource(resource)
        base = f"{self.app}-{stage}-{res.name}"
        if res.kind is ResourceKind.BUCKET:
            return f"{base}-{account}-{region}"
        return base

    def environment(
        self,
        processor: str,
        *,
        stage: str,
        account: str = LOCAL_ACCOUNT,
        region: str = LOCAL_REGION,
    ) -> dict[str, str]:
        """The environment variables a processor's settings module reads, with their values."""
        proc = self.processor(processor)
        env = {
            b.env: self.physical_name(b.resource, stage=stage, account=account, region=region)
            for b in proc.bindings
        }
        env["PIPELINE_STAGE"] = stage
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
        for name in [*names, *(p.name for p in self.processors)]:
            if not _NAME.match(name):
                problems.append(
                    f"name {name!r} must be 2-40 characters of a-z, 0-9 and '-', "
                    "starting with a letter"
                )
        proc_names = [p.name for p in self.processors]
        for dup in sorted({n for n in proc_names if proc_names.count(n) > 1}):
            problems.append(f"processor {dup!r} is declared more than once")
        resources = self.resources()
        for proc in self.processors:
            src = resources.get(proc.source.stream)
            if src is None or src.kind is not ResourceKind.STREAM:
                problems.append(f"{proc.name}: source {proc.source.stream!r} is not a stream")
            dest = resources.get(proc.source.on_failure)
            if dest is None or dest.kind not in (
                ResourceKind.BUCKET,
                ResourceKind.QUEUE,
                ResourceKind.TOPIC,
            ):
                problems.append(
                    f"{proc.name}: on_failure {proc.source.on_failure!r} is not a bucket, "
                    "queue or topic"
                )
            problems.extend(f"{proc.name}: {p}" for p in proc.source.validate())
            envs = [b.env for b in proc.bindings]
            for dup in sorted({e for e in envs if envs.count(e) > 1}):
                problems.append(f"{proc.name}: environment variable {dup} is bound twice")
            for binding in proc.bindings:
                if not _ENV_NAME.match(binding.env):
                    problems.append(f"{proc.name}: {binding.env!r} is not an environment name")
                if binding.resource not in resources:
                    problems.append(
                        f"{proc.name}: binding {binding.env} names unknown resource "
                        f"{binding.resource!r}"
                    )
                if binding.resource == proc.source.stream and binding.access != "read":
                    problems.append(
                        f"{proc.name}: writes to its own source stream {binding.resource!r}"
                    )
        return problems

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON view of the declaration (for `cascata plan` and documentation)."""
        def res(r: Resource) -> dict[str, Any]:
            out = {k: getattr(r, k) for k in r.__dataclass_fields__ if k != "kind"}
            out["kind"] = r.kind.value
            return out

        return {
            "app": self.app,
            "resources": [res(r) for r in self.resources().values()],
            "processors": [
                {
                    "name": p.name,
                    "handler": p.handler,
                    "description": p.description,
                    "memory_mb": p.memory_mb,
                    "timeout_s": p.timeout_s,
                    "reserved_concurrency": p.reserved_concurrency,
                    "source": {
                        k: getattr(p.source, k) for k in p.source.__dataclass_fields__
                    },
                    "bindings": [
                        {"env": b.env, "resource": b.resource, "access": b.access}
                        for b in p.bindings
                    ],
                }
                for p in self.processors
            ],
        }


def _quarantine() -> Binding:
    return Binding(env="QUARANTINE_BUCKET", resource="quarantine", access="write")


PIPELINE = Pipeline(
    app=APP_NAME,
    streams=(
        Stream(
            name="payments-raw",
            partition_key="payer",
            description="Payments as producers send them, unvalidated.",
        ),
        Stream(
            name="payments-validated",
            partition_key="payer",
            description="Payments that passed schema and business checks, normalised.",
        ),
        Stream(
            name="ledger-entries",
            partition_key="account",
            description="Double-entry postings, one debit and one credit per payment, "
            "re-keyed by account.",
        ),
    ),
    tables=(
        Table(
            name="balances",
            description="Balance per account and currency, materialized from ledger-entries.",
            partition_key="account_id",
        ),
    ),
    buckets=(
        Bucket(
            name="quarantine",
            description="Invalid events: the original record, the reason, the source position.",
        ),
        Bucket(
            name="failures",
            description="On-failure records of event source mappings, with the failed payload.",
        ),
    ),
    queues=(),
    topics=(),
    processors=(
        Processor(
            name="validate",
            handler="payments.handlers.validate.handler",
            description="Schema and business checks; valid payments on, invalid to quarantine.",
            source=EventSource(stream="payments-raw", batch_size=200),
            bindings=(
                Binding(env="VALIDATED_STREAM", resource="payments-validated", access="write"),
                _quarantine(),
            ),
        ),
        Processor(
            name="postings",
            handler="payments.handlers.postings.handler",
            description="Double entry: a debit for the payer and a credit for the payee, "
            "re-keyed by account.",
            source=EventSource(stream="payments-validated", batch_size=200),
            bindings=(
                Binding(env="LEDGER_STREAM", resource="ledger-entries", access="write"),
                _quarantine(),
            ),
        ),
        Processor(
            name="balances",
            handler="payments.handlers.balances.handler",
            description="Materializes the balance of every account, effectively once.",
            source=EventSource(
                stream="ledger-entries", batch_size=500, batching_window_s=1,
                parallelization_factor=2,
            ),
            bindings=(
                Binding(env="BALANCES_TABLE", resource="balances", access="read_write"),
                _quarantine(),
            ),
        ),
    ),
)
