"""The input policy: what every entry point and every processor accepts as JSON text.

One policy, applied wherever bytes from outside become values: the ingest API's body, each
record a processor reads, an event file given to `cascata invoke`, each line `cascata produce`
sends, a query cursor. What one of them accepts, every later one accepts too, so an event is
either refused at the door with its reason or carried all the way through.

- **Size.** A record is at most `MAX_RECORD_BYTES` (a Kinesis record's limit); a caller with a
  larger container (an API body of many events) passes its own bound.
- **Text.** UTF-8, strictly. A JSON string may not hold a lone surrogate (`"\\ud800"`): such a
  string has no UTF-8 form, so it could never be written back to a stream, a view or a log.
- **Numbers.** `NaN`, `Infinity` and `-Infinity` are not JSON and are refused; so is an integer
  with more digits than Python converts (a `ValueError` from the parser).
- **Depth.** Objects and arrays nest at most `MAX_DEPTH` levels, DynamoDB's limit for a
  document attribute, so anything accepted can be stored in a view. The parser is never asked
  to recurse past `PARSE_DEPTH`: deeper text is refused by a linear scan before parsing.

`parse_json` never raises on bad input: it returns a `Rejection` naming what was wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cascata_runtime.rejection import Rejection

MAX_RECORD_BYTES = 1_048_576
"""A Kinesis record holds at most 1 MiB; no event larger than this is ever accepted."""
MAX_DEPTH = 32
"""Nesting levels of objects and arrays in an event: DynamoDB's limit for a document."""
PARSE_DEPTH = 512
"""The deepest text handed to the parser at all (far below the interpreter's recursion limit);
a container of several events (an API body) is parsed up to here, then each event is held to
`MAX_DEPTH`."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BRACKETS = re.compile(rb'[\[\]{}"\\]')


def parse_json(
    raw: bytes | str, *, max_bytes: int = MAX_RECORD_BYTES, max_depth: int = MAX_DEPTH,
    what: str = "event", values: bool = True,
) -> Any | Rejection:
    """JSON text to a value within the policy, or why not. `what` names the input in reasons
    ("event", "the body", "cursor"). `values=False` leaves the depth and text rules to the
    caller, which holds each part of a container to them with `check_value`, so one bad
    event does not refuse the others beside it."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        return Rejection("$", "too_large",
                         f"{what} is {len(data)} bytes; the limit is {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("$", "not_utf8", f"{what} is not UTF-8 text: {exc.reason} at byte "
                                          f"{exc.start}")
    if not within_depth(data, min(max_depth, PARSE_DEPTH)):
        return _too_deep(what, max_depth)
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        return Rejection("$", "not_json", f"{what} is not JSON: {exc}")
    except RecursionError:  # not reached after the scan; kept so no input can raise
        return _too_deep(what, max_depth)
    # The depth is already known to be within bounds (the scan above); only a string escape
    # of a surrogate can still break the text rule, and only then is the value walked.
    if not values or _SURROGATE_ESCAPE.search(text) is None:
        return value
    problem = check_value(value, max_depth=max_depth, what=what)
    return value if problem is None else problem


def check_value(value: Any, *, max_depth: int = MAX_DEPTH, what: str = "event",
                text: bool = True) -> Rejection | None:
    """Why `value` breaks the policy's depth or text rules, or None when it does not.
    `text=False` skips the search for lone surrogates (the caller knows there are none)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth + 1 > max_depth:
                return _too_deep(what, max_depth)
            for key, item in node.items():
                if text and _lone_surrogate(key):
                    return _surrogate(what, key)
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            if depth + 1 > max_depth:
                return _too_deep(what, max_depth)
            stack.extend((item, depth + 1) for item in node)
        elif text and isinstance(node, str) and _lone_surrogate(node):
            return _surrogate(what, node)
    return None


def nesting(data: bytes) -> int:
    """The deepest nesting of objects and arrays in JSON text (outside strings), by one linear
    scan of its brackets, quotes and backslashes."""
    depth = deepest = 0
    in_string = False
    escaped_at = -1
    for match in _BRACKETS.finditer(data):
        at, char = match.start(), match.group()
        if in_string:
            if at == escaped_at:  # the character after a backslash is text
                continue
            if char == b"\\":
                escaped_at = at + 1
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def within_depth(data: bytes, limit: int) -> bool:
    """Whether JSON text nests at most `limit` levels; free when it has no more openers."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return True
    return nesting(data) <= limit


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _lone_surrogate(value: str) -> bool:
    return not value.isascii() and _SURROGATE.search(value) is not None


def _too_deep(what: str, max_depth: int) -> Rejection:
    return Rejection("$", "too_deep", f"{what} nests objects and arrays more than {max_depth} "
                                      f"levels deep")


def _surrogate(what: str, value: str) -> Rejection:
    return Rejection("$", "invalid_text", f"{what} holds a string with a lone UTF-16 surrogate, "
                                          f"which has no UTF-8 form: {value[:40]!a}")
