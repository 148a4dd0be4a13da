"""The local HTTP front: real HTTP requests on 127.0.0.1 to stub handlers.

Each test starts the server on an ephemeral port, talks to it with urllib (http.client where
urllib cannot say it: repeated headers, a lying Content-Length, chunked bodies, keep-alive),
and checks the API Gateway v2 event the handler received and the HTTP answer the client got.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from cascata.local.http import MAX_BODY_BYTES, LocalHttpServer, api_routes, serve
from payments.pipeline import PIPELINE

CLOCK = 1_795_615_560.25


class Recorder:
    """A handler that keeps the events it receives and answers what it is told."""

    def __init__(self, answer: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.answer = answer if answer is not None else {
            "statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{}"
        }

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def front() -> Iterator[tuple[LocalHttpServer, dict[str, Recorder]]]:
    handlers = {
        "GET /accounts/{id}": Recorder(),
        "GET /accounts/me": Recorder(),
        "GET /accounts/{id}/alerts": Recorder(),
        "POST /events": Recorder(),
        "ANY /files/{path+}": Recorder(),
    }
    server = serve(handlers, port=0, clock=lambda: CLOCK,
                   context=lambda route_key: f"context for {route_key}")
    try:
        yield server, handlers
    finally:
        server.shutdown()


def request(server: LocalHttpServer, method: str, target: str, *, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"{server.url}{target}", method=method, data=body,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_the_server_listens_on_loopback_on_an_ephemeral_port(front: Any) -> None:
    server, _ = front
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_a_request_becomes_the_v2_event_api_gateway_sends(front: Any) -> None:
    server, handlers = front
    # When a GET with a path parameter, a repeated query parameter and cookies arrives
    status, headers, _ = request(
        server, "GET", "/accounts/al%2Dice?limit=5&tag=a&tag=b&empty=",
        headers={"X-Custom": "Yes", "Cookie": "session=abc; theme=dark", "User-Agent": "t/1"})
    # Then the handler gets the route key, raw and parsed parts and the request context
    assert status == 200
    event = handlers["GET /accounts/{id}"].events[0]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /accounts/{id}"
    assert event["rawPath"] == "/accounts/al%2Dice"
    assert event["rawQueryString"] == "limit=5&tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"limit": "5", "tag": "a,b", "empty": ""}
    assert event["pathParameters"] == {"id": "al-ice"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-custom"] == "Yes"
    assert all(name == name.lower() for name in event["headers"])
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert "body" not in event and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"] == {"method": "GET", "path": "/accounts/al%2Dice", "protocol": "HTTP/1.1",
                           "sourceIp": "127.0.0.1", "userAgent": "t/1"}
    assert ctx["stage"] == "$default"
    assert ctx["routeKey"] == "GET /accounts/{id}"
    assert ctx["timeEpoch"] == 1_795_615_560_250
    assert ctx["time"] == "25/Nov/2026:14:06:00 +0000"
    assert ctx["requestId"] == headers["apigw-requestid"]
    # And the context is the one the factory made for that route
    assert handlers["GET /accounts/{id}"].contexts == ["context for GET /accounts/{id}"]


def test_repeated_headers_are_joined_with_commas(front: Any) -> None:
    server, handlers = front
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.putrequest("GET", "/accounts/alice")
    conn.putheader("X-Tag", "one")
    conn.putheader("x-tag", "two")
    conn.endheaders()
    assert conn.getresponse().status == 200
    conn.close()
    assert handlers["GET /accounts/{id}"].events[0]["headers"]["x-tag"] == "one,two"


def test_a_literal_route_wins_over_a_parameter_and_greedy_variables_take_the_rest(
    front: Any,
) -> None:
    server, handlers = front
    request(server, "GET", "/accounts/me")
    request(server, "GET", "/accounts/bob/alerts")
    request(server, "DELETE", "/files/a/b%20c.txt")
    assert len(handlers["GET /accounts/me"].events) == 1
    assert handlers["GET /accounts/{id}"].events == []
    assert handlers["GET /accounts/{id}/alerts"].events[0]["pathParameters"] == {"id": "bob"}
    files = handlers["ANY /files/{path+}"].events[0]
    assert files["pathParameters"] == {"path": "a/b c.txt"}
    assert files["routeKey"] == "ANY /files/{path+}"


@pytest.mark.parametrize(("method", "target"), [
    ("GET", "/nowhere"), ("GET", "/accounts"), ("GET", "/accounts/"),
    ("GET", "/accounts/a/b/c"), ("PUT", "/events"), ("DELETE", "/accounts/alice"),
])
def test_an_unknown_route_is_api_gateways_404(front: Any, method: str, target: str) -> None:
    server, handlers = front
    status, headers, body = request(server, method, target)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "Not Found"}
    assert all(not h.events for h in handlers.values())


def test_a_default_route_catches_what_nothing_else_matches() -> None:
    fallback = Recorder({"caught": True})
    with serve({"$default": fallback, "GET /x": Recorder()}) as server:
        status, _, body = request(server, "PATCH", "/anything/at/all?q=1")
    assert status == 200 and json.loads(body) == {"caught": True}
    assert fallback.events[0]["routeKey"] == "$default"


def test_a_json_body_is_passed_as_text(front: Any) -> None:
    server, handlers = front
    payload = json.dumps([{"event_id": "e1", "note": "caf\u00e9"}]).encode()
    request(server, "POST", "/events", body=payload,
            headers={"Content-Type": "application/json; charset=utf-8"})
    event = handlers["POST /events"].events[0]
    assert event["isBase64Encoded"] is False
    assert event["body"] == payload.decode()
    assert event["headers"]["content-length"] == str(len(payload))


@pytest.mark.parametrize(("content_type", "payload"), [
    ("application/octet-stream", b"\x00\x01\x02binary"),
    ("text/plain", b"\xff\xfe not utf-8"),
    (None, b"no content type"),
])
def test_a_body_that_is_not_text_is_base64_encoded(
    front: Any, content_type: str | None, payload: bytes
) -> None:
    server, handlers = front
    headers = {"Content-Type": content_type} if content_type else {}
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/events", body=payload, headers=headers)
    assert conn.getresponse().status == 200
    conn.close()
    event = handlers["POST /events"].events[0]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_a_chunked_body_is_read_whole(front: Any) -> None:
    server, handlers = front
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/events", body=iter([b'[{"a":', b"1}]"]),
                 headers={"Content-Type": "application/json"}, encode_chunked=True)
    assert conn.getresponse().status == 200
    conn.close()
    assert handlers["POST /events"].events[0]["body"] == '[{"a":1}]'


def test_a_body_over_10_mb_is_a_413_before_it_is_read(front: Any) -> None:
    server, handlers = front
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.putrequest("POST", "/events")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()  # no body sent: the front must answer without waiting for it
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {"message": "Request Entity Too Large"}
    conn.close()
    assert handlers["POST /events"].events == []


def test_an_oversized_body_announced_with_expect_100_continue_is_refused_at_once(
    front: Any,
) -> None:
    server, handlers = front
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.putrequest("POST", "/events")
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    response = conn.getresponse()  # a 413 instead of "100 Continue"
    assert response.status == 413
    conn.close()
    assert handlers["POST /events"].events == []


def test_a_small_body_announced_with_expect_100_continue_is_delivered(front: Any) -> None:
    server, handlers = front
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 100")
        sock.sendall(b"[]")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    assert handlers["POST /events"].events[0]["body"] == "[]"


def test_a_chunked_body_over_10_mb_is_a_413(front: Any) -> None:
    server, handlers = front
    chunk = b"x" * (1024 * 1024)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("POST", "/events", body=iter([chunk] * 11),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        status = conn.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        status = 413  # the front may close before the client has finished sending
    finally:
        conn.close()
    assert status == 413
    assert handlers["POST /events"].events == []


def test_a_body_of_exactly_10_mb_is_delivered(front: Any) -> None:
    server, handlers = front
    payload = b"a" * MAX_BODY_BYTES
    status, _, _ = request(server, "POST", "/events", body=payload,
                           headers={"Content-Type": "text/plain"})
    assert status == 200
    assert len(handlers["POST /events"].events[0]["body"]) == MAX_BODY_BYTES


def test_a_format_2_response_is_written_as_is() -> None:
    answer = {
        "statusCode": 201,
        "headers": {"content-type": "image/png", "x-version": 3},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(b"\x89PNG").decode(),
        "isBase64Encoded": True,
    }
    with serve({"GET /img": Recorder(answer)}) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("GET", "/img")
        response = conn.getresponse()
        body = response.read()
        cookies = response.headers.get_all("set-cookie")
        conn.close()
    assert response.status == 201
    assert body == b"\x89PNG"
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-version"] == "3"
    assert cookies == ["a=1; Path=/", "b=2"]


@pytest.mark.parametrize("value", [[1, 2], {"no": "statusCode"}, "text", 42, None])
def test_any_other_json_value_is_a_200_json_answer(value: Any) -> None:
    handler = Recorder()
    handler.answer = value
    with serve({"GET /v": handler}) as server:
        status, headers, body = request(server, "GET", "/v")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == value


@pytest.mark.parametrize("answer", [
    RuntimeError("secret detail"),
    {"statusCode": "abc"},
    {"statusCode": 200, "body": {"not": "a string"}},
    {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    {"statusCode": 200, "headers": {"x": "a\r\nInjected: 1"}},
    {1, 2},
])
def test_a_failing_or_invalid_handler_is_a_500_and_the_server_carries_on(answer: Any) -> None:
    with serve({"GET /boom": Recorder(answer), "GET /ok": Recorder()}) as server:
        status, headers, body = request(server, "GET", "/boom")
        assert status == 500 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"message": "Internal Server Error"}
        assert b"secret" not in body and b"Traceback" not in body
        assert request(server, "GET", "/ok")[0] == 200


def test_requests_are_served_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=5)

    def meet(event: dict[str, Any], context: Any) -> Any:
        barrier.wait()  # both requests must be in a handler at the same time
        return {"met": True}

    with serve({"GET /meet": meet}) as server:
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(
            request(server, "GET", "/meet")[0])) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert results == [200, 200]


def test_shutdown_stops_serving_even_with_a_keep_alive_connection_open() -> None:
    server = serve({"GET /x": Recorder()})
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/x")
    response = conn.getresponse()
    response.read()
    assert response.status == 200 and not response.will_close  # kept alive
    before = threading.active_count()
    started = time.monotonic()
    server.shutdown()
    assert time.monotonic() - started < 5
    server.shutdown()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.url}/x", timeout=2)
    deadline = time.monotonic() + 5
    while threading.active_count() >= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() < before  # the connection's thread ended
    conn.close()


def test_every_declared_api_route_is_served_by_its_function() -> None:
    built: list[str] = []

    def build(name: str) -> Any:
        built.append(name)
        return Recorder({"function": name})

    routes = api_routes(PIPELINE.apis, build)
    assert set(routes) == {r.key for api in PIPELINE.apis for r in api.routes}
    assert built == [api.name for api in PIPELINE.apis]  # one handler per function
    with serve(routes) as server:
        status, _, body = request(server, "GET", "/accounts/alice/alerts?limit=2")
    assert status == 200 and json.loads(body) == {"function": "query"}


@pytest.mark.parametrize("key", ["GET", "GET accounts", "FETCH /x", "/x"])
def test_a_malformed_route_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="route key"):
        serve({key: Recorder()})
