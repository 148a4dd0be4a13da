"""The ports `cascata up` serves answer this machine's programs, never a web page.

Real requests on 127.0.0.1 to the AWS emulator and to the HTTP API front: a page's cross-origin
requests and DNS-rebinding Host names are refused, no answer carries CORS headers, bodies are
read within bounds whatever the client claims, and many clients at once are all served.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from cascata.local.emulator import EmbeddedAws
from cascata.local.guard import host_allowed, origin_allowed, refusal
from cascata.local.http import MAX_CONNECTIONS, LocalHttpServer, serve
from tests.pipeline.bad_input_cases import case

PAGE = "http://attacker.example"


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.1:4566", "localhost", "LOCALHOST:80", "my-bucket.localhost:4566",
    "[::1]", "[::1]:4566", "127.9.9.9:1", "localhost.",
])
def test_loopback_host_names_are_served(host: str) -> None:
    assert host_allowed(host)


@pytest.mark.parametrize("host", [
    "attacker.example", "attacker.example:4566", "localhost.attacker.example",
    "127.0.0.1.nip.io:4566", "10.0.0.1:4566", "0.0.0.0:4566", "[::2]:4566", "[::1", "[::1]x",
    "127.0.0.1:port", "127.0.0.1:99999999", "", ":4566",
])
def test_other_host_names_are_refused(host: str) -> None:
    assert not host_allowed(host)


def test_only_the_endpoints_own_origin_is_served() -> None:
    assert origin_allowed(None, port=4566)
    assert origin_allowed("http://127.0.0.1:4566", port=4566)
    assert origin_allowed("http://localhost:4566", port=4566)
    for origin in (PAGE, "null", "http://127.0.0.1:8080", "https://127.0.0.1:4566",
                   "http://attacker.example:4566", "http://127.0.0.1:4566/x", "http://[::1"):
        assert not origin_allowed(origin, port=4566), origin
    assert refusal("127.0.0.1:4566", None, port=4566) is None
    reason = refusal("127.0.0.1:4566", PAGE, port=4566)
    assert reason is not None and "Origin" in reason


# --- the AWS emulator ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as running:
        yield running


def raw(url: str, method: str, path: str, headers: dict[str, str],
        body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders(body)
    response = conn.getresponse()
    answer = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    return answer


@case("AWS emulator endpoint", "a preflight or request from a web page (a foreign `Origin`)",
      "403, no CORS headers (none on any answer)")
def test_the_emulator_refuses_a_pages_preflight_and_sends_no_cors(aws: EmbeddedAws) -> None:
    assert aws.endpoint_url is not None
    status, headers, _ = raw(aws.endpoint_url, "OPTIONS", "/", {
        "Origin": PAGE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,x-amz-target",
    })
    assert status == 403
    assert not [h for h in headers if h.startswith("access-control-")]


def test_the_emulator_refuses_a_pages_request_to_a_stream(aws: EmbeddedAws) -> None:
    assert aws.endpoint_url is not None
    status, headers, body = raw(aws.endpoint_url, "POST", "/", {
        "Origin": PAGE, "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "Kinesis_20131202.ListStreams",
    }, b"{}")
    assert status == 403 and b"Origin" in body
    assert "access-control-allow-origin" not in headers


@case("AWS emulator endpoint", "a request to a rebound DNS name (a foreign `Host`)", "403")
def test_the_emulator_refuses_a_rebound_host_name(aws: EmbeddedAws) -> None:
    assert aws.endpoint_url is not None
    status, _, body = raw(aws.endpoint_url, "POST", "/", {
        "Host": "rebound.attacker.example", "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "Kinesis_20131202.ListStreams",
    }, b"{}")
    assert status == 403 and b"Host" in body


def test_sdk_requests_pass_and_carry_no_cors_headers(aws: EmbeddedAws) -> None:
    kinesis = aws.client("kinesis")
    seen: list[dict[str, str]] = []
    kinesis.meta.events.register(
        "after-call.kinesis.ListStreams",
        lambda http_response, **_: seen.append(dict(http_response.headers)))
    kinesis.list_streams()
    assert seen and not [h for h in seen[0] if h.lower().startswith("access-control-")]
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="guard-check")
    assert "guard-check" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# --- the HTTP API front ---------------------------------------------------------------------


class Echo:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.calls += 1
        return {"ok": True}


@pytest.fixture
def front() -> Iterator[tuple[LocalHttpServer, Echo]]:
    echo = Echo()
    server = serve({"POST /events": echo, "GET /accounts/{id}": echo}, port=0)
    try:
        yield server, echo
    finally:
        server.shutdown()


def test_the_api_refuses_pages_and_rebound_hosts_before_any_handler_runs(front: Any) -> None:
    server, echo = front
    for headers in ({"Origin": PAGE}, {"Host": f"rebound.attacker.example:{server.port}"},
                    {"Origin": PAGE, "Access-Control-Request-Method": "POST"}):
        for method in ("GET", "OPTIONS"):
            status, answer, _ = raw(server.url, method, "/accounts/a1", headers)
            assert status == 403, (method, headers)
            assert not [h for h in answer if h.startswith("access-control-")]
    assert echo.calls == 0
    assert raw(server.url, "GET", "/accounts/a1", {})[0] == 200
    assert raw(server.url, "GET", "/accounts/a1", {"Origin": server.url})[0] == 200
    assert echo.calls == 2


def send_raw(server: LocalHttpServer, data: bytes) -> bytes:
    """Bytes on a socket; what the server answered before closing (or within 10 s)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    return received


