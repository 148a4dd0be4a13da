"""Testing a cascata pipeline: the whole of it, locally, from a test.

`LocalPipeline` provisions a declared pipeline on the embedded emulator (no account, no
network), runs every processor through the event source mapping engine, and reads back what
the pipeline left: views, quarantined records, on-failure records, API answers. The pytest
plugin (`cascata.testing.plugin`, registered by installing cascata) gives it to tests as the
`cascata_local` fixture; docs/testing.md shows a complete test.

    def test_an_order_counts(cascata_local):
        cascata_local.produce("orders", [{"order_id": "o1", "customer": "c1", ...}])
        cascata_local.drain()
        assert cascata_local.item("order-counts", customer_id="c1")["orders"] == 1
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from cascata.local.chaos import ChaosSettings
from cascata.local.emulator import EmbeddedAws
from cascata.local.http import Routes, build_event, to_http
from cascata.local.objects import list_keys, read_stream
from cascata.local.runtime import LocalRuntime
from cascata.pipeline import Pipeline, ResourceKind, Stream, Table
from cascata.producer import Outgoing, produce

__all__ = ["CHAOS", "ChaosSettings", "LocalPipeline"]

CHAOS = ChaosSettings(seed=7, crash_rate=0.2, put_failure_rate=0.1, throttle_rate=0.05,
                      duplicate_rate=0.05)
"""The `cascata_chaos` fixture's faults: a fifth of invocations crash after their effects, a
tenth of PutRecords entries fail, a twentieth of requests and invocations are throttled and of
produced records sent twice. High on purpose: a test of a few hundred events, produced and
drained in a few rounds, meets every kind."""

Event = Mapping[str, Any] | bytes | str


class LocalPipeline:
    """A declared pipeline running on the embedded emulator, for one test."""

    def __init__(self, pipeline: Pipeline, *, chaos: ChaosSettings | None = None,
                 stage: str = "test", shards: int = 1) -> None:
        problems = pipeline.validate()
        if problems:
            raise ValueError("the pipeline is not sound: " + "; ".join(problems))
        self.pipeline = pipeline
        self.stage = stage
        self.aws = EmbeddedAws()
        self.runtime = LocalRuntime(pipeline, self.aws, stage=stage, chaos=chaos, shards=shards)
        self._started = False

    def start(self) -> LocalPipeline:
        self.aws.start()
        try:
            self.runtime.start()
            # Every mapping polls from now on, as on Lambda; `drain` waits for it to settle.
            self.runtime.run_in_background()
        except BaseException:
            self.aws.stop()
            raise
        self._started = True
        return self

    def close(self) -> None:
        if self._started:
            self.runtime.close()
            self.aws.stop()
            self._started = False

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- writing

    def produce(self, stream: str, events: Iterable[Event], *,
                key: str | Callable[[Event], str] | None = None) -> int:
        """Put events on a declared stream, as a producer would (PutRecords, retried). A
        mapping is sent as JSON, keyed by `key=` (a field name or a function of the event),
        else by its `key` field (an envelope's), else by the stream's declared `partition_key`
        field (or the envelope data's). Bytes and text are sent as they are, keyed by `key=`
        itself. Returns how many were written; a record refused for good raises."""
        declared = self._declared(stream, ResourceKind.STREAM)
        assert isinstance(declared, Stream)
        outgoing = [self._outgoing(event, declared, key) for event in events]
        chaos = self.runtime.chaos
        if chaos is not None and chaos.duplicate_rate > 0:
            # The producer's own retries: some records are sent twice, as with a timeout.
            rng = random.Random(chaos.seed + len(outgoing))
            outgoing = [copy for one in outgoing
                        for copy in ([one, one] if rng.random() < chaos.duplicate_rate
                                     else [one])]
        report = produce(self.aws.client("kinesis"), self.name(stream), outgoing)
        if report.failed:
            raise RuntimeError(f"{report.failed} records were not written to {stream}: "
                               + "; ".join(report.failures[:3]))
        return report.sent

    @staticmethod
    def _outgoing(event: Event, stream: Stream,
                  key: str | Callable[[Event], str] | None) -> Outgoing:
        data = (json.dumps(event, separators=(",", ":")).encode() if isinstance(event, Mapping)
                else event.encode() if isinstance(event, str) else bytes(event))
        if callable(key):
            partition = key(event)
        elif not isinstance(event, Mapping):
            partition = key or ""
        else:
            partition = _field(event, key) if key else (
                _field(event, "key") or _field(event, stream.partition_key))
        if not partition:
            raise ValueError(f"no partition key for an event on {stream.name}: give it a 'key' "
                             f"or {stream.partition_key!r} field, or pass key= (a field name, "
                             "a function, or for bytes and text the key itself)")
        return Outgoing(key=partition, data=data)

    def drain(self, timeout_s: float = 120.0) -> int:
        """Run every processor until everything written so far is processed, downstream
        streams included (TimeoutError-like `DrainTimeout` if it does not settle)."""
        return self.runtime.drain(timeout_s)

    def run_scheduled(self, name: str, *, now: float | None = None) -> Any:
        """Invoke a declared scheduled function once, as its schedule would."""
        return self.runtime.run_scheduled(name, now=now)

    # ---------------------------------------------------------------------------- reading

    def name(self, declared: str) -> str:
        """The physical name of a declared resource in this run."""
        return self.runtime.name(declared)

    def table(self, name: str) -> list[dict[str, Any]]:
        """Every item of a declared table, as plain Python (numbers as int or Decimal)."""
        self._declared(name, ResourceKind.TABLE)
        ddb = self.aws.reading_client("dynamodb")
        items: list[dict[str, Any]] = []
        for page in ddb.get_paginator("scan").paginate(TableName=self.name(name),
                                                       ConsistentRead=True):
            items.extend(_plain(item) for item in page["Items"])
        return items

    def item(self, table: str, **key: str) -> dict[str, Any] | None:
        """One item of a declared table by its key (`item("balances", account_id="a1")`)."""
        declared = self._declared(table, ResourceKind.TABLE)
        assert isinstance(declared, Table)
        wanted = {declared.partition_key} | ({declared.sort_key} if declared.sort_key else set())
        if set(key) != wanted:
            raise ValueError(f"{table} is keyed by {', '.join(sorted(wanted))}; "
                             f"got {', '.join(sorted(key)) or 'nothing'}")
        ddb = self.aws.reading_client("dynamodb")
        found = ddb.get_item(TableName=self.name(table), ConsistentRead=True,
                             Key={k: {"S": v} for k, v in key.items()}).get("Item")
        return _plain(found) if found else None

    def records(self, stream: str) -> list[Any]:
        """Every record on a declared stream so far, in shard order, decoded from JSON (the
        raw bytes where a record is not JSON)."""
        self._declared(stream, ResourceKind.STREAM)
        found: list[Any] = []
        for data in read_stream(self.aws.reading_client("kinesis"), self.name(stream)):
            try:
                found.append(json.loads(data))
            except ValueError:
                found.append(data)
        return found

    def quarantined(self, processor: str | None = None) -> list[dict[str, Any]]:
        """What the processors refused: each with its `reason`, `source` position and the
        original record, oldest position first."""
        return [body for body in self._objects("quarantine/")
                if processor is None or body.get("processor") == processor]

    def failures(self) -> list[dict[str, Any]]:
        """The on-failure records of every event source mapping (batches given up on)."""
        buckets = {src.on_failure for p in self.pipeline.processors for src in p.sources}
        found: list[dict[str, Any]] = []
        for bucket in sorted(buckets):
            if self.pipeline.resource(bucket).kind is ResourceKind.BUCKET:
                found.extend(self._objects("", bucket=bucket, skip=("quarantine/",
                                                                    "checkpoints/")))
        return found

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the pipeline's HTTP API as API Gateway would; (status, parsed JSON body)."""
        routes = Routes(dict(self.runtime.routes()))
        matched = routes.match(method.upper(), path.partition("?")[0])
        if matched is None:
            return 404, {"message": "Not Found"}
        route_key, params, handler = matched
        raw = b"" if body is None else json.dumps(body).encode()
        headers = [("content-type", "application/json")] if raw else []
        event = build_event(route_key=route_key, method=method.upper(), target=path,
                            headers=headers, body=raw, path_parameters=params,
                            source_ip="127.0.0.1", account=self.aws.account)
        answer = to_http(handler(event, self.runtime.route_context(route_key)))
        try:
            parsed = json.loads(answer.body) if answer.body else None
        except ValueError:
            parsed = answer.body.decode("utf-8", "replace")
        return answer.status, parsed

    def stats(self) -> dict[str, int]:
        """What the run went through, summed over every event source mapping: invocations,
        function errors (crashes), retried and bisected batches, throttles, records sent to
        on-failure destinations; and the faults chaos injected into the functions' PutRecords
        (failed entries, throttled requests)."""
        fields = ("invocations", "function_errors", "retries", "bisects", "throttles",
                  "partial_failures", "on_failure_records")
        totals = dict.fromkeys(fields, 0)
        for mapping in self.runtime.mappings.values():
            snapshot = mapping.stats
            for name in fields:
                totals[name] += int(getattr(snapshot, name))
        totals["put_entries_failed"] = sum(
            c.counters.put_entries_failed for c in self.runtime.chaos_clients)
        totals["put_requests_throttled"] = sum(
            c.counters.put_requests_throttled for c in self.runtime.chaos_clients)
        return totals

    # ----------------------------------------------------------------------------- helpers

    def _declared(self, name: str, kind: ResourceKind) -> Any:
        try:
            resource = self.pipeline.resource(name)
        except KeyError:
            known = sorted(r.name for r in self.pipeline.resources().values() if r.kind is kind)
            raise KeyError(f"no {kind.value} named {name!r}; declared: "
                           f"{', '.join(known)}") from None
        if resource.kind is not kind:
            raise KeyError(f"{name!r} is a {resource.kind.value}, not a {kind.value}")
        return resource

    def _objects(self, prefix: str, *, bucket: str | None = None,
                 skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        buckets = [bucket] if bucket else [b.name for b in self.pipeline.buckets]
        s3 = self.aws.reading_client("s3")
        found: list[dict[str, Any]] = []
        for declared in buckets:
            physical = self.name(declared)
            keys = sorted(k for k in list_keys(self.aws.client("s3"), physical, prefix)
                          if not k.startswith(skip) and k.endswith(".json"))
            for object_key in keys:
                data = s3.get_object(Bucket=physical, Key=object_key)["Body"].read()
                try:
                    found.append(json.loads(data))
                except ValueError:
                    continue
        return found


def _field(event: Mapping[str, Any], name: str) -> str:
    """A field of the event, or of its envelope's `data`, as text ('' when absent)."""
    value = event.get(name)
    if value is None and isinstance(event.get("data"), Mapping):
        value = event["data"].get(name)
    return "" if value is None else str(value)


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {k: _number(deserializer.deserialize(v)) for k, v in item.items()}


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return type(value)(_number(v) for v in value)
    return value
