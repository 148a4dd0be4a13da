"""Kappa reprocessing end to end: archive, replay into versions, diff, promote, retire.

One live pipeline runs the demo workload on the embedded emulator (customers first, so every
payer's tier is known when its payments are evaluated), then goes quiet for longer than the
windows' idle time, so the schedule closes the newest windows by idleness: the one result that
depends on the functions' clock, which a replay must run on history's arrival times (from the
archive too). Then the commands run against it through the CLI, as a user runs them against
`cascata up`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from cascata.cli import main
from cascata.local.emulator import EmbeddedAws
from cascata.local.runtime import LocalRuntime
from cascata.producer import Outgoing, produce
from cascata.versions import content, row_key, scan_view
from cascata_runtime.archive import decode_object
from payments.domain.query import MAX_WINDOWS
from payments.domain.windows import WindowConfig
from payments.pipeline import PIPELINE
from payments.tooling.workload import WorkloadSpec, generate, generate_customers
from tests.support.events import http_event

pytestmark = pytest.mark.pipeline

STAGE = "local"


@dataclass
class Live:
    aws: EmbeddedAws
    runtime: LocalRuntime
    endpoint: str
    sent: int
    until: str
    """The end of the history every replay here reads: the same `--until` makes versions
    built at different moments comparable (a version is the views as they stood then)."""

    def cli(self, *args: str) -> tuple[int, Any]:
        return run_cli(self.endpoint, *args)

    def replay(self, *args: str) -> tuple[int, Any]:
        return self.cli("replay", *args, "--until", self.until)


def run_cli(endpoint: str, *args: str) -> tuple[int, Any]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([*args, "--endpoint-url", endpoint, "--json"])
    text = buffer.getvalue()
    return code, json.loads(text) if text.strip() else None


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    aws = EmbeddedAws().start()
    runtime = LocalRuntime(PIPELINE, aws, stage=STAGE)
    try:
        runtime.start()
        spec = WorkloadSpec(events=600, seed=11)
        kinesis = aws.client("kinesis")
        customers = generate_customers(spec)
        produce(kinesis, runtime.name("customers"), [Outgoing(c.key, c.data) for c in customers])
        runtime.drain(120)
        events = list(generate(spec))
        produce(kinesis, runtime.name("payments-raw"), [Outgoing(e.key, e.data) for e in events])
        runtime.drain(180)
        # Quiet for longer than the windows' idle time, then the schedule's turn: the newest
        # windows of every shard, which the watermark alone leaves open, close by idleness.
        time.sleep(WindowConfig().idle_after_s + 2)
        until = time.time()
        runtime.run_scheduled("windows-close", now=until)
        runtime.drain(60)
        assert aws.endpoint_url
        yield Live(aws, runtime, aws.endpoint_url, len(events) + len(customers),
                   datetime.fromtimestamp(until, UTC).isoformat().replace("+00:00", "Z"))
    finally:
        runtime.close()
        aws.stop()


def alerts(live: Live, version: str) -> dict[str, dict[str, Any]]:
    table = next(t for t in PIPELINE.tables if t.name == "alerts-view")
    name = (PIPELINE if version == "v1" else PIPELINE.for_version(version)).physical_name(
        "alerts-view", stage=STAGE)
    return {json.dumps(row_key(table, item), sort_keys=True): content(table, item)
            for item in scan_view(live.aws.client("dynamodb"), table, name)}


def query_alerts(live: Live, account: str) -> tuple[str, list[str]]:
    event = http_event("GET", f"/accounts/{account}/alerts",
                       route_key="GET /accounts/{id}/alerts", path_parameters={"id": account},
                       query={"limit": "100"})
    response = live.runtime.apis["query"](event, live.runtime.context("query"))
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    return response["headers"]["x-cascata-version"], sorted(a["alert_id"] for a in body["alerts"])


def windows_as_read(live: Live, version: str) -> dict[str, list[dict[str, Any]]]:
    """Every account's most recent windows as the query API serves them with `version` live:
    `final` or `open` is what readers compute from the shard watermarks, which `diff` (row by
    row over the panes) does not see, and it is where the functions' clock shows."""
    table = next(t for t in PIPELINE.tables if t.name == "activity-view")
    accounts = sorted({str(item["account_id"]) for item in scan_view(
        live.aws.client("dynamodb"), table, PIPELINE.physical_name(table.name, stage=STAGE))})
    if version != "v1":
        assert live.cli("promote", version)[0] == 0
    try:
        out = {}
        for account in accounts:
            event = http_event("GET", f"/accounts/{account}", route_key="GET /accounts/{id}",
                               path_parameters={"id": account},
                               query={"windows": str(MAX_WINDOWS)})
            response = live.runtime.apis["query"](event, live.runtime.context("query"))
            assert response["statusCode"] == 200, response
            assert response["headers"]["x-cascata-version"] == version
            out[account] = json.loads(response["body"])["windows"]
    finally:
        if version != "v1":
            live.cli("promote", "v1")
    return out


