"""The IoT pipeline end to end on the embedded emulator (cascata's pytest plugin)."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parents[1] / "sample-readings.jsonl"


def _sample() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def test_readings_become_windows_alerts_and_answers(cascata_local: Any) -> None:
    cascata_local.produce("readings-raw", _sample())
    cascata_local.drain()

    stats = {(i["device_id"], i["window"]): i for i in cascata_local.table("device-stats")}
    first = stats[("greenhouse-1", "temperature#2026-06-01T12:00:00Z")]
    assert (first["count"], first["sum"]) == (2, Decimal("79.75"))  # r-0002 sent twice
    second = stats[("greenhouse-1", "temperature#2026-06-01T12:01:00Z")]
    assert (second["min"], second["max"], second["count"]) == (Decimal("39.75"), 42, 2)
    assert stats[("cellar-2", "co2#2026-06-01T12:00:00Z")]["count"] == 1
    assert len(stats) == 4

    alerts = cascata_local.records("alerts")
    assert [(a["type"], a["data"]["start"]) for a in alerts] == [
        ("threshold.exceeded", "2026-06-01T12:00:00Z"),
        ("threshold.exceeded", "2026-06-01T12:01:00Z")]
    device = cascata_local.item("device-alerts", device_id="greenhouse-1")
    assert device["minutes_above"] == {"temperature": 2}

    refused = {q["reason"]["code"] for q in cascata_local.quarantined()}
    assert refused == {"wrong_unit", "out_of_range"}

    status, body = cascata_local.request("GET", "/devices/greenhouse-1")
    assert status == 200
    assert [(a["start"], a["limit"]) for a in body["alerts"]] == [
        ("2026-06-01T12:01:00Z", "40"), ("2026-06-01T12:00:00Z", "40")]
    assert body["minutes_above"] == {"temperature": 2}
    assert body["latest"]["temperature"]["start"] == "2026-06-01T12:01:00Z"
    status, body = cascata_local.request("GET", "/devices/greenhouse-1/stats?metric=temperature")
    assert status == 200 and [w["count"] for w in body["windows"]] == [2, 2]
    assert cascata_local.request("GET", "/devices/nobody")[0] == 404
    assert cascata_local.request("GET", "/devices/greenhouse-1/stats?metric=noise")[0] == 400


def test_windows_and_alerts_are_exact_under_faults(cascata_chaos: Any) -> None:
    rng = random.Random(3)
    events: list[dict[str, Any]] = []
    readings: dict[tuple[str, str], list[int]] = {}
    for device in ("d-1", "d-2", "d-3"):
        for i in range(120):
            value = 41 if rng.random() < 0.03 else rng.choice([35, 36, 38, 39])
            second = i * 2
            events.append({"event_id": f"{device}-{i}", "type": "sensor.reading", "version": 1,
                           "key": device,
                           "occurred_at": f"2026-06-01T12:{second // 60:02d}:{second % 60:02d}Z",
                           "data": {"device_id": device, "metric": "temperature",
                                    "value": value, "unit": "C"}})
            start = f"2026-06-01T12:{second // 60:02d}:00Z"
            readings.setdefault((device, start), []).append(value)
    over = {key for key, values in readings.items() if max(values) > 40}
    assert 0 < len(over) < len(readings)
    for start in range(0, len(events), 30):  # rounds: more invocations, more faults met
        cascata_chaos.produce("readings-raw", events[start:start + 30])
        cascata_chaos.drain()
    faults = cascata_chaos.stats()
    assert faults["function_errors"] > 0 and faults["put_entries_failed"] > 0

    counts = {(i["device_id"], i["start"]): i["count"]
              for i in cascata_chaos.table("device-stats")}
    assert counts == {key: len(values) for key, values in readings.items()}
    # Producer retries reorder readings; a crash re-emits an alert with the same id. Neither
    # changes which minutes alert, nor how often the view counts them.
    emitted = {(a["data"]["device_id"], a["data"]["start"]) for a in
               cascata_chaos.records("alerts")}
    assert emitted == over
    for item in cascata_chaos.table("device-alerts"):
        device = item["device_id"]
        assert item["minutes_above"] == {"temperature": sum(1 for d, _ in over if d == device)}
        ids = [a["alert_id"] for a in item["recent"]]
        assert len(ids) == len(set(ids))
