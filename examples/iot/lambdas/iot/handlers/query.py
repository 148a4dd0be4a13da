"""Lambda handler of `query`: GET /devices/{id} and GET /devices/{id}/stats.

Each request reads the live pointer first (`cascata_runtime.versions`) and then only the
tables of that version, so `cascata promote` moves every later request to a rebuilt version at
once; the answer names it in `x-cascata-version`. View reads are eventually consistent (half
the read units; a view a moment behind is what a serving layer over streams offers); the
answers are shaped by the pure `iot.domain.query`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from cascata_runtime import adapters
from cascata_runtime.api import Reply, Request, api_handler
from cascata_runtime.handler import ClientFactory, Handler, lazy
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
    def versioned(answer: Callable[[Views], Reply]) -> Reply:
        version = deps.live()
        reply = answer(deps.views.of(version))
        return Reply(reply.status, reply.body, {**reply.headers, "x-cascata-version": version})

    def device(request: Request) -> Reply:
        device = query.device_id(request)

        def answer(views: Views) -> Reply:
            latest = {metric: views.windows(device, metric, 1) for metric in METRICS}
            return query.device_reply(device, views.alerts(device), latest)

        return versioned(answer)

    def stats(request: Request) -> Reply:
        device, metric, limit = query.stats_query(request)
        return versioned(lambda views: query.stats_reply(
            device, metric, views.windows(device, metric, limit)))

    return api_handler(PROCESSOR, {"GET /devices/{id}": device,
                                   "GET /devices/{id}/stats": stats})


handler = lazy(lambda: make_handler(dependencies(QuerySettings.from_env())))