def test_every_origin_record_is_archived_by_event_date_and_hour(live: Live) -> None:
    s3 = live.aws.client("s3")
    bucket = PIPELINE.physical_name("archive", stage=STAGE)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    positions = set()
    for key in keys:
        kind, stream, date, hour, _ = key.split("/")
        assert kind in ("events", "errors") and stream.startswith("stream=")
        assert date.startswith("date=") and hour.startswith("hour=")
        for line in decode_object(s3.get_object(Bucket=bucket, Key=key)["Body"].read()):
            positions.add((line["stream"], line["shard_id"], line["sequence_number"]))
            if kind == "events":
                assert line["occurred_at"].startswith(date[5:] + "T" + hour[5:])
            else:
                assert line["error"]["reason"]
    assert len(positions) == live.sent


def test_a_replay_of_unchanged_logic_rebuilds_every_view_exactly(live: Live) -> None:
    code, result = live.replay("--to-version", "v2")
    assert code == 0 and result["state"] == "ready" and result["records_total"] == live.sent
    code, report = live.cli("diff", "v1", "v2")
    assert code == 0, report
    assert report["total_differences"] == 0
    assert set(report["views"]) == {t.name for t in PIPELINE.views}
    assert all(v["rows_a"] > 0 for v in report["views"].values())
    # ... and the windows are as final as live's: the replay's clock was history's
    assert windows_as_read(live, "v2") == windows_as_read(live, "v1")


def test_changed_logic_replays_diffs_exactly_promotes_and_audits_clean(live: Live) -> None:
    before = alerts(live, "v1")
    velocity = {k: a for k, a in before.items() if a["rule"] == "velocity"}
    # Velocity alerts carry the count that tripped the rule: with a limit of 6 instead of 5,
    # exactly those with a count of 6 are no longer raised, the others now name the new limit.
    removed = {k for k, a in velocity.items() if a["evidence"]["count"] <= 6}
    changed = set(velocity) - removed
    assert removed and changed, "the workload must trip the velocity rule both ways"

    code, result = live.replay("--to-version", "v3",
                            "--set", "fraud-detect.velocity_max_payments=6")
    assert code == 0 and result["state"] == "ready"
    assert result["config"] == {"fraud-detect": {"FRAUD_RULES": '{"velocity_max_payments": 6}'}}

    code, report = live.cli("diff", "v1", "v3", "--examples", "100000")
    assert code == 1
    assert {v: c["differences"] for v, c in report["views"].items()} == {
        "balances": 0, "profiles": 0, "activity-view": 0,
        "alerts-view": len(removed) + len(changed)}
    assert report["total_differences"] == len(removed) + len(changed)
    seen = {json.dumps(d["key"], sort_keys=True): d for d in report["differences"]}
    assert {k for k, d in seen.items() if d["kind"] == "only_in_a"} == removed
    assert {k for k, d in seen.items() if d["kind"] == "changed"} == changed
    for key in changed:
        assert seen[key]["fields"] == ["evidence"]
        assert seen[key]["b"]["evidence"]["max_payments"] == 6

    account = json.loads(next(iter(sorted(removed))))["account_id"]
    version, served = query_alerts(live, account)
    assert version == "v1"
    code, promoted = live.cli("promote", "v3")
    assert code == 0 and promoted == {"previous": "v1", "live": "v3", "changed": True}
    version, served_after = query_alerts(live, account)
    expected = sorted(a["alert_id"] for a in alerts(live, "v3").values()
                      if a["account_id"] == account)
    assert version == "v3" and served_after == expected and served_after != served

    code, audit = live.cli("audit")
    assert audit["version"] == "v3"
    assert audit["total_differences"] == 0, audit["differences"][:5]
    assert code == 0

    # Back to v1, so later tests see the deployed version live.
    assert live.cli("promote", "v1")[0] == 0


