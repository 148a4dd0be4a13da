"""The query API's answers, from the view items the handler reads. Pure: no AWS here."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cascata_runtime.api import ApiError, Reply, Request
from iot.domain.readings import METRICS

_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
DEFAULT_LIMIT = 60
MAX_LIMIT = 1440


def device_id(request: Request) -> str:
    device = request.params.get("id", "")
    if not _DEVICE.match(device):
        raise ApiError(400, "the device id must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    return device


def stats_query(request: Request) -> tuple[str, str, int]:
    """(device, metric, limit) of `GET /devices/{id}/stats?metric=...&limit=...`."""
    device = device_id(request)
    metric = request.query.get("metric", "temperature")
    if metric not in METRICS:
        raise ApiError(400, f"metric must be one of {', '.join(METRICS)}")
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return device, metric, int(raw)


def device_reply(device: str, alerts: Mapping[str, Any] | None,
                 latest: Mapping[str, Sequence[Mapping[str, Any]]]) -> Reply:
    """`GET /devices/{id}`: minutes above the limit per metric, the recent alerts (newest
    minute first), and the latest minute of each metric; 404 for a device never seen."""
    if alerts is None and not any(latest.values()):
        raise ApiError(404, f"no device {device!r}")
    return Reply(200, {
        "device_id": device,
        "minutes_above": dict((alerts or {}).get("minutes_above", {})),
        "alerts": list((alerts or {}).get("recent", [])),
        "latest": {metric: window(items[0]) for metric, items in latest.items() if items},
    })


def stats_reply(device: str, metric: str, items: Sequence[Mapping[str, Any]]) -> Reply:
    return Reply(200, {"device_id": device, "metric": metric,
                       "windows": [window(i) for i in items]})


def window(item: Mapping[str, Any]) -> dict[str, Any]:
    count = int(item["count"])
    return {"start": item["start"], "end": item["end"], "count": count, "min": item.get("min"),
            "max": item.get("max"), "sum": item["sum"],
            "mean": item["sum"] / count if count else None}
