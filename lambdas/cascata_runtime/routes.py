"""API Gateway route templates matched against request paths, in API Gateway's terms.

One matcher for the query function's own routing and for the local runtime's HTTP front, so a
path resolves the same way in the function and in front of it: `{name}` takes one non-empty
segment, a trailing `{name+}` takes the non-empty rest, values are percent-decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote


def segments(path: str) -> tuple[str, ...]:
    """`/accounts/{id}` -> ("accounts", "{id}")."""
    return tuple(path.split("/")[1:])


def match_path(template: Sequence[str], path: str) -> dict[str, str] | None:
    """Path parameters if `path` matches the template's segments, else None."""
    parts = segments(path)
    params: dict[str, str] = {}
    for i, seg in enumerate(template):
        if seg.startswith("{") and seg.endswith("+}"):
            rest = parts[i:]
            if not rest or not rest[0]:
                return None
            params[seg[1:-2]] = unquote("/".join(rest))
            return params
        if i >= len(parts):
            return None
        if seg.startswith("{") and seg.endswith("}"):
            if not parts[i]:
                return None
            params[seg[1:-1]] = unquote(parts[i])
        elif seg != parts[i]:
            return None
    return params if len(parts) == len(template) else None
