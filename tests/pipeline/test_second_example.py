"""The IoT example (examples/iot) through every generic command, as a user runs them against
`cascata up`: up, produce, status, invoke, replay, versions, diff, promote, retire, all with
`--pipeline examples/iot` from anywhere."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cascata import project
from cascata.cli import main
from cascata.local.serve import UpOptions
from tests.support.up import running_up

pytestmark = pytest.mark.pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iot"
SAMPLE = EXAMPLE / "sample-readings.jsonl"


def cli(*args: str, endpoint: str | None = None) -> tuple[int, Any]:
    buffer = io.StringIO()
    tail = ["--endpoint-url", endpoint] if endpoint else []
    with contextlib.redirect_stdout(buffer):
        code = main(["--pipeline", str(EXAMPLE), *args, *tail, "--json"])
    text = buffer.getvalue()
    return code, json.loads(text) if text.strip() else None


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    monkeypatch.chdir(tmp_path)  # anywhere: --pipeline names the project
    project.use_pipeline(str(EXAMPLE))
    pipeline = project.current_pipeline()
    try:
        with running_up(UpOptions(port=0, api_port=0, stage="local"),
                        pipeline=pipeline) as ready:
            yield ready
    finally:
        project.use_pipeline(None)


def settled(endpoint: str, stats: int) -> dict[str, Any]:
    """`status` until nothing is behind and the stats view holds `stats` items."""
    deadline = time.monotonic() + 300
    while True:
        code, report = cli("status", endpoint=endpoint)
        assert code == 0
        if report["lag_records"] == 0 and report["views"]["device-stats"] == stats:
            return dict(report)
        assert time.monotonic() < deadline, report
        time.sleep(0.2)


def get(url: str) -> tuple[dict[str, str], Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{url}: {exc.code} {exc.read()!r}") from None


def test_every_generic_command_runs_the_iot_example(running: dict[str, Any],
                                                    tmp_path: Path) -> None:
    endpoint = running["aws_endpoint_url"]
    assert sorted(running["routes"]) == ["GET /devices/{id}", "GET /devices/{id}/stats"]
    # `status` answers the moment `up` says it is up (its first report is written before)
    code, first = cli("status", endpoint=endpoint)
    assert code == 0 and first["lag_records"] == 0

    code, sent = cli("produce", "--file", str(SAMPLE), endpoint=endpoint)
    assert code == 0 and (sent["sent"], sent["failed"]) == (9, 0)
    report = settled(endpoint, stats=4)
    assert report["views"]["device-alerts"] == 1
    assert {p["processor"] for p in report["processors"]} == {
        "validate", "aggregates", "alerting"}

    headers, body = get(f"{running['api_url']}/devices/greenhouse-1")
    assert headers["x-cascata-version"] == "v1"
    assert body["minutes_above"] == {"temperature": 2}

    # replay into v2, compare, promote: readers move to v2 at once
    code, built = cli("replay", "--to-version", "v2", endpoint=endpoint)
    assert code == 0 and built["state"] == "ready", built
    code, listed = cli("versions", endpoint=endpoint)
    assert code == 0 and listed["live"] == "v1"
    assert [v["version"] for v in listed["versions"] if v["state"] == "ready"] == ["v2"]
    code, compared = cli("diff", "v1", "v2", endpoint=endpoint)
    assert code == 0 and compared["total_differences"] == 0, compared
    code, promoted = cli("promote", "v2", endpoint=endpoint)
    assert code == 0 and promoted["live"] == "v2"
    headers, again = get(f"{running['api_url']}/devices/greenhouse-1")
    assert headers["x-cascata-version"] == "v2" and again == body

    # a third version, retired: its tables and streams go, the live one stays
    assert cli("replay", "--to-version", "v3", endpoint=endpoint)[0] == 0
    code, retired = cli("retire", "v3", endpoint=endpoint)
    assert code == 0 and any(name.endswith("-v3") for name in retired["deleted"])
    code, listed = cli("versions", endpoint=endpoint)
    states = {v["version"]: v["state"] for v in listed["versions"]}
    assert states == {"v1": "deployed", "v2": "ready", "v3": "retired"}
    assert listed["live"] == "v2"
    assert cli("retire", "v2", endpoint=endpoint)[0] == 2  # never the live one

    # invoke: one function, once, on an event file, against the running pipeline (last: its
    # output goes straight onto `readings`, which no replay of the origin stream sees; without
    # --endpoint-url it starts an embedded emulator of its own, which in this one process
    # would reset the state `up` serves)
    reading = {"event_id": "probe-1", "type": "sensor.reading", "version": 1, "key": "probe",
               "occurred_at": "2026-06-01T12:00:00Z",
               "data": {"device_id": "probe", "metric": "co2", "value": 400, "unit": "ppm"}}
    event = {"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": reading["key"],
                    "sequenceNumber": "1",
                    "data": base64.b64encode(json.dumps(reading).encode()).decode(),
                    "approximateArrivalTimestamp": time.time()},
        "eventSource": "aws:kinesis", "eventVersion": "1.0",
        "eventID": "shardId-000000000000:1", "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/x",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/iot-local-readings-raw",
    }]}
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    code, invoked = cli("invoke", "validate", "--event", str(path), endpoint=endpoint)
    assert code == 0, invoked
    assert invoked["response"] == {"batchItemFailures": []}
    assert invoked["function_error"] is None
    assert len(invoked["effects"]["emitted"]) == 1 and not invoked["effects"]["quarantined"]


def test_the_iot_example_runs_on_kafka_too(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """A second application on the platform, unchanged, with every stream a Kafka topic."""
    monkeypatch.chdir(tmp_path)
    project.use_pipeline(str(EXAMPLE))
    try:
        with running_up(UpOptions(port=0, api_port=0, stage="local", broker="msk"),
                        pipeline=project.current_pipeline()) as ready:
            endpoint = ready["aws_endpoint_url"]
            code, sent = cli("produce", "--file", str(SAMPLE), "--broker", "msk",
                             "--bootstrap-servers", ready["kafka_bootstrap_servers"],
                             "--kafka-auth", "none")
            assert code == 0 and (sent["sent"], sent["failed"]) == (9, 0)
            report = settled(endpoint, stats=4)
            # aggregates' alert went through its Kafka producer to the alerts topic
            assert report["views"]["device-alerts"] == 1
            _, body = get(f"{ready['api_url']}/devices/greenhouse-1")
            assert body["minutes_above"] == {"temperature": 2}
            code, built = cli("replay", "--to-version", "v2", endpoint=endpoint)
            assert code == 0 and built["state"] == "ready", built
            code, compared = cli("diff", "v1", "v2", endpoint=endpoint)
            assert code == 0 and compared["total_differences"] == 0, json.dumps(compared)
    finally:
        project.use_pipeline(None)
