"""The declared pipeline, running locally: every processor behind an emulated event source mapping.

`LocalRuntime` provisions the declaration on an `Aws` (the embedded emulator or an endpoint),
builds each function with its declared environment and injected clients, and creates one event
source mapping per processor from the same `EventSource` settings the CDK stacks render.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from cascata.aws_env import arn
from cascata.local.archiver import Archiver
from cascata.local.chaos import ChaosKinesis, ChaosSettings
from cascata.local.clock import SystemClock
from cascata.local.emulator import STREAM_WRITES, Aws, Provisioned, provision
from cascata.local.esm import (
    DestinationWriter,
    EventSourceMapping,
    EventSourceMappingEngine,
    Faults,
    KafkaSource,
    KinesisApiSource,
    KinesisBackendSource,
    MappingConfig,
)
from cascata.local.esm_events import LambdaContext
from cascata.local.esm_model import WriteSignal
from cascata.local.esm_sources import backlog_of
from cascata.local.functions import Function, build_function
from cascata.local.metering import FlowMeter, MeteredClient, Resolver, physical_resolver
from cascata.pipeline import Pipeline, ResourceKind

Observer = Callable[[str, Mapping[str, Any], Any, float], None]
"""(processor, event, response, finished_at): called after each invocation that returned."""
SourceWrapper = Callable[[str, str, Any], Any]
"""(processor, declared stream, source) -> the source its mapping reads (a replay bounds it)."""
ARCHIVER = "archive"
"""Mappings of the local archiver are named `archive/<stream>`."""
BROKERS = ("kinesis", "msk")
"""What carries the streams locally: the emulator's Kinesis, or a Kafka broker on loopback."""


STATUS_KEY = "cascata/local-runtime/status.json"
"""Where a running local runtime keeps its mappings' checkpoints (in the failures bucket)."""


def _on_kafka(processor: str, config: MappingConfig) -> MappingConfig:
    """A declared source as the stacks render it on MSK: Kafka scales with partitions, so a
    parallelization factor is dropped; a tumbling window would change what the handler
    computes, so it is refused."""
    if config.tumbling_window_in_seconds:
        raise ValueError(f"{processor}: Kafka mappings have no tumbling windows; aggregate "
                         "windows in the processor or keep this processor on Kinesis")
    return replace(config, parallelization_factor=1)


def mapping_key(processor: str, stream: str) -> str:
    """Mappings are named `processor/stream`: a processor may read several streams."""
    return f"{processor}/{stream}"


