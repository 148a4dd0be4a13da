"""ingest: the pure core of `POST /events`, the HTTP door to the raw stream.

The request body is a JSON array of 1 to `MAX_EVENTS` event envelopes, at most
`MAX_BODY_BYTES` once decoded (API Gateway may hand the body over base64-encoded), sent with a
JSON content type (`application/json` or `application/*+json`, UTF-8). Each element is checked
for envelope shape only (`parse_envelope`); the `data` of each type is validated downstream by
`validate`, which quarantines what it refuses, so a producer learns about shape errors at once
and about schema errors from the quarantine.

Each accepted element is written to the raw stream as the producer sent it (compact JSON,
unknown fields kept), keyed by its `key`. An element repeating an `event_id` already accepted
earlier in the same request is written once and reported as accepted. Resending a whole
request (after a timeout or a 503) is safe: the processors recognise an event id they have
already applied, wherever it arrives in the stream.

The answer lists every element as `{"index", "event_id", "status", "reason"}` (rejections add
`code` and `field`), with status 200 when all were accepted, 207 when some were refused for
their shape, and 503 (with `retry-after`) when some could not be written to the stream after
retries: those are `rejected` with reason "not written, retry" and the client resends them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cascata_runtime.envelope import Rejection, parse_envelope
from cascata_runtime.http import ApiError, HttpRequest, Response, RouteTable
from cascata_runtime.policy import MAX_RECORD_BYTES, PARSE_DEPTH, check_value, parse_json

MAX_BODY_BYTES = 1024 * 1024
MAX_EVENTS = 500
NOT_WRITTEN = "not written, retry"
RETRY_AFTER_S = 1

ROUTES = ("POST /events",)
"""The routes this function serves; a test checks they equal the pipeline's declaration."""
INGEST_ROUTES = RouteTable(ROUTES)


@dataclass(frozen=True, slots=True)
class Accepted:
    index: int
    event_id: str
    key: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Duplicate:
    index: int
    event_id: str
    of: int
    """Index of the element with the same event id that is written."""


@dataclass(frozen=True, slots=True)
class Refused:
    index: int
    event_id: str | None
    rejection: Rejection


Checked = Accepted | Duplicate | Refused


def check_content_type(headers: Mapping[str, str]) -> ApiError | None:
    raw = headers.get("content-type")
    if raw is None:
        return _unsupported("a content-type header is required: application/json")
    media, *params = (part.strip() for part in raw.split(";"))
    media = media.lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return _unsupported(f"content-type must be application/json, got {raw[:80]!r}")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8", "utf8"
        ):
            return _unsupported("the body must be UTF-8 encoded JSON")
    return None


def _unsupported(message: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", message)


def read_body(body: str | None, *, is_base64: bool) -> bytes | ApiError:
    """The request body as bytes, refused with a 413 past `MAX_BODY_BYTES` (decoded)."""
    if body is None:
        return b""
    if is_base64:
        # Refuse an obviously oversized body before decoding it.
        if len(body) > 4 * (MAX_BODY_BYTES // 3 + 1) + 4:
            return _too_large()
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return ApiError(400, "invalid_body", "the base64-encoded body cannot be decoded")
    else:
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: not text any client could have sent
            return ApiError(400, "invalid_body", "the body is not valid UTF-8 text")
    if len(raw) > MAX_BODY_BYTES:
        return _too_large()
    return raw


def _too_large() -> ApiError:
    return ApiError(
        413, "payload_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes; send fewer events"
    )


def parse_batch(raw: bytes) -> list[Any] | ApiError:
    """The body as a list of elements, each still to be held to the input policy."""
    value = parse_json(raw, max_bytes=MAX_BODY_BYTES, max_depth=PARSE_DEPTH, what="the body",
                       values=False)
    if isinstance(value, Rejection):
        code = {"too_large": "payload_too_large"}.get(value.code, "malformed_json")
        return ApiError(413 if value.code == "too_large" else 400, code, value.reason)
    if not isinstance(value, list):
        return ApiError(400, "not_an_array", "the body must be a JSON array of events")
    if not value:
        return ApiError(400, "empty_batch", "the array holds no events")
    if len(value) > MAX_EVENTS:
        return ApiError(
            400, "too_many_events",
            f"the array holds {len(value)} events; at most {MAX_EVENTS} per request",
        )
    return value


def check_events(items: Sequence[Any]) -> tuple[Checked, ...]:
    """Each element held to the input policy (`cascata_runtime.policy`: depth, text, size),
    then to the envelope's shape; a refused element never stops the others."""
    checked: list[Checked] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            checked.append(Refused(index, None, Rejection(
                "$", "not_object", "an event must be a JSON object (an envelope)"
            )))
            continue
        problem = check_value(item)
        if problem is not None:
            checked.append(Refused(index, _echo_id(item.get("event_id")), problem))
            continue
        envelope = parse_envelope(item)
        if isinstance(envelope, Rejection):
            checked.append(Refused(index, _echo_id(item.get("event_id")), envelope))
            continue
        if envelope.event_id in first_index:
            checked.append(Duplicate(index, envelope.event_id, first_index[envelope.event_id]))
            continue
        data = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) > MAX_RECORD_BYTES:
            checked.append(Refused(index, envelope.event_id, Rejection(
                "$", "too_large",
                f"event is {len(data)} bytes; the limit is {MAX_RECORD_BYTES}")))
            continue
        first_index[envelope.event_id] = index
        checked.append(Accepted(index, envelope.event_id, envelope.key, data))
    return tuple(checked)


def _echo_id(value: object) -> str | None:
    """An invalid event id is echoed back when it is a reasonable string, to help find it."""
    if isinstance(value, str) and len(value) <= 256 and value.isprintable():
        return value
    return None


def plan(request: HttpRequest) -> tuple[Checked, ...] | Response:
    """Everything before the write: the route, the body, each element's shape."""
    matched = INGEST_ROUTES.resolve(request)
    if isinstance(matched, ApiError):
        return matched.response()
    refusal = check_content_type(request.headers)
    if refusal is not None:
        return refusal.response()
    raw = read_body(request.body, is_base64=request.is_base64)
    if isinstance(raw, ApiError):
        return raw.response()
    items = parse_batch(raw)
    if isinstance(items, ApiError):
        return items.response()
    return check_events(items)


def outcome(checked: Sequence[Checked], not_written: frozenset[int]) -> Response:
    """The per-event answer once the accepted events were written, but for `not_written`."""
    results: list[dict[str, Any]] = []
    for item in checked:
        entry: dict[str, Any] = {"index": item.index, "event_id": item.event_id}
        written_as = item.of if isinstance(item, Duplicate) else item.index
        if isinstance(item, Refused):
            entry |= {"status": "rejected", "reason": item.rejection.reason,
                      "code": item.rejection.code, "field": item.rejection.field}
        elif written_as in not_written:
            entry |= {"status": "rejected", "reason": NOT_WRITTEN, "code": "not_written",
                      "field": None}
        elif isinstance(item, Duplicate):
            entry |= {"status": "accepted",
                      "reason": f"same event_id as index {item.of}; written once"}
        else:
            entry |= {"status": "accepted", "reason": None}
        results.append(entry)
    accepted = sum(1 for r in results if r["status"] == "accepted")
    body = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
    if not_written:
        return Response(503, body, MappingProxyType({"retry-after": str(RETRY_AFTER_S)}))
    return Response(200 if accepted == len(results) else 207, body)
