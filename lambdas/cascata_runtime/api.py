"""A thin shell for an API function behind an API Gateway HTTP API (payload format 2.0).

API Gateway has already matched the request to one of the function's declared routes: the
event carries its `routeKey` (`GET /devices/{id}`) and `pathParameters`. `api_handler` hands a
parsed `Request` to the route's function and turns its `Reply` (or an `ApiError`) into the
response API Gateway expects, JSON throughout. An unexpected exception is logged with its stack
trace and answered with a 500 that carries the request id and nothing else.

    def device(request: Request, views: Views) -> Reply: ...
    handler = api_handler("query", {"GET /devices/{id}": device})
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

MAX_BODY_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class Request:
    route: str
    params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    request_id: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise ApiError(400, "the body is not JSON") from None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A client error (4xx) or a dependency's (503), answered as `{"message": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Route = Callable[[Request], Reply]


def parse_request(event: Mapping[str, Any]) -> Request:
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes")
    context = event.get("requestContext") or {}
    return Request(
        route=str(event.get("routeKey", "")),
        params={str(k): str(v) for k, v in (event.get("pathParameters") or {}).items()},
        query={str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()},
        body=raw,
        request_id=str(context.get("requestId", "")),
    )


def response(reply: Reply) -> dict[str, Any]:
    return {
        "statusCode": reply.status,
        "headers": {"content-type": "application/json", **reply.headers},
        "body": json.dumps(reply.body, default=_number, separators=(",", ":")),
    }


def api_handler(processor: str, routes: Mapping[str, Route]
                ) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    """The Lambda handler of an API function serving `routes` (route key -> function)."""
    logger = Logger(service=processor)

    def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        request_id = str((event.get("requestContext") or {}).get("requestId", ""))
        try:
            request = parse_request(event)
            route = routes.get(request.route)
            if route is None:
                raise ApiError(404, f"no route {request.route!r}")
            return response(route(request))
        except ApiError as exc:
            return response(Reply(exc.status, {"message": exc.message}))
        except Exception:
            logger.exception("request failed", extra={"request_id": request_id})
            return response(Reply(500, {"message": "internal error",
                                        "request_id": request_id}))

    return handle


def _number(value: object) -> object:
    """DynamoDB numbers are Decimals: whole ones as integers, others as exact strings."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
