"""The local HTTP front of the declared API functions: API Gateway's HTTP API on 127.0.0.1.

`serve(routes, port)` starts a threaded HTTP server that does locally what an API Gateway HTTP
API with Lambda proxy integrations (payload format 2.0) does on AWS:

- it matches each request to a route key (`GET /accounts/{id}`, `ANY /x`, `{name+}` greedy
  variables, `$default`), the most specific route first, as API Gateway does; no match is a
  404 `{"message":"Not Found"}` (a known path with another method is no match either);
- it builds the v2 event (reference/lambda-esm.md 7.6): `routeKey`, `rawPath`,
  `rawQueryString`, lower-cased headers with repeated values comma-joined, `cookies` split out
  of the Cookie header, `queryStringParameters` with repeated values comma-joined,
  `pathParameters`, the body as text for textual content types and base64 otherwise, and a
  `requestContext` with `http.method/path/protocol/sourceIp/userAgent`, `requestId`, `time`,
  `timeEpoch`, stage `$default`;
- it invokes the route's handler in the request's thread and turns the answer into HTTP: a
  format 2.0 response object (`statusCode`, `headers`, `cookies`, `body`, `isBase64Encoded`),
  or any other JSON value as a 200 `application/json`; a handler that raises or answers
  something API Gateway would not accept is a 500 `{"message":"Internal Server Error"}`,
  with the traceback logged here and never sent;
- it refuses bodies over 10 MB (API Gateway's payload limit) with a 413 before reading them.

The server binds 127.0.0.1 only and `shutdown()` stops it, closing open keep-alive
connections, so a test or `cascata up` leaves no thread behind.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from cascata.aws_env import arn
from cascata.local.guard import refusal
from cascata.pipeline import LOCAL_ACCOUNT, LOCAL_REGION, ApiFunction
from cascata_runtime.routes import match_path

MAX_BODY_BYTES = 10 * 1024 * 1024
"""API Gateway's maximum payload size."""
MAX_LINE_BYTES = 1024
"""A chunk-size or trailer line."""
MAX_TRAILERS = 32
MAX_CONNECTIONS = 64
"""Connections served at once (a thread each); more wait in the listen backlog."""
BACKLOG = 256
DEFAULT_ROUTE = "$default"
IDLE_TIMEOUT_S = 30.0
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_TYPES = frozenset({
    "application/json", "application/xml", "application/javascript",
    "application/x-www-form-urlencoded", "application/graphql", "application/yaml",
})

_DIGITS = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,8}")

log = logging.getLogger(__name__)

ApiHandler = Callable[[dict[str, Any], Any], Any]
"""A Lambda handler: (event, context) -> response."""
ContextFactory = Callable[[str], Any]
"""route key -> the Lambda context object for one invocation."""


class InvalidResponseError(ValueError):
    """The handler answered something API Gateway would turn into a 500."""


# --------------------------------------------------------------------------------------------
# Routes


@dataclass(frozen=True, slots=True)
class _Route:
    key: str
    method: str
    segments: tuple[str, ...]
    handler: ApiHandler

    @property
    def rank(self) -> tuple[int, int, int]:
        """Lower is more specific: literal segments, then no greedy variable, then a method."""
        literal = sum(1 for s in self.segments if not s.startswith("{"))
        greedy = int(any(s.endswith("+}") for s in self.segments))
        return (-literal, greedy, int(self.method == "ANY"))

    def match(self, method: str, raw_path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        return match_path(self.segments, raw_path)


class Routes:
    """Route keys to handlers, matched with API Gateway's priorities."""

    def __init__(self, routes: Mapping[str, ApiHandler]) -> None:
        self._default = routes.get(DEFAULT_ROUTE)
        parsed: list[_Route] = []
        for key, handler in routes.items():
            if key == DEFAULT_ROUTE:
                continue
            method, sep, path = key.partition(" ")
            if not sep or not path.startswith("/") or method not in (*_METHODS, "ANY"):
                raise ValueError(f"route key {key!r} is not 'METHOD /path' or '$default'")
            parsed.append(_Route(key, method, tuple(path.split("/")[1:]), handler))
        self._routes = sorted(parsed, key=lambda r: r.rank)

    def match(self, method: str, raw_path: str) -> tuple[str, dict[str, str], ApiHandler] | None:
        for route in self._routes:
            params = route.match(method, raw_path)
            if params is not None:
                return route.key, params, route.handler
        if self._default is not None:
            return DEFAULT_ROUTE, {}, self._default
        return None


def api_routes(
    apis: Iterable[ApiFunction], build: Callable[[str], ApiHandler]
) -> dict[str, ApiHandler]:
    """Every declared route of these API functions -> its function's handler, built once."""
    routes: dict[str, ApiHandler] = {}
    for api in apis:
        handler = build(api.name)
        for route in api.routes:
            routes[route.key] = handler
    return routes


# --------------------------------------------------------------------------------------------
# Events and responses, as API Gateway builds and reads them


def is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith("text/")
        or media in _TEXT_TYPES
        or media.endswith("+json")
        or media.endswith("+xml")
    )


