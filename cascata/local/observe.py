"""The running pipeline as data: its topology from the declaration, and its status from the
runtime's report, for `cascata status` and the console alike.

`topology` draws the declaration as nodes (streams, functions, tables, buckets, topics, queues,
archivers) and edges (a mapping reads a stream, a function writes or reads a resource, a
mapping sends on-failure records). `build_status` joins a runtime report
(`LocalRuntime.checkpoint_report`) with what the emulator holds (backlogs, view sizes,
quarantined records) into one document, the same whichever process asks; each edge of the
topology gets its total and its rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from cascata.local.objects import list_keys
from cascata.local.runtime import ARCHIVER, mapping_key
from cascata.pipeline import Pipeline, ResourceKind

QUARANTINE_ENV = "QUARANTINE_BUCKET"
"""The binding by which a processor names its quarantine bucket (`cascata_runtime.settings`)."""
QUARANTINE_PREFIX = "quarantine/"

Backlog = Callable[[str, Mapping[str, str]], tuple[int, int]]
"""(physical stream, shard -> checkpoint) -> (records after the checkpoints, age of the oldest
of them in ms)."""

_KIND = {
    ResourceKind.STREAM: "stream",
    ResourceKind.TABLE: "table",
    ResourceKind.BUCKET: "bucket",
    ResourceKind.QUEUE: "queue",
    ResourceKind.TOPIC: "topic",
}


def node_id(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def topology(pipeline: Pipeline) -> dict[str, Any]:
    """Nodes and edges of the declared pipeline. Edge kinds: `source` (a mapping reads a
    stream; `mapping` names it), `write`, `read`, `on_failure` (a mapping's destination)."""
    nodes: list[dict[str, Any]] = []
    for resource in pipeline.resources().values():
        kind = _KIND[resource.kind]
        node: dict[str, Any] = {"id": node_id(kind, resource.name), "kind": kind,
                                "name": resource.name, "description": resource.description}
        if kind == "stream":
            node["origin"] = getattr(resource, "origin", False)
        if kind == "table":
            node["role"] = getattr(resource, "role", "view")
        nodes.append(node)
    edges: list[dict[str, Any]] = []

    def edge(source: str, target: str, kind: str, **extra: Any) -> None:
        edges.append({"id": f"{source}->{target}", "from": source, "to": target, "kind": kind,
                      **extra})

    functions = ([("processor", f) for f in pipeline.processors]
                 + [("scheduled", f) for f in pipeline.scheduled]
                 + [("api", f) for f in pipeline.apis])
    for kind, function in functions:
        fid = node_id(kind, function.name)
        node = {"id": fid, "kind": kind, "name": function.name,
                "description": function.description}
        if kind == "scheduled":
            node["every_s"] = getattr(function, "every_s", 0)
        if kind == "api":
            node["routes"] = [r.key for r in getattr(function, "routes", ())]
        nodes.append(node)
        for src in getattr(function, "sources", ()):
            edge(node_id("stream", src.stream), fid, "source",
                 mapping=mapping_key(function.name, src.stream))
        for binding in function.bindings:
            rid = node_id(_KIND[pipeline.resource(binding.resource).kind], binding.resource)
            if binding.access == "read":
                edge(rid, fid, "read")
            else:
                edge(fid, rid, "write")
        destinations = dict.fromkeys(src.on_failure for src in getattr(function, "sources", ())
                                     if src.on_failure)
        for destination in destinations:
            target = node_id(_KIND[pipeline.resource(destination).kind], destination)
            edge(fid, target, "on_failure")
    for archive in pipeline.archives:
        aid = node_id("archive", archive.stream)
        nodes.append({"id": aid, "kind": "archive", "name": f"archive {archive.stream}",
                      "description": f"Archives {archive.stream} to {archive.bucket}."})
        edge(node_id("stream", archive.stream), aid, "source",
             mapping=mapping_key(ARCHIVER, archive.stream))
        edge(aid, node_id("bucket", archive.bucket), "write")
    return {"app": pipeline.app, "nodes": nodes, "edges": edges}


def quarantine_buckets(pipeline: Pipeline) -> dict[str, str]:
    """Processor -> the declared bucket it quarantines to."""
    found = {}
    for proc in pipeline.processors:
        bucket = pipeline.bound(proc.name, QUARANTINE_ENV)
        if bucket is not None:
            found[proc.name] = bucket
    return found


def count_quarantined(s3: Any, pipeline: Pipeline, names: Mapping[str, str]) -> dict[str, int]:
    """Records each processor has quarantined so far (one object each)."""
    return {proc: sum(1 for _ in list_keys(s3, names[bucket], f"{QUARANTINE_PREFIX}{proc}/"))
            for proc, bucket in quarantine_buckets(pipeline).items()}


def live_tables(pipeline: Pipeline, dynamodb: Any, names: Mapping[str, str], *, stage: str,
                account: str, region: str) -> tuple[str, dict[str, str]]:
    """The version readers use (the registry's live pointer; v1 without a registry) and each
    declared table's physical table in it (the registry itself is not versioned)."""
    from cascata.versions import Registry, table_name

    control = pipeline.control_table
    tables = dict(names)
    if control is None:
        return "v1", tables
    live = Registry(dynamodb, names[control.name]).live()
    if live != "v1":
        for table in pipeline.versioned_tables:
            tables[table.name] = table_name(pipeline, table.name, live, stage=stage,
                                            account=account, region=region)
    return live, tables


def build_status(pipeline: Pipeline, report: Mapping[str, Any], *, names: Mapping[str, str],
                 backlog: Backlog, dynamodb: Any, s3: Any, region: str, stage: str,
                 account: str) -> dict[str, Any]:
    """The status document: per mapping its backlog and counters, per processor its
    quarantined records, per table its size in the live version, per topology edge its
    total and rate."""
    mappings: Mapping[str, Any] = report.get("mappings", {})
    processors: list[dict[str, Any]] = []
    total = 0
    for key, mapping in sorted(mappings.items()):
        reported = mapping.get("backlog")  # a pipeline on Kafka reports its own
        behind, age_ms = ((int(reported["records"]), int(reported["age_ms"]))
                          if isinstance(reported, Mapping)
                          else backlog(mapping["physical_stream"], mapping["checkpoints"]))
        total += behind
        processors.append({
            "mapping": key,
            "processor": mapping["processor"],
            "stream": mapping["stream"],
            "records_behind": behind,
            "iterator_age_ms": age_ms,
            "invocations": mapping["invocations"],
            "records_in": mapping["records_in"],
            "records_in_per_s": mapping.get("records_in_per_s", 0.0),
            "errors": mapping["errors"],
            "partial_failures": mapping["partial_failures"],
            "retries": mapping["retries"],
            "throttles": mapping["throttles"],
            "on_failure_records": mapping["on_failure_records"],
        })
    live, tables = live_tables(pipeline, dynamodb, names, stage=stage, account=account,
                               region=region)
    views: dict[str, int | None] = {}
    for table in pipeline.tables:
        count: int | None = 0
        try:
            for page in dynamodb.get_paginator("scan").paginate(TableName=tables[table.name],
                                                                Select="COUNT"):
                count = (count or 0) + page["Count"]
        except dynamodb.exceptions.ResourceNotFoundException:
            count = None  # the live version lacks this table: reported, not a failure
        views[table.name] = count
    updated = report.get("updated_at")
    age = 0.0 if updated is None else max(0.0, time.time() - float(updated))
    return {
        "app": pipeline.app,
        "stage": stage,
        "region": region,
        "report_age_s": round(age, 1),
        "lag_records": total,
        "processors": processors,
        "quarantined": count_quarantined(s3, pipeline, names),
        "views": views,
        "views_version": live,
        "edges": edge_flows(pipeline, report),
    }


def edge_flows(pipeline: Pipeline, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each topology edge with what went along it so far (`records`) and its rate (`per_s`):
    records read for a `source` edge, items written for a `write` edge, on-failure records for
    an `on_failure` edge (no rate: they are rare and counted per mapping); `read` edges carry
    no count."""
    mappings: Mapping[str, Any] = report.get("mappings", {})
    written = {(f["function"], f["resource"]): f for f in report.get("flows", ())}
    failures: dict[tuple[str, str], int] = {}
    for proc in pipeline.processors:
        for src in proc.sources:
            mapping = mappings.get(mapping_key(proc.name, src.stream), {})
            pair = (proc.name, src.on_failure)
            failures[pair] = failures.get(pair, 0) + int(mapping.get("on_failure_records", 0))
    out = []
    for edge in topology(pipeline)["edges"]:
        kind = edge["kind"]
        records: int | None = None
        per_s: float | None = None
        if kind == "source":
            mapping = mappings.get(edge["mapping"], {})
            records = int(mapping.get("records_in", 0))
            per_s = float(mapping.get("records_in_per_s", 0.0))
        elif kind == "write":
            function = _function_of(edge["from"])
            flow = written.get((function, edge["to"].split(":", 1)[1]), {})
            records = int(flow.get("records", 0))
            per_s = float(flow.get("per_s", 0.0))
        elif kind == "on_failure":
            records = failures.get((_function_of(edge["from"]), edge["to"].split(":", 1)[1]), 0)
        out.append({"id": edge["id"], "records": records, "per_s": per_s})
    return out


def _function_of(node: str) -> str:
    """The function (as the runtime's flows name it) behind a topology node id."""
    kind, name = node.split(":", 1)
    return f"{ARCHIVER}/{name}" if kind == "archive" else name
