"""The functions under test: every declared processor and scheduled function whose handler
module imports, and the baseline's (`benchmarks/baseline`, declared with the same types); how
to build each with chosen clients, and Kinesis events in Lambda's exact shape, with AWS-length
sequence numbers.

A function whose handler module does not exist yet (or does not import) is left out and
named, so the bench picks up new functions by itself as soon as their handlers land.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascata.aws_env import arn
from cascata.local.clock import SystemClock
from cascata.local.emulator import Aws
from cascata.local.esm_events import KinesisFormat, LambdaContext
from cascata.local.esm_sources import SourceRecord
from cascata.local.functions import ClientWrapper, Function, build_function, quiet_powertools
from cascata.pipeline import Pipeline, Processor

STAGE = "bench"
ROOT = Path(__file__).resolve().parents[2]
BASELINE = "baseline"
AWS_SEQUENCE_DIGITS = 56
"""Kinesis sequence numbers on AWS are 56-digit decimal strings (moto hands out short ones)."""


@dataclass(frozen=True, slots=True)
class Available:
    pipeline: Pipeline
    """The declaration restricted to the processors that can run."""
    skipped: Mapping[str, str]
    """Processor -> why it was left out."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pipeline.processors)


def available(pipeline: Pipeline) -> Available:
    """Processors whose handler module imports and builds (settings from the declared
    environment, clients, handler); creating boto3 clients sends nothing."""
    quiet_powertools()
    baseline_path()
    nowhere = Aws(endpoint_url="http://127.0.0.1:9")
    runnable: list[Processor] = []
    skipped: dict[str, str] = {}
    for proc in pipeline.processors:
        try:
            module = importlib.import_module(proc.module)
            missing = [a for a in ("SETTINGS", "dependencies", "make_handler")
                       if not hasattr(module, a)]
            if missing:
                raise ImportError(f"{proc.module} lacks {', '.join(missing)}")
            build_processor(pipeline, proc.name, nowhere)
        except Exception as exc:  # noqa: BLE001 - any broken module is skipped, with its reason
            skipped[proc.name] = f"{type(exc).__name__}: {exc}"
            continue
        runnable.append(proc)
    scheduled = []
    for sched in pipeline.scheduled:
        try:
            build_processor(pipeline, sched.name, nowhere)
        except Exception as exc:  # noqa: BLE001 - as above
            skipped[sched.name] = f"{type(exc).__name__}: {exc}"
            continue
        scheduled.append(sched)
    return Available(dataclasses.replace(pipeline, processors=tuple(runnable),
                                         scheduled=tuple(scheduled)), skipped)


def only(pipeline: Pipeline, names: Iterable[str]) -> Pipeline:
    kept = set(names)
    return dataclasses.replace(
        pipeline, processors=tuple(p for p in pipeline.processors if p.name in kept))


def without(pipeline: Pipeline, names: Iterable[str]) -> Pipeline:
    gone = set(names)
    return dataclasses.replace(
        pipeline, processors=tuple(p for p in pipeline.processors if p.name not in gone),
        scheduled=tuple(s for s in pipeline.scheduled if s.name not in gone))


def order(pipeline: Pipeline) -> list[Processor]:
    """Processors upstream first: one runs once every processor writing its sources has run."""
    writers: dict[str, set[str]] = {}
    for proc in pipeline.processors:
        for stream in pipeline.outputs(proc.name):
            writers.setdefault(stream, set()).add(proc.name)
    done: set[str] = set()
    ordered: list[Processor] = []
    pending = list(pipeline.processors)
    while pending:
        ready = [p for p in pending
                 if all(writers.get(s.stream, set()) - {p.name} <= done for s in p.sources)]
        chosen = ready[0] if ready else pending[0]  # a cycle runs in declaration order
        ordered.append(chosen)
        done.add(chosen.name)
        pending.remove(chosen)
    return ordered


def build_processor(
    pipeline: Pipeline, name: str, aws: Aws, wrap: ClientWrapper | None = None
) -> Function:
    return build(pipeline, name, aws, wrap)


def label(side: str, name: str) -> str:
    """How a function is named in results: cascata's by name, the baseline's `baseline/name`."""
    return name if side == "cascata" else f"{side}/{name}"