class WallClock:
    """Wall-clock time that the local runtime can move forward (never back) for its functions:
    "the scheduler runs an hour later" without waiting an hour."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds


@dataclass
class LocalRuntime:
    pipeline: Pipeline
    aws: Aws
    stage: str = "local"
    chaos: ChaosSettings | None = None
    shards: int = 2
    observer: Observer | None = None
    poll_interval_s: float = 0.05
    provisioned: Provisioned | None = None
    engine: EventSourceMappingEngine | None = None
    mappings: dict[str, EventSourceMapping] = field(default_factory=dict)
    scheduled: dict[str, Function] = field(default_factory=dict)
    apis: dict[str, Function] = field(default_factory=dict)
    chaos_clients: list[Any] = field(default_factory=list)
    """`ChaosKinesis` clients, or on Kafka `ChaosProducer`s: their `counters`."""
    clock: WallClock = field(default_factory=WallClock)
    environment: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Function name -> variables on top of the declared environment (a version's settings)."""
    source_wrapper: SourceWrapper | None = None
    batching_windows: bool = True
    """False: batches take what is there instead of waiting to fill (a replay, where history
    is all there and waiting only slows it)."""
    archivers: dict[str, Archiver] = field(default_factory=dict)
    flows: FlowMeter = field(default_factory=FlowMeter)
    """What each function wrote to each declared resource (the edges of the topology)."""
    broker: str = "kinesis"
    """`msk`: every declared stream is a topic (`shards` partitions) on `kafka`, a Kafka
    protocol broker on loopback; the functions produce to it and the mappings read it as
    Lambda's Kafka pollers do. The declared archives are not run (Firehose reads Kinesis)."""
    kafka: Any = None
    """The `KafkaBroker` of an MSK run (started by `start()`), or a `KafkaClient` of the one
    at `kafka_bootstrap_servers`."""
    kafka_bootstrap_servers: str | None = None
    """An MSK run on brokers already running (another process's `up --broker msk`) instead of
    its own; topics it lacks are created with the brokers' default partition count."""
    _resolve: Resolver = field(init=False, repr=False)
    _producers: Any = field(default=None, init=False, repr=False)
    _admin: Any = field(default=None, init=False, repr=False)

    @property
    def on_kafka(self) -> bool:
        return self.broker == "msk"

    def start(self) -> LocalRuntime:
        if self.broker not in BROKERS:
            raise ValueError(f"broker must be one of {', '.join(BROKERS)}, not {self.broker!r}")
        self.provisioned = provision(self.pipeline, self.aws, stage=self.stage,
                                     shards=self.shards, kinesis_streams=not self.on_kafka)
        self._resolve = physical_resolver(self.provisioned.names)
        wake: WriteSignal | None = STREAM_WRITES if self.aws.embedded else None
        if self.on_kafka:
            wake = self._start_kafka()
        faults = None
        if self.chaos is not None:
            faults = Faults(crash_rate=self.chaos.crash_rate,
                            throttle_rate=self.chaos.throttle_rate, seed=self.chaos.seed)
        self.engine = EventSourceMappingEngine(
            region=self.aws.region,
            account=self.aws.account,
            destinations=DestinationWriter(client_factory=self.aws.client),
            faults=faults,
            seed=self.chaos.seed if self.chaos else 0,
            poll_interval=self.poll_interval_s,
            # Throttled invocations are retried after this pause (Lambda backs off too).
            throttle_backoff_s=0.05,
            keep_invocations=False,
            # Idle lanes wake on every write to the embedded emulator's streams (or, on
            # Kafka, on every flush of the functions' and the producers' messages).
            wake=wake,
        )
        for salt, proc in enumerate(self.pipeline.processors):
            function = self._function(proc.name, salt)
            physical = self.pipeline.physical_name(proc.name, stage=self.stage)
            for position, src in enumerate(proc.sources):
                # One consumer group per Kafka mapping, as the stacks declare them.
                source = self._source(src.stream, group=physical if position == 0
                                      else f"{physical}-{src.stream}")
                if self.source_wrapper is not None:
                    source = self.source_wrapper(proc.name, src.stream, source)
                config = MappingConfig.from_event_source(
                    src, on_failure_arn=self._arn(src.on_failure)
                )
                if not self.batching_windows:
                    config = replace(config, maximum_batching_window_in_seconds=None)
                if self.kafka is not None:
                    config = _on_kafka(proc.name, config)
                self.mappings[mapping_key(proc.name, src.stream)] = self.engine.create_mapping(
                    function=function,
                    function_name=self.pipeline.physical_name(proc.name, stage=self.stage),
                    source=source,
                    config=config,
                    memory_mb=proc.memory_mb,
                    timeout_s=proc.timeout_s,
                )
        for archive in self.pipeline.archives if not self.on_kafka else ():
            archiver = Archiver(self._metered(f"{ARCHIVER}/{archive.stream}", "s3",
                                              self.aws.function_client("s3")),
                                self.name(archive.bucket), archive.stream)
            self.archivers[archive.stream] = archiver
            self.mappings[mapping_key(ARCHIVER, archive.stream)] = self.engine.create_mapping(
                function=archiver,
                function_name=f"{self.pipeline.physical_name(archive.stream, stage=self.stage)}"
                "-archive",
                source=self._source(archive.stream),
                config=MappingConfig(batch_size=500, maximum_batching_window_in_seconds=1.0),
            )
        for sched in self.pipeline.scheduled:
            self.scheduled[sched.name] = build_function(
                self.pipeline, sched.name, aws=self.aws, stage=self.stage, now=self.clock.now,
                environment=self.environment.get(sched.name),
                wrap=partial(self._metered, sched.name),
                kafka_producer=self._kafka_producer(sched.name), kafka_admin=self._admin,
            )
        for api in self.pipeline.apis:
            self.apis[api.name] = build_function(
                self.pipeline, api.name, aws=self.aws, stage=self.stage,
                wrap=partial(self._metered, api.name),
                kafka_producer=self._kafka_producer(api.name), kafka_admin=self._admin,
            )
        return self

    def _start_kafka(self) -> WriteSignal:
        """Start the loopback broker, create a topic per declared stream, and the clients the
        functions get: producers (one per thread) and an admin client."""
        from cascata.local.kafka_broker import BrokerUnavailableError, KafkaBroker, KafkaClient

        try:
            from confluent_kafka.admin import AdminClient
        except ImportError as exc:
            raise BrokerUnavailableError("--broker msk needs the Kafka client confluent-kafka, "
                                         "which is not installed (`make setup` installs it)"
                                         ) from exc

        from cascata.local.kafka_runtime import ThreadProducers
        from cascata_runtime.kafka_sink import connection_config, producer_settings

        signal = WriteSignal()
        cluster = f"{self.pipeline.app}-{self.stage}"
        region, account = self.aws.region, self.aws.account
        self.kafka = (
            KafkaClient(self.kafka_bootstrap_servers, cluster_name=cluster, region=region,
                        account=account, signal=signal)
            if self.kafka_bootstrap_servers else
            KafkaBroker(cluster_name=cluster, region=region, account=account, signal=signal))
        for stream in self.pipeline.streams:
            self.kafka.create_topic(self.name(stream.name), self.shards)
        connection = connection_config(self.kafka.bootstrap_servers, region=self.aws.region,
                                       iam=False)
        connection["log_level"] = 0
        self._producers = ThreadProducers({**connection, **producer_settings()},
                                          signal=signal)
        self._admin = AdminClient(connection)
        return signal

    def kafka_sink(self) -> Any:
        """On Kafka, a sink that writes topics by their physical names on this runtime's broker
        (what a producer outside the functions uses); None on Kinesis."""
        from cascata_runtime.kafka_sink import KafkaSink

        return None if self._producers is None else KafkaSink(self._producers)

    def stream_records(self, name: str) -> list[bytes]:
        """Every record's data so far on a stream (by physical name), partition by partition
        (or shard by shard)."""
        from cascata.local.objects import read_stream

        if self.kafka is None:
            return list(read_stream(self.aws.reading_client("kinesis"), name))
        out: list[bytes] = []
        for partition in range(self.kafka.partition_count(name)):
            offset = self.kafka.start_offset(name, partition)
            end = self.kafka.end_offset(name, partition)
            while offset < end:
                batch = self.kafka.read(name, partition, offset, 5000)
                if not batch:
                    break
                out.extend(m.value or b"" for m in batch)
                offset = batch[-1].offset + 1
        return out

    def _source(self, stream: str, *, group: str | None = None) -> Any:
        name = self.name(stream)
        if self.kafka is not None:
            return KafkaSource(self.kafka, name, consumer_group_id=group)
        if self.aws.embedded:
            return KinesisBackendSource(name, account=self.aws.account, region=self.aws.region)
        return KinesisApiSource(self.aws.client("kinesis"), stream_name=name)

    def routes(self) -> dict[str, Function]:
        """`METHOD /path` -> the API function serving it, for the local HTTP front."""
        return {
            route.key: self.apis[api.name] for api in self.pipeline.apis for route in api.routes
        }

    def context(self, name: str) -> LambdaContext:
        """A fresh Lambda context for one invocation of a declared function."""
        fn = self.pipeline.function(name)
        physical = self.pipeline.physical_name(name, stage=self.stage)
        return LambdaContext(
            function_name=physical,
            function_arn=arn("lambda", f"function:{physical}", region=self.aws.region,
                             account=self.aws.account),
            memory_limit_in_mb=fn.memory_mb,
            aws_request_id=str(uuid.uuid4()),
            log_stream_name=f"local/[$LATEST]{name}",
            clock=SystemClock(),
            timeout_s=fn.timeout_s,
        )

    def route_context(self, route_key: str) -> LambdaContext:
        for api in self.pipeline.apis:
            if any(r.key == route_key for r in api.routes):
                return self.context(api.name)
        return self.context(self.pipeline.apis[0].name)

    def run_scheduled(self, name: str, *, now: float | None = None) -> Any:
        """Invoke a scheduled function as the scheduler does, with a Scheduled Event."""
        when = self.clock.now() if now is None else now
        physical = self.pipeline.physical_name(name, stage=self.stage)
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "account": self.aws.account,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
            "region": self.aws.region,
            "resources": [arn("scheduler", f"schedule/default/{physical}",
                              region=self.aws.region, account=self.aws.account)],
            "detail": {},
        }
        context = self.context(name)
        return self.scheduled[name](event, context)

    def checkpoint_report(self) -> dict[str, Any]:
        """Every mapping's checkpoints and counters, and what each function wrote to each
        resource, with per-second rates over the last few seconds: what `cascata status` and
        the console read."""
        mappings: dict[str, Any] = {}
        consumers = [(proc.name, src.stream) for proc in self.pipeline.processors
                     for src in proc.sources]
        consumers += [(ARCHIVER, archive.stream) for archive in self.pipeline.archives
                      if mapping_key(ARCHIVER, archive.stream) in self.mappings]
        totals: dict[tuple[str, str], int] = {}
        for name, stream in consumers:
            key = mapping_key(name, stream)
            mapping = self.mappings[key]
            stats = mapping.stats
            totals[(stream, key)] = stats.records_in
            mappings[key] = {
                "processor": name,
                "stream": stream,
                "physical_stream": self.name(stream),
                "uuid": mapping.uuid,
                "checkpoints": {k: str(v) for k, v in mapping.checkpoints.items()},
                "invocations": stats.invocations,
                "records_in": stats.records_in,
                "errors": stats.function_errors,
                "partial_failures": stats.partial_failures,
                "retries": stats.retries,
                "throttles": stats.throttles,
                "on_failure_records": stats.on_failure_records,
                "updated_at": time.time(),
            }
            if self.kafka is not None:
                # Another process cannot read the loopback broker's partitions as it reads
                # the emulator's shards: the backlog is reported with the counters.
                behind, age_ms = backlog_of(KafkaSource(self.kafka, self.name(stream)),
                                            mapping.checkpoints)
                mappings[key]["backlog"] = {"records": behind, "age_ms": age_ms}
        written = self.flows.totals()
        totals.update(written)
        rates = self.flows.rates(totals)
        for key, mapping_report in mappings.items():
            mapping_report["records_in_per_s"] = round(rates[(mapping_report["stream"], key)], 2)
        flows = [{"function": function, "resource": resource, "records": count,
                  "per_s": round(rates[(function, resource)], 2)}
                 for (function, resource), count in sorted(written.items())]
        return {"mappings": mappings, "flows": flows, "updated_at": time.time(),
                "broker": self.broker,
                "kafka_bootstrap_servers": None if self.kafka is None
                else self.kafka.bootstrap_servers}

    def publish_checkpoints(self) -> None:
        """Keep the checkpoint report in the emulator, where `cascata status` can read it."""
        declared = self.pipeline.failures_bucket
        if declared is None:
            return
        s3 = self.aws.client("s3")
        bucket = self.name(declared)
        s3.put_object(Bucket=bucket, Key=STATUS_KEY,
                      Body=json.dumps(self.checkpoint_report()).encode(),
                      ContentType="application/json")

    def name(self, declared: str) -> str:
        assert self.provisioned is not None, "start() first"
        return self.provisioned.names[declared]

    def _arn(self, declared: str) -> str:
        kind = self.pipeline.resource(declared).kind
        name = self.name(declared)
        if kind is ResourceKind.BUCKET:
            return f"arn:{self.aws.partition}:s3:::{name}"
        service = "sqs" if kind is ResourceKind.QUEUE else "sns"
        return arn(service, name, region=self.aws.region, account=self.aws.account)

    def _function(self, processor: str, salt: int) -> Function:
        chaos = self.chaos

        def wrap(service: str, client: Any) -> Any:
            if chaos is not None and service == "kinesis":
                client = ChaosKinesis(client, chaos, salt=salt)
                self.chaos_clients.append(client)
            return self._metered(processor, service, client)

        producer = self._kafka_producer(processor)
        if chaos is not None and producer is not None:
            from cascata.local.kafka_runtime import ChaosProducer

            producer = ChaosProducer(producer, chaos, salt=salt)
            self.chaos_clients.append(producer)
        function = build_function(self.pipeline, processor, aws=self.aws, stage=self.stage,
                                  wrap=wrap, now=self.clock.now,
                                  environment=self.environment.get(processor),
                                  kafka_producer=producer, kafka_admin=self._admin)
        observer = self.observer
        if observer is None:
            return function

        def observed(event: Mapping[str, Any], context: Any) -> Any:
            response = function(event, context)
            observer(processor, event, response, time.time())
            return response

        return observed

    def _kafka_producer(self, function: str) -> Any:
        """The function's producer on Kafka (metered like its AWS clients), None on Kinesis."""
        if self._producers is None:
            return None
        from cascata.local.kafka_runtime import MeteredProducer

        return MeteredProducer(self._producers, function=function, meter=self.flows,
                               resolve=self._resolve)

    def _metered(self, function: str, service: str, client: Any) -> Any:
        return MeteredClient(client, service=service, function=function, meter=self.flows,
                             resolve=self._resolve)

    def run_in_background(self) -> None:
        assert self.engine is not None
        self.engine.start()

    def drain(self, timeout_s: float, *, stall_s: float | None = None) -> int:
        """Process everything written so far, every lane on its own thread (the engine keeps
        running if it was). Returns the work done; DrainTimeout after `timeout_s`, or after
        `stall_s` seconds without progress."""
        assert self.engine is not None
        was_running = self.engine.running
        if not was_running:
            self.engine.start()
        try:
            return self.engine.settle(timeout_s, stall_s=stall_s)
        finally:
            if not was_running:
                self.engine.stop()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine.close()
        if self._producers is not None:
            self._producers.close()
        if self.kafka is not None:
            self.kafka.close()