def request_time(epoch_s: float) -> str:
    """`23/Nov/2026:20:41:07 +0000`, with English month names whatever the locale."""
    t = datetime.fromtimestamp(epoch_s, UTC)
    return f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"


def new_request_id() -> str:
    """Shaped like API Gateway's (`JKJaXmPLvHcESHA=`)."""
    return base64.b64encode(os.urandom(10)).decode()


def build_event(
    *,
    route_key: str,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    path_parameters: Mapping[str, str],
    source_ip: str,
    protocol: str = "HTTP/1.1",
    request_id: str | None = None,
    epoch_s: float | None = None,
    account: str = LOCAL_ACCOUNT,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends for this request (`target` is the
    request-line target: path and query string, still percent-encoded)."""
    raw_path, _, raw_query = target.partition("?")
    raw_path = raw_path or "/"
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lname = name.lower()
        if lname == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[lname] = f"{joined[lname]},{value}" if lname in joined else value
    joined.setdefault("x-forwarded-for", source_ip)
    joined.setdefault("x-forwarded-proto", "http")
    epoch_s = time.time() if epoch_s is None else epoch_s
    trace = f"Root=1-{int(epoch_s):08x}-{os.urandom(12).hex()}"
    joined.setdefault("x-amzn-trace-id", trace)
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    request_id = request_id or new_request_id()
    domain = joined.get("host", "127.0.0.1")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    event["requestContext"] = {
        "accountId": account,
        "apiId": "local",
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": request_time(epoch_s),
        "timeEpoch": int(epoch_s * 1000),
    }
    if body:
        text: str | None = None
        if is_text(joined.get("content-type")):
            with contextlib.suppress(UnicodeDecodeError):
                text = body.decode("utf-8")
        event["body"] = text if text is not None else base64.b64encode(body).decode()
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def to_http(response: Any) -> HttpAnswer:
    """A handler's answer as API Gateway turns it into HTTP (payload format 2.0)."""
    if not (isinstance(response, dict) and "statusCode" in response):
        try:
            body = json.dumps(response).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidResponseError(f"the response is not JSON: {exc}") from None
        return HttpAnswer(200, (("content-type", "application/json"),), body)
    status = response["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise InvalidResponseError(f"statusCode {status!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    raw_headers = response.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise InvalidResponseError("headers must be an object")
    for name, value in raw_headers.items():
        if not isinstance(value, str | int | float | bool):
            raise InvalidResponseError(f"header {name!r} must be a string")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "\r" in text or "\n" in text or "\r" in str(name) or "\n" in str(name):
            raise InvalidResponseError(f"header {name!r} holds a line break")
        if str(name).lower() not in ("content-length", "transfer-encoding", "connection"):
            headers.append((str(name), text))
    cookies = response.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise InvalidResponseError("cookies must be a list of strings")
    headers.extend(("set-cookie", c) for c in cookies)
    raw_body = response.get("body")
    if raw_body is None:
        body = b""
    elif not isinstance(raw_body, str):
        raise InvalidResponseError("body must be a string")
    elif response.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw_body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidResponseError("body is not valid base64") from None
    else:
        body = raw_body.encode("utf-8")
    return HttpAnswer(status, tuple(headers), body)


_NOT_FOUND = HttpAnswer(404, (("content-type", "application/json"),),
                        b'{"message":"Not Found"}')
_TOO_LARGE = HttpAnswer(413, (("content-type", "application/json"),),
                        b'{"message":"Request Entity Too Large"}')
_BAD_REQUEST = HttpAnswer(400, (("content-type", "application/json"),),
                          b'{"message":"Bad Request"}')
_INTERNAL = HttpAnswer(500, (("content-type", "application/json"),),
                       b'{"message":"Internal Server Error"}')


# --------------------------------------------------------------------------------------------
# The server


class _BodyTooLargeError(Exception):
    pass


class _BadRequestError(Exception):
    pass


class LocalContext:
    """A Lambda context with the attributes Powertools reads (reference 7.7)."""

    def __init__(self, function_name: str, *, timeout_s: float = 29.0,
                 region: str = LOCAL_REGION) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn("lambda", f"function:{function_name}", region=region,
                                        account=LOCAL_ACCOUNT)
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local/[$LATEST]http"
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most `MAX_CONNECTIONS` at once; further clients wait in a
    listen backlog of `BACKLOG` until one closes (API Gateway also holds many clients)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], front: LocalHttpServer) -> None:
        self.front = front
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.closing = threading.Event()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Accepting waits for a free slot; the kernel's backlog holds the clients meanwhile.
        while not self._slots.acquire(timeout=0.1):
            if self.closing.is_set():
                self.shutdown_request(request)
                return
        with self.connections_lock:
            self.connections.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is routine; anything else is logged with its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("client %s went away: %s", client_address[0], error)
        else:
            log.exception("error serving a request from %s", client_address[0])


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "cascata-local-api"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S

    def do_request(self) -> None:
        front = self.server.front
        why = refusal(self.headers.get("host"), self.headers.get("origin"),
                      port=front.port)
        if why is not None:
            log.warning("refused %s %s: %s", self.command, self.path[:200], why)
            self.close_connection = True
            self._write(HttpAnswer(403, (("content-type", "application/json"),),
                                   json.dumps({"message": why}).encode()), new_request_id())
            return
        try:
            body = self._read_body()
        except _BodyTooLargeError:
            self.close_connection = True
            self._write(_TOO_LARGE, new_request_id())
            return
        except _BadRequestError:
            self.close_connection = True
            self._write(_BAD_REQUEST, new_request_id())
            return
        answer, request_id = front.answer(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        self._write(answer, request_id)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_request

    def handle_expect_100(self) -> bool:
        # curl asks before sending a large body: refuse an oversized one before it is sent.
        raw = self.headers.get("content-length", "").strip()
        if _DIGITS.fullmatch(raw) and int(raw) > MAX_BODY_BYTES:
            self.close_connection = True
            self._write(_TOO_LARGE, new_request_id())
            return False
        return super().handle_expect_100()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("content-length")
        if raw is None:
            return b""
        if not _DIGITS.fullmatch(raw.strip()):
            raise _BadRequestError
        length = int(raw)
        if length > MAX_BODY_BYTES:
            raise _BodyTooLargeError
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        """A chunked body, bounded: each size line is hex digits only (no sign, no spaces), the
        total stays under `MAX_BODY_BYTES`, and trailers are few and short."""
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(MAX_LINE_BYTES + 1)
            if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
                raise _BadRequestError
            size_text = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):
                raise _BadRequestError
            size = int(size_text, 16)
            if size == 0:
                for _ in range(MAX_TRAILERS + 1):
                    trailer = self.rfile.readline(MAX_LINE_BYTES + 1)
                    if not trailer.strip():
                        return b"".join(chunks)
                raise _BadRequestError
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyTooLargeError
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _BadRequestError
            chunks.append(chunk)

    def _write(self, answer: HttpAnswer, request_id: str) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(answer.body)))
        self.send_header("apigw-requestid", request_id)
        if self.close_connection:
            self.send_header("connection", "close")
        try:
            self.end_headers()
            if self.command != "HEAD" and answer.body:
                self.wfile.write(answer.body)
        except ConnectionError:  # the client went away: nothing to answer
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class LocalHttpServer:
    """The running front; `url` is where it listens, `shutdown()` stops it."""

    def __init__(
        self,
        routes: Mapping[str, ApiHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        context: ContextFactory | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.routes = Routes(routes)
        self._context = context or (lambda route_key: LocalContext("cascata-local-api"))
        self._clock = clock
        self._server = _Server((host, port), self)
        address = self._server.server_address
        self.host: str = str(address[0])
        self.port: int = int(address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"cascata-http-{self.port}", daemon=True,
        )
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalHttpServer:
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop accepting, close idle keep-alive connections, release the port. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._server.closing.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        with self._server.connections_lock:
            open_connections = list(self._server.connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def __enter__(self) -> LocalHttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def answer(
        self,
        *,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        protocol: str = "HTTP/1.1",
    ) -> tuple[HttpAnswer, str]:
        """What API Gateway answers to this request (also usable without a socket)."""
        request_id = new_request_id()
        raw_path = target.partition("?")[0] or "/"
        found = self.routes.match(method, raw_path)
        if found is None:
            return _NOT_FOUND, request_id
        route_key, params, handler = found
        event = build_event(
            route_key=route_key, method=method, target=target, headers=headers, body=body,
            path_parameters=params, source_ip=source_ip, protocol=protocol,
            request_id=request_id, epoch_s=self._clock(),
        )
        try:
            response = handler(event, self._context(route_key))
            return to_http(response), request_id
        except Exception:  # API Gateway answers 500; the trace stays in this log
            log.exception("%s %s failed (request %s)", method, raw_path, request_id)
            return _INTERNAL, request_id


def serve(
    routes: Mapping[str, ApiHandler],
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    context: ContextFactory | None = None,
    clock: Callable[[], float] = time.time,
) -> LocalHttpServer:
    """Start serving `routes` (route key -> handler) on host:port (0: any free port)."""
    return LocalHttpServer(routes, host=host, port=port, context=context, clock=clock).start()
