"""The IoT domain alone: validation, windows, threshold crossings, answers. No AWS."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from iot.domain import query
from iot.domain.aggregates import EXCEEDED, StatsModel, window_of
from iot.domain.alerts import AlertsModel
from iot.domain.readings import Reading, parse_reading, validate_batch

from cascata_runtime.effects import Keyed
from cascata_runtime.envelope import Envelope, Rejection, SourcePosition
from cascata_runtime.http import ApiError, HttpRequest
from cascata_runtime.lineage import Lineage


def reading(event_id: str, value: Any, *, metric: str = "temperature", unit: str = "C",
            device: str = "d-1", second: int = 0, key: str | None = None,
            etype: str = "sensor.reading") -> Envelope:
    return Envelope(event_id=event_id, type=etype, version=1, key=key or device,
                    occurred_at=datetime(2026, 6, 1, 12, second // 60, second % 60, tzinfo=UTC),
                    data={"device_id": device, "metric": metric, "value": value, "unit": unit},
                    correlation_id=event_id)


def valid(event: Envelope) -> Reading:
    parsed = parse_reading(event)
    assert isinstance(parsed, Reading)
    return parsed


@pytest.mark.parametrize(("event", "code"), [
    (reading("a", 20, etype="sensor.other"), "unexpected_type"),
    (reading("a", 20, device="bad id!"), "invalid_device"),
    (reading("a", 20, key="other"), "key_mismatch"),
    (reading("a", 20, metric="noise"), "unknown_metric"),
    (reading("a", 20, unit="F"), "wrong_unit"),
    (reading("a", "twenty"), "invalid_value"),
    (reading("a", "NaN"), "invalid_value"),
    (reading("a", True), "invalid_value"),
    (reading("a", "1" * 13), "invalid_value"),
    (reading("a", 151), "out_of_range"),
    (reading("a", 101, metric="humidity", unit="%"), "out_of_range"),
])
def test_an_invalid_reading_is_refused_with_its_reason(event: Envelope, code: str) -> None:
    refused = parse_reading(event)
    assert isinstance(refused, Rejection) and refused.code == code


def test_values_are_exact_decimals_and_normalised() -> None:
    assert valid(reading("a", 38.5)).value == Decimal("38.5")
    assert valid(reading("a", "41.250")).data()["value"] == "41.25"
    assert valid(reading("a", "0.0")).value == 0
    effects = validate_batch([reading("a", 20), reading("b", 500), None, Rejection("$", "x", "y")],
                             output_stream="readings")
    assert [e.cause for e in effects.emissions] == [0]
    assert [i for i, _ in effects.quarantined] == [1, 3]


def _keyed(key: Any, events: list[Envelope]) -> list[Keyed[Any, Reading]]:
    return [Keyed(key, valid(e), i, Lineage(SourcePosition("readings", "shard-0", str(i))))
            for i, e in enumerate(events)]


def test_a_minute_window_aggregates_exactly() -> None:
    model = StatsModel("alerts")
    events = [reading("a", "0.1", second=5), reading("b", "0.2", second=30),
              reading("c", "0.3", second=59)]
    key = ("d-1", window_of(valid(events[0]))[0])
    assert key[1] == "temperature#2026-06-01T12:00:00Z"
    state = model.apply(key, model.load(key, None), _keyed(key, events)).state
    item = model.dump(key, state)
    assert item == {"metric": "temperature", "start": "2026-06-01T12:00:00Z",
                    "end": "2026-06-01T12:01:00Z", "count": 3, "sum": Decimal("0.6"),
                    "min": Decimal("0.1"), "max": Decimal("0.3")}
    again = model.apply(key, model.load(key, item), _keyed(key, [reading("d", 1, second=1)]))
    assert model.dump(key, again.state)["count"] == 4
    assert window_of(valid(reading("e", 1, second=60)))[1] == "2026-06-01T12:01:00Z"


def test_a_minute_over_its_limit_alerts_once_whatever_the_order() -> None:
    model = StatsModel("alerts")
    values = [39, 41, 45, 38]
    events = [reading(f"r{i}", v, second=i) for i, v in enumerate(values)]
    key = ("d-1", "temperature#2026-06-01T12:00:00Z")
    outcome = model.apply(key, model.load(key, None), _keyed(key, events))
    [alert] = outcome.emissions
    assert (alert.envelope.type, alert.cause) == (EXCEEDED, 1)
    assert dict(alert.envelope.data) == {"device_id": "d-1", "metric": "temperature",
                                         "start": "2026-06-01T12:00:00Z",
                                         "end": "2026-06-01T12:01:00Z", "limit": "40"}
    backwards = model.apply(key, model.load(key, None), _keyed(key, events[::-1]))
    assert [e.envelope for e in backwards.emissions] == [alert.envelope]
    later = model.apply(key, outcome.state, _keyed(key, [reading("r9", 50, second=9)]))
    assert later.emissions == ()
    humid = ("d-1", "humidity#2026-06-01T12:00:00Z")
    quiet = model.apply(humid, model.load(humid, None), _keyed(humid, [
        reading("h", 80, metric="humidity", unit="%")]))
    assert quiet.emissions == ()


def test_the_alerts_view_counts_each_window_once_newest_first() -> None:
    stats = StatsModel("alerts")
    alerts = []
    for minute in (3, 1, 2):
        key = ("d-1", f"temperature#2026-06-01T12:0{minute}:00Z")
        out = stats.apply(key, stats.load(key, None),
                          _keyed(key, [reading(f"m{minute}", 41, second=minute * 60)]))
        alerts.extend(e.envelope for e in out.emissions)
    view = AlertsModel()
    inputs = [Keyed("d-1", a, i, Lineage(SourcePosition("alerts", "s", str(i))))
              for i, a in enumerate([*alerts, alerts[0]])]
    state = view.apply("d-1", view.load("d-1", None), inputs).state
    assert dict(state.minutes_above) == {"temperature": 3}
    assert [a["start"] for a in state.recent] == [
        "2026-06-01T12:03:00Z", "2026-06-01T12:02:00Z", "2026-06-01T12:01:00Z"]
    assert view.load("d-1", view.dump("d-1", state)) == state


def _request(params: dict[str, str], query_string: dict[str, str]) -> HttpRequest:
    return HttpRequest(route_key="GET /devices/{id}/stats", method="GET",
                       path=f"/devices/{params.get('id', '')}/stats", path_parameters=params,
                       query=query_string, headers={}, body=None, is_base64=False,
                       request_id="r")


def test_the_answers_check_their_input() -> None:
    bad = query.stats_query(_request({"id": "d-1"}, {"metric": "x"}))
    assert isinstance(bad, ApiError) and (bad.status, bad.parameter) == (400, "metric")
    assert isinstance(query.stats_query(_request({"id": "d-1"}, {"limit": "0"})), ApiError)
    assert isinstance(query.stats_query(_request({"id": "no such!"}, {})), ApiError)
    assert query.stats_query(_request({"id": "d-1"}, {"metric": "co2", "limit": "5"})) == (
        "d-1", "co2", 5)
    missing = query.device_answer("d-9", None, {"temperature": []})
    assert missing.status == 404
    found = query.device_answer("d-1", {"minutes_above": {"temperature": Decimal(2)},
                                        "recent": [{"limit": "40"}]},
                                {"temperature": [{"start": "s", "end": "e", "count": Decimal(2),
                                                  "sum": Decimal("80.5"), "min": Decimal(40),
                                                  "max": Decimal("40.5")}]})
    assert found.body["minutes_above"] == {"temperature": 2}
    assert found.body["latest"]["temperature"] == {
        "start": "s", "end": "e", "count": 2, "min": 40, "max": "40.5", "sum": "80.5",
        "mean": "40.25"}