def build(
    pipeline: Pipeline,
    name: str,
    aws: Aws,
    wrap: ClientWrapper | None = None,
    now: Callable[[], float] | None = None,
) -> Function:
    """Any declared function (processor or scheduled) of cascata's pipeline or the baseline's."""
    baseline_path()
    return build_function(pipeline, name, aws=aws, stage=STAGE, wrap=wrap, now=now)


def baseline_path() -> None:
    """The baseline's modules live in `benchmarks/` at the repository root."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def baseline_pipeline() -> Pipeline:
    """The baseline's declaration (`benchmarks.baseline.pipeline`)."""
    baseline_path()
    module = importlib.import_module("benchmarks.baseline.pipeline")
    found: Pipeline = module.BASELINE_PIPELINE
    return found


# Records and events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as it sits on a shard: what Lambda would deliver."""

    shard: str
    sequence: int
    partition_key: str
    data: bytes
    arrival: float

    @property
    def billable_kb(self) -> int:
        return max(1, -(-(len(self.data) + len(self.partition_key.encode())) // 1024))


def read_stream(kinesis: Any, stream: str) -> dict[str, list[StoredRecord]]:
    """Every record of every shard, in order, shard by shard."""
    out: dict[str, list[StoredRecord]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        shard_id = shard["ShardId"]
        records: list[StoredRecord] = []
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend(
                StoredRecord(shard_id, int(r["SequenceNumber"]), r["PartitionKey"], r["Data"],
                             r["ApproximateArrivalTimestamp"].timestamp())
                for r in page["Records"]
            )
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
        out[shard_id] = records
    return out


def batches(
    records: Mapping[str, Sequence[StoredRecord]], size: int
) -> Iterator[list[StoredRecord]]:
    """Consecutive batches of at most `size` records, each from one shard (as Lambda sends)."""
    for shard_records in records.values():
        for start in range(0, len(shard_records), size):
            yield list(shard_records[start : start + size])


def aws_sequence(shard: str, sequence: int) -> int:
    """An AWS-length (56-digit) sequence number for moto's short one: `49`, the shard's index
    in 6 digits, the short number in 48. Increasing within a shard, as on AWS, so fences and
    orderings built on them behave the same; and whatever a function stores of them (fences,
    causation, quarantine keys) is as large as it would be on AWS."""
    index = int(shard.rsplit("-", 1)[-1]) if shard.rsplit("-", 1)[-1].isdigit() else 0
    return int(f"49{index:06d}{sequence:048d}")


class EventFactory:
    """Kinesis events exactly as the local event source mapping builds them (reference 7.1),
    with AWS-length sequence numbers (`aws_sequence`)."""

    def __init__(self, aws: Aws) -> None:
        self._aws = aws

    def event(self, stream: str, records: Sequence[StoredRecord]) -> dict[str, Any]:
        stream_arn = arn("kinesis", f"stream/{stream}", region=self._aws.region,
                         account=self._aws.account)
        fmt = KinesisFormat(stream_arn=stream_arn, region=self._aws.region,
                            role_arn=f"arn:{self._aws.partition}:iam::{self._aws.account}:"
                            f"role/{STAGE}-bench")
        shard = records[0].shard if records else "shardId-000000000000"
        return fmt.event(shard, [
            fmt.record(SourceRecord(position=aws_sequence(r.shard, r.sequence),
                                    partition_key=r.partition_key,
                                    arrival=r.arrival,
                                    data=base64.b64encode(r.data).decode()), r.shard)
            for r in records
        ])

    def context(self, function: str, memory_mb: int, timeout_s: float = 60.0) -> LambdaContext:
        name = f"cascata-{STAGE}-{function}"
        return LambdaContext(
            function_name=name,
            function_arn=arn("lambda", f"function:{name}", region=self._aws.region,
                             account=self._aws.account),
            memory_limit_in_mb=memory_mb,
            aws_request_id=str(uuid.uuid4()),
            log_stream_name="2026/11/25/[$LATEST]bench",
            clock=SystemClock(),
            timeout_s=timeout_s,
        )


Invoke = Callable[[Mapping[str, Any], Any], Any]
