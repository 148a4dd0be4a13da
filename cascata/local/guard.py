"""Who may talk to the ports `cascata up` serves: programs of this machine's user, not web pages.

Every local endpoint (the AWS emulator and the HTTP APIs) binds 127.0.0.1, which keeps other
machines out but not a web page open in the user's browser: a page may send requests to
127.0.0.1, and with a DNS name it controls that resolves to 127.0.0.1 (DNS rebinding) it may
even read the answers. So every request is held to two rules before anything else reads it:

- **Host** names this machine: `127.0.0.1`, `localhost`, a name under `.localhost` (browsers
  and resolvers keep those on loopback, and S3's virtual-hosted addressing puts the bucket
  there), or `[::1]`, with any port. A rebinding page's requests carry the page's own host name
  and are refused. A request with no Host at all (HTTP/1.0) comes from no browser and passes.
- **Origin**, when a request has one (browsers add it to every cross-origin request and to
  every non-GET request), must be the endpoint's own origin. There is no CORS: no answer ever
  carries an `Access-Control-*` header, so no page of another origin can read one, and a
  preflight from such a page is refused.

SDKs, the AWS CLI, curl and test clients send a loopback Host and no Origin, and are unaffected.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

REFUSED_STATUS = 403


def host_allowed(host: str | None) -> bool:
    """Whether a Host header names this machine's loopback (any port)."""
    if host is None:
        return True
    name = _host_name(host.strip())
    if name is None:
        return False
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin_allowed(origin: str | None, *, port: int) -> bool:
    """Whether a request's Origin header is absent or is the endpoint's own origin."""
    if origin is None:
        return True
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme != "http" or origin_port != port or parts.path not in ("", "/"):
        return False
    return host_allowed(parts.hostname)


def refusal(host: str | None, origin: str | None, *, port: int) -> str | None:
    """Why a request is refused, or None when it may be served."""
    if host is not None and not host_allowed(host):
        return (f"Host {host[:100]!r} is not this machine: the local endpoints answer "
                f"127.0.0.1, localhost and [::1] only")
    if origin is not None and not origin_allowed(origin, port=port):
        return (f"Origin {origin[:100]!r} may not call the local endpoints: they answer "
                f"programs on this machine, not web pages of other origins")
    return None


def _host_name(host: str) -> str | None:
    """The name part of a Host header (`name`, `name:port`, `[v6]`, `[v6]:port`)."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (host[end + 1:] and not _is_port(host[end + 2:])) or (
                host[end + 1:end + 2] not in ("", ":")):
            return None
        return host[1:end]
    name, sep, port = host.partition(":")
    if sep and not _is_port(port):
        return None
    return name or None


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < len(text) <= 5


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class LoopbackGuard:
    """WSGI middleware: refuses what `refusal` refuses with a 403, and drops every CORS header
    the wrapped application would send."""

    def __init__(self, app: WsgiApp, *, port: int) -> None:
        self._app = app
        self.port = port

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        why = refusal(environ.get("HTTP_HOST"), environ.get("HTTP_ORIGIN"), port=self.port)
        if why is not None:
            log.warning("refused %s %s: %s", environ.get("REQUEST_METHOD"),
                        environ.get("PATH_INFO"), why)
            body = why.encode()
            start_response(f"{REFUSED_STATUS} Forbidden", [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ])
            return [body]

        def without_cors(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept, *rest)

        return self._app(environ, without_cors)
