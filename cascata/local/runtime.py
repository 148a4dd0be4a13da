"""The declared pipeline, running locally: every processor behind an emulated event source mapping.

`LocalRuntime` provisions the declaration on an `Aws` (the embedded emulator or an endpoint),
builds each function with its declared environment and injected clients, and creates one event
source mapping per processor from the same `EventSource` settings the CDK stacks render.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cascata.local.chaos import ChaosKinesis, ChaosSettings
from cascata.local.emulator import Aws, Provisioned, provision
from cascata.local.esm import (
    DestinationWriter,
    EventSourceMapping,
    EventSourceMappingEngine,
    Faults,
    KinesisApiSource,
    KinesisBackendSource,
    MappingConfig,
)
from cascata.local.functions import Function, build_function
from cascata.pipeline import Pipeline, ResourceKind

Observer = Callable[[str, Mapping[str, Any], Any, float], None]
"""(processor, event, response, finished_at): called after each invocation that returned."""


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
    chaos_clients: list[ChaosKinesis] = field(default_factory=list)

    def start(self) -> LocalRuntime:
        self.provisioned = provision(self.pipeline, self.aws, stage=self.stage,
                                     shards=self.shards)
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
            # Shards and mappings progress side by side, as they do on Lambda.
            max_workers=4,
        )
        for salt, proc in enumerate(self.pipeline.processors):
            function = self._function(proc.name, salt)
            on_failure = self._arn(proc.source.on_failure)
            source_name = self.name(proc.source.stream)
            source: Any = (
                KinesisBackendSource(source_name, account=self.aws.account,
                                     region=self.aws.region)
                if self.aws.embedded
                else KinesisApiSource(self.aws.client("kinesis"), stream_name=source_name)
            )
            self.mappings[proc.name] = self.engine.create_mapping(
                function=function,
                function_name=self.pipeline.physical_name(proc.name, stage=self.stage),
                source=source,
                config=MappingConfig.from_event_source(proc.source, on_failure_arn=on_failure),
                memory_mb=proc.memory_mb,
                timeout_s=proc.timeout_s,
            )
        return self

    def name(self, declared: str) -> str:
        assert self.provisioned is not None, "start() first"
        return self.provisioned.names[declared]

    def _arn(self, declared: str) -> str:
        kind = self.pipeline.resource(declared).kind
        name = self.name(declared)
        if kind is ResourceKind.BUCKET:
            return f"arn:aws:s3:::{name}"
        if kind is ResourceKind.QUEUE:
            return f"arn:aws:sqs:{self.aws.region}:{self.aws.account}:{name}"
        return f"arn:aws:sns:{self.aws.region}:{self.aws.account}:{name}"

    def _function(self, processor: str, salt: int) -> Function:
        chaos = self.chaos

        def wrap(service: str, client: Any) -> Any:
            if chaos is not None and service == "kinesis":
                wrapped = ChaosKinesis(client, chaos, salt=salt)
                self.chaos_clients.append(wrapped)
                return wrapped
            return client

        function = build_function(self.pipeline, processor, aws=self.aws, stage=self.stage,
                                  wrap=wrap)
        observer = self.observer
        if observer is None:
            return function

        def observed(event: Mapping[str, Any], context: Any) -> Any:
            response = function(event, context)
            observer(processor, event, response, time.time())
            return response

        return observed

    def run_in_background(self) -> None:
        assert self.engine is not None
        self.engine.start()

    def drain(self, timeout_s: float) -> Any:
        assert self.engine is not None
        self.engine.stop()
        return self.engine.drain(timeout=timeout_s)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine.close()
