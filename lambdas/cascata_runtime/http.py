"""The HTTP shell of an API function behind an API Gateway HTTP API (payload format 2.0).

`HttpRequest.from_event` reads what a handler needs of the event; a function's pure core
answers a `Response` or refuses with an `ApiError` (a stable machine-readable code and a
sentence); `RouteTable` resolves a request to one of the function's declared routes (API
Gateway's `routeKey` is trusted; a `$default` or `ANY` route is matched here, with a 405 and
`Allow` for a known path with the wrong method). `api_handler` wraps a request -> response
function as the Lambda handler: a DynamoDB throttle is a 503 with `retry-after`, any other
exception is logged with its trace and answered with a 500 that carries the request id and
nothing else. JSON throughout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aws_lambda_powertools import Logger

from cascata_runtime.routes import match_path, segments

JSON_CONTENT_TYPE = "application/json"
_THROTTLED = frozenset({
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
})


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer; the body is any JSON value and is always sent as application/json."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def to_event_response(self) -> dict[str, Any]:
        """The API Gateway payload format 2.0 response."""
        return {
            "statusCode": self.status,
            "headers": {"content-type": JSON_CONTENT_TYPE, **self.headers},
            "body": json.dumps(self.body, separators=(",", ":"), ensure_ascii=False,
                               allow_nan=False),
            "isBase64Encoded": False,
        }


@dataclass(frozen=True, slots=True)
class ApiError:
    """A refusal with a stable machine-readable code and a sentence for people."""

    status: int
    code: str
    message: str
    parameter: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.parameter is not None:
            body["parameter"] = self.parameter
        return Response(self.status, body, self.headers)


def bad_parameter(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message, parameter=name)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What a handler needs of an API Gateway HTTP API event (payload format 2.0)."""

    route_key: str
    method: str
    path: str
    """The request path without the stage prefix (API Gateway keeps it in rawPath)."""
    path_parameters: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: str | None
    is_base64: bool
    request_id: str

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> HttpRequest:
        """Raises ValueError when the event is not an HTTP API v2 event at all."""
        if not isinstance(event, Mapping) or event.get("version") != "2.0":
            raise ValueError("not an API Gateway HTTP API event (payload format 2.0)")
        context = event.get("requestContext")
        http = context.get("http") if isinstance(context, Mapping) else None
        if not isinstance(context, Mapping) or not isinstance(http, Mapping):
            raise ValueError("the event has no requestContext.http")
        method = str(http.get("method", "")).upper()
        path = str(event.get("rawPath") or http.get("path") or "/")
        stage = str(context.get("stage", "$default"))
        # On a named stage API Gateway keeps the stage in rawPath; routes never include it.
        if stage != "$default" and (path == f"/{stage}" or path.startswith(f"/{stage}/")):
            path = path[len(stage) + 1 :] or "/"
        body = event.get("body")
        return cls(
            route_key=str(event.get("routeKey", "")),
            method=method,
            path=path,
            path_parameters=_strings(event.get("pathParameters")),
            query=_strings(event.get("queryStringParameters")),
            headers={k.lower(): v for k, v in _strings(event.get("headers")).items()},
            body=body if isinstance(body, str) else None,
            is_base64=bool(event.get("isBase64Encoded", False)),
            request_id=str(context.get("requestId", "")),
        )


def _strings(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        return MappingProxyType({})
    return MappingProxyType({str(k): str(v) for k, v in value.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Matched:
    route_key: str
    parameters: Mapping[str, str]


class RouteTable:
    """Resolves a request to one of a function's routes, or to a 404 or 405.

    API Gateway has already matched the route and says so in `routeKey`; that is trusted.
    Anything else (a `$default` or `ANY` route proxying to the function) is matched here on
    the method and path, with API Gateway's `{name}` and `{name+}` templates.
    """

    def __init__(self, route_keys: Sequence[str]) -> None:
        self.route_keys = tuple(route_keys)
        self._templates = [
            (key, key.split(" ", 1)[0], segments(key.split(" ", 1)[1])) for key in route_keys
        ]

    def resolve(self, request: HttpRequest) -> Matched | ApiError:
        if request.route_key in self.route_keys:
            return Matched(request.route_key, request.path_parameters)
        allowed: set[str] = set()
        for key, method, template in self._templates:
            params = match_path(template, request.path)
            if params is None:
                continue
            if method == request.method:
                return Matched(key, params)
            allowed.add(method)
        if allowed:
            methods = ", ".join(sorted(allowed))
            return ApiError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.path}; allowed: {methods}",
                headers=MappingProxyType({"allow": methods}),
            )
        return ApiError(404, "not_found", f"no route for {request.method} {request.path}")


def api_handler(
    function: str, answer: Callable[[HttpRequest], Response], *, logger: Logger | None = None
) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    """Wraps a request -> response function as a Lambda handler behind an HTTP API."""
    logger = logger or Logger(service=function)

    @logger.inject_lambda_context(clear_state=True)
    def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        try:
            request = HttpRequest.from_event(event)
        except ValueError as exc:
            logger.error("not an HTTP API event", extra={"reason": str(exc)})
            return ApiError(400, "bad_request", str(exc)).response().to_event_response()
        logger.append_keys(request_id=request.request_id, route=request.route_key)
        try:
            response = answer(request)
        except Exception as exc:  # noqa: BLE001 - answered as a 5xx, logged with its trace
            response = _failure(exc, request, logger)
        if response.status >= 500:
            logger.warning("request answered with a server error",
                           extra={"status": response.status})
        return response.to_event_response()

    return handle


def _failure(exc: Exception, request: HttpRequest, logger: Logger) -> Response:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    if code in _THROTTLED:
        logger.warning("throttled by DynamoDB", extra={"code": code})
        return ApiError(503, "throttled", "the views are busy; retry shortly",
                        headers={"retry-after": "1"}).response()
    logger.exception("request failed")
    return Response(500, {"error": "internal_error", "message": "internal error",
                          "request_id": request.request_id})