CHUNKED = (b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n")


@pytest.mark.parametrize("size_line", [b"-1", b"+5", b" 5 ", b"0x5", b"5 5", b"fffffffff",
                                       b"", b"zz"])
def test_a_chunk_size_that_is_not_plain_hex_is_a_400_at_once(front: Any,
                                                            size_line: bytes) -> None:
    server, echo = front
    # The client keeps its side open: the answer must not wait for it to close.
    answer = send_raw(server, CHUNKED + size_line + b"\r\n" + b"x" * 64)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert echo.calls == 0


def test_a_chunk_shorter_than_announced_or_unterminated_is_refused(front: Any) -> None:
    server, echo = front
    assert send_raw(server, CHUNKED + b"5\r\nabcXY\r\n0\r\n\r\n").startswith(b"HTTP/1.1 200")
    assert send_raw(server, CHUNKED + b"5\r\nabcXYZZ\r\n0\r\n\r\n").startswith(b"HTTP/1.1 400")
    endless_trailers = CHUNKED + b"0\r\n" + b"X-T: 1\r\n" * 100 + b"\r\n"
    assert send_raw(server, endless_trailers).startswith(b"HTTP/1.1 400")
    assert echo.calls == 1


@pytest.mark.parametrize("length", ["-1", "+5", "5 5", "\u0665", "1" * 40])
def test_a_content_length_that_is_not_plain_digits_is_a_400(front: Any, length: str) -> None:
    server, echo = front
    head = (f"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
            f"Connection: close\r\nContent-Type: application/json\r\n\r\n").encode()
    assert send_raw(server, head + b"[]").startswith(b"HTTP/1.1 400")
    assert echo.calls == 0


def test_more_clients_than_workers_are_all_served(front: Any) -> None:
    server, echo = front
    clients = MAX_CONNECTIONS + 36

    def one(_: int) -> int:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        try:
            conn.request("POST", "/events", body=b"[]",
                         headers={"Content-Type": "application/json"})
            return conn.getresponse().status
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(one, range(clients)))
    assert statuses == [200] * clients
    assert echo.calls == clients


def test_a_client_that_leaves_before_its_answer_leaves_no_traceback(
    front: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = front
    caplog.set_level(logging.DEBUG, logger="cascata.local.http")
    for _ in range(20):
        sock = socket.create_connection((server.host, server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(CHUNKED + b"-1\r\n")
        sock.close()  # a reset, before the 400 is written
    assert raw(server.url, "GET", "/accounts/a1", {})[0] == 200  # still serving
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
