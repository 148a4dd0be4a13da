"""The query API's answers, from the view items the handler reads. Pure: no AWS here.

`GET /devices/{id}`: minutes above the limit per metric, the recent alerts (newest minute
first) and the latest minute of each metric; 404 for a device never seen.
`GET /devices/{id}/stats?metric=temperature&limit=60`: the newest minutes of one metric.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from cascata_runtime.http import ApiError, HttpRequest, Response, bad_parameter
from iot.domain.readings import METRICS

ROUTES = ("GET /devices/{id}", "GET /devices/{id}/stats")
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
DEFAULT_LIMIT = 60
MAX_LIMIT = 1440


def device_id(request: HttpRequest) -> str | ApiError:
    device = request.path_parameters.get("id", "")
    if not _DEVICE.match(device):
        return bad_parameter("id", "the device id must be 1-64 characters of "
                                   "A-Z a-z 0-9 . _ : -")
    return device


def stats_query(request: HttpRequest) -> tuple[str, str, int] | ApiError:
    """(device, metric, limit) of a stats request, or why not."""
    device = device_id(request)
    if isinstance(device, ApiError):
        return device
    metric = request.query.get("metric", "temperature")
    if metric not in METRICS:
        return bad_parameter("metric", f"metric must be one of {', '.join(METRICS)}")
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        return bad_parameter("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return device, metric, int(raw)


def device_answer(device: str, alerts: Mapping[str, Any] | None,
                  latest: Mapping[str, Sequence[Mapping[str, Any]]]) -> Response:
    if alerts is None and not any(latest.values()):
        return ApiError(404, "unknown_device", f"no device {device!r}").response()
    return Response(200, {
        "device_id": device,
        "minutes_above": {k: int(v) for k, v in (alerts or {}).get("minutes_above", {}).items()},
        "alerts": [plain(a) for a in (alerts or {}).get("recent", [])],
        "latest": {metric: window(items[0]) for metric, items in latest.items() if items},
    })


def stats_answer(device: str, metric: str, items: Sequence[Mapping[str, Any]]) -> Response:
    return Response(200, {"device_id": device, "metric": metric,
                          "windows": [window(i) for i in items]})


def window(item: Mapping[str, Any]) -> dict[str, Any]:
    count = int(item["count"])
    total = Decimal(item["sum"])
    return {"start": item["start"], "end": item["end"], "count": count,
            "min": _number(item.get("min")), "max": _number(item.get("max")),
            "sum": _number(total), "mean": _number(total / count) if count else None}


def plain(value: Any) -> Any:
    """A view item's attribute as JSON: decimals as numbers (exact ones as strings)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return _number(value) if isinstance(value, Decimal) else value


def _number(value: Any) -> Any:
    """Whole decimals as integers; others as their exact decimal text (never a float)."""
    if not isinstance(value, Decimal):
        return value
    return int(value) if value == value.to_integral_value() else str(value.normalize())