def test_an_interrupted_replay_resumes_to_the_same_views(live: Live) -> None:
    first = live.replay("--to-version", "v4", "--max-records", "170")[1]
    assert first["state"] == "building" and first["records_this_run"] == 170
    # A resumed replay must be run as it was started.
    code, _ = live.replay("--to-version", "v4", "--from", "archive")
    assert code == 2
    second = live.replay("--to-version", "v4", "--max-records", "250")[1]
    assert second["resumed"] and second["state"] == "building"
    assert second["records_total"] == 420
    code, last = live.replay("--to-version", "v4")
    assert code == 0 and last["state"] == "ready" and last["records_total"] == live.sent
    code, report = live.cli("diff", "v2", "v4")
    assert report["total_differences"] == 0 and code == 0


def test_a_replay_killed_mid_run_resumes_to_the_same_views(live: Live) -> None:
    """No graceful stop: the process dies between two periodic checkpoints, so the resumed
    run redelivers what the dead one had already applied, and the fences must skip it."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from cascata.local.emulator import external
    from cascata.replay import registry_for

    registry = registry_for(external(live.endpoint), STAGE)
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "cascata", "replay", "--to-version", "v6", "--until",
         live.until, "--endpoint-url", live.endpoint, "--json"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            record = registry.get("v6")
            if record is not None and record.records > 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the replay never checkpointed")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    record = registry.get("v6")
    assert record is not None and record.state == "building"
    code, last = live.replay("--to-version", "v6")
    assert code == 0 and last["resumed"] and last["state"] == "ready"
    code, report = live.cli("diff", "v2", "v6")
    assert report["total_differences"] == 0 and code == 0


def test_a_replay_from_the_archive_equals_live_and_one_from_the_stream(live: Live) -> None:
    code, result = live.replay("--to-version", "v5", "--from", "archive")
    assert code == 0 and result["state"] == "ready"
    assert result["republished"] == live.sent
    for other in ("v1", "v2"):
        code, report = live.cli("diff", other, "v5")
        assert report["total_differences"] == 0 and code == 0, (other, report)
        assert set(report["views"]) == {t.name for t in PIPELINE.views}
    # Live went quiet before --until, so the schedule closed every window, the newest ones by
    # idleness. The replay republished the history long after it arrived; it closes them too
    # only if its clock ran on the arrival times the records carry, not the republish times.
    served = windows_as_read(live, "v1")
    assert served and all(w["status"] == "final" for ws in served.values() for w in ws)
    assert windows_as_read(live, "v5") == served


def test_versions_lists_and_retire_deletes_only_what_is_not_live(live: Live) -> None:
    code, listing = live.cli("versions")
    assert code == 0 and listing["live"] == "v1"
    assert {v["version"]: v["state"] for v in listing["versions"]}["v2"] == "ready"
    code, _ = live.cli("retire", "v1")
    assert code == 2
    assert live.cli("promote", "v2")[0] == 0
    code, _ = live.cli("retire", "v2")
    assert code == 2  # live
    assert live.cli("promote", "v1")[0] == 0
    code, retired = live.cli("retire", "v2")
    assert code == 0
    assert PIPELINE.for_version("v2").physical_name("balances", stage=STAGE) in retired["deleted"]
    ddb = live.aws.client("dynamodb")
    assert PIPELINE.for_version("v2").physical_name("balances", stage=STAGE) not in \
        ddb.list_tables()["TableNames"]
    code, _ = live.cli("promote", "v2")
    assert code == 2
    code, _ = live.replay("--to-version", "v2")
    assert code == 2

