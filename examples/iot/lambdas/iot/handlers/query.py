"""Lambda handler of `query`: GET /devices/{id} and GET /devices/{id}/stats.

Each request reads the live pointer first (`cascata_runtime.versions`) and then only the
tables of that version, so `cascata promote` moves every later request to a rebuilt version at
once; the answer names it in `x-cascata-version`. View reads are eventually consistent (half
the read units; a view a moment behind is what a serving layer over streams offers); the
answers are shaped by the pure `iot.domain.query`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from cascata_runtime import adapters
from cascata_runtime.handler import ClientFactory, Handler, lazy
from cascata_runtime.http import ApiError, HttpRequest, Response, RouteTable, api_handler
from cascata_runtime.versions import read_live, versioned_name
from iot.domain import query
from iot.domain.readings import METRICS
from iot.settings import QuerySettings

PROCESSOR = "query"
SETTINGS = QuerySettings
_PLAIN = TypeDeserializer()


@dataclass(frozen=True, slots=True)
class Views:
    dynamodb: Any
    stats_table: str
    alerts_table: str

    def of(self, version: str) -> Views:
        return Views(self.dynamodb, versioned_name(self.stats_table, version),
                     versioned_name(self.alerts_table, version))

    def alerts(self, device: str) -> Mapping[str, Any] | None:
        item = self.dynamodb.get_item(TableName=self.alerts_table,
                                      Key={"device_id": {"S": device}}).get("Item")
        return _plain(item) if item else None

    def windows(self, device: str, metric: str, limit: int) -> list[Mapping[str, Any]]:
        """The device's newest `limit` minutes of `metric`, newest first."""
        found = self.dynamodb.query(
            TableName=self.stats_table, Limit=limit, ScanIndexForward=False,
            KeyConditionExpression="device_id = :d AND begins_with(#w, :m)",
            ExpressionAttributeNames={"#w": "window"},
            ExpressionAttributeValues={":d": {"S": device}, ":m": {"S": f"{metric}#"}})
        return [_plain(item) for item in found.get("Items", [])]


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _PLAIN.deserialize(v) for k, v in item.items()}


@dataclass(frozen=True, slots=True)
class Dependencies:
    views: Views
    live: Callable[[], str]
    """The live version, read per request."""


def dependencies(settings: QuerySettings, client: ClientFactory = adapters.client
                 ) -> Dependencies:
    dynamodb = client("dynamodb")
    return Dependencies(
        views=Views(dynamodb, settings.device_stats_table, settings.device_alerts_table),
        live=lambda: read_live(dynamodb, settings.versions_table))


def make_handler(deps: Dependencies) -> Handler:
    routes = RouteTable(query.ROUTES)

    def device(request: HttpRequest, views: Views) -> Response:
        device = query.device_id(request)
        if isinstance(device, ApiError):
            return device.response()
        latest = {metric: views.windows(device, metric, 1) for metric in METRICS}
        return query.device_answer(device, views.alerts(device), latest)

    def stats(request: HttpRequest, views: Views) -> Response:
        asked = query.stats_query(request)
        if isinstance(asked, ApiError):
            return asked.response()
        device, metric, limit = asked
        return query.stats_answer(device, metric, views.windows(device, metric, limit))

    answers = {"GET /devices/{id}": device, "GET /devices/{id}/stats": stats}

    def answer(request: HttpRequest) -> Response:
        matched = routes.resolve(request)
        if isinstance(matched, ApiError):
            return matched.response()
        resolved = replace(request, path_parameters=matched.parameters)
        version = deps.live()
        response = answers[matched.route_key](resolved, deps.views.of(version))
        return Response(response.status, response.body,
                        {**response.headers, "x-cascata-version": version})

    return api_handler(PROCESSOR, answer)


handler = lazy(lambda: make_handler(dependencies(QuerySettings.from_env())))
