"""Lambda handler of `query`: the serving layer's HTTP reads of the materialized views.

A thin shell: the API Gateway HTTP API event (payload format 2.0) is parsed into an
`HttpRequest`, the pure core (`payments.domain.query.serve`) routes it and shapes the answer,
and the views are read through `DynamoViewReader`. Each request first reads the live pointer
(`cascata_runtime.versions`) and then reads only the tables of that version, so a promote moves
every later request to the new version at once and no answer mixes two versions; the answer
names its version in `x-cascata-version`. Reads are eventually consistent (half the
read units of strongly consistent ones; a view a few milliseconds behind is what a serving
layer over streams offers anyway).

Routing is a small table over the declared route keys rather than Powertools'
`APIGatewayHttpResolver`: the resolver answers 404 where a wrong method deserves a 405 with
`Allow`, uses its own `<param>` route syntax instead of API Gateway's `{param}` (the routes are
declared once, in API Gateway's terms), and would be one more module to import on a cold
start. Errors are JSON answers; an unexpected exception is logged with its stack trace and
answered with a 500 that carries the request id and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cascata_runtime import adapters
from cascata_runtime.handler import ClientFactory, Handler, lazy
from cascata_runtime.http import HttpRequest, Response, api_handler
from cascata_runtime.versions import FIRST_VERSION, read_live, versioned_name
from payments.adapters import DynamoViewReader
from payments.domain.query import (
    View,
    ViewReader,
    serve,
)
from payments.settings import QuerySettings

PROCESSOR = "query"
SETTINGS = QuerySettings

_PRIMARY_KEY = {View.BALANCES: "account_id", View.PROFILES: "customer_id"}


@dataclass(frozen=True, slots=True)
class Dependencies:
    reader: ViewReader | None
    """A fixed reader (one version); with `readers`, the reader of the live version instead."""
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    readers: Callable[[str], ViewReader] | None = None
    """version -> the reader of that version's tables."""
    live: Callable[[], str] = lambda: FIRST_VERSION
    """The live version, read once per request."""

    def reader_for(self, version: str) -> ViewReader:
        if self.readers is not None:
            return self.readers(version)
        assert self.reader is not None, "a reader or readers is required"
        return self.reader


def dependencies(settings: QuerySettings, client: ClientFactory = adapters.client) -> Dependencies:
    dynamodb = client("dynamodb")
    tables = {
        View.BALANCES: settings.balances_table,
        View.PROFILES: settings.profiles_table,
        View.ACTIVITY: settings.activity_table,
        View.ALERTS: settings.alerts_table,
    }

    built: dict[str, ViewReader] = {}

    def readers(version: str) -> ViewReader:
        if version not in built:
            built[version] = DynamoViewReader(
                dynamodb, {view: versioned_name(table, version) for view, table in tables.items()}
            )
        return built[version]

    return Dependencies(
        reader=None,
        readers=readers,
        live=lambda: read_live(dynamodb, settings.versions_table),
    )


def make_handler(deps: Dependencies) -> Handler:
    def answer(request: HttpRequest) -> Response:
        version = deps.live()
        response = serve(request, deps.reader_for(version), now=deps.now())
        return Response(response.status, response.body,
                        {**response.headers, "x-cascata-version": version})

    return api_handler(PROCESSOR, answer)


handler = lazy(lambda: make_handler(dependencies(QuerySettings.from_env())))
