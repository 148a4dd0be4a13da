"""EventBridge-style filter patterns, evaluated the way Lambda's FilterCriteria evaluate them.

Reference: `lambda-esm.md` section 8. A mapping holds up to five patterns; a record passes when
*any* pattern matches (OR). Inside a pattern every named field must match (AND) and the list of
values for one field is an OR list. Fields a pattern does not name are ignored; a field it names
must exist unless the pattern asks for `{"exists": false}`.

Supported: exact strings, numbers, booleans and null; `""`; `anything-but` (a value, a list, or
a `prefix` / `suffix` / `equals-ignore-case` / `wildcard` form); `numeric` with one equality or up
to two range bounds; `exists`; `prefix`, `suffix`, `equals-ignore-case` (also nested in `prefix`
and `suffix`); `wildcard`; and `$or` at any object level. An array-valued field matches when any
element matches.

Number equality compares the numbers' *text* (`300`, `300.0` and `3e2` are three different
values, as in EventBridge), so record payloads must be parsed with
`parse_json_preserving_numbers`; `numeric` comparisons use the numeric value.

Patterns are compiled once, when a mapping is created, so a malformed pattern fails there with a
`FilterPatternError` naming the problem, as `CreateEventSourceMapping` would.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cascata_runtime.policy import PARSE_DEPTH, within_depth

__all__ = [
    "FilterCriteria",
    "FilterPatternError",
    "JsonNumber",
    "Pattern",
    "compile_pattern",
    "parse_json_preserving_numbers",
]

_MISSING: Final = object()
_NUMERIC_OPS: Final = frozenset({"=", "<", "<=", ">", ">="})


class FilterPatternError(ValueError):
    """A filter pattern is not valid JSON or not a valid EventBridge pattern."""


@dataclass(frozen=True, slots=True)
class JsonNumber:
    """A JSON number that remembers how it was written, for textual equality."""

    text: str

    @property
    def value(self) -> float:
        return float(self.text)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; a payload containing them is "not JSON" for filtering.
    raise ValueError(f"{name} is not valid JSON")


def parse_json_preserving_numbers(data: str | bytes) -> Any:
    """Parse JSON keeping every number as a `JsonNumber` (raises ValueError if not JSON, or
    nested deeper than the input policy's parser depth: such a record is data a filter cannot
    read, never a poller that stops)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if not within_depth(raw, PARSE_DEPTH):
        raise ValueError(f"nested more than {PARSE_DEPTH} levels deep")
    return json.loads(
        data, parse_int=JsonNumber, parse_float=JsonNumber, parse_constant=_reject_constant
    )


def _number_text(value: object) -> str | None:
    """The textual form of a numeric event value, or None if the value is not a number."""
    if isinstance(value, JsonNumber):
        return value.text
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return json.dumps(value)
    return None


def _number_value(value: object) -> float | None:
    if isinstance(value, JsonNumber):
        return value.value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


# --- leaf matchers -------------------------------------------------------------------------


class _Matcher:
    """One entry of a field's OR list, applied to a single (non-array) value."""

    __slots__ = ()

    def matches(self, value: object) -> bool:
        raise NotImplementedError


class _Exact(_Matcher):
    __slots__ = ("_kind", "_value")

    def __init__(self, value: object) -> None:
        self._kind: str
        self._value: object
        if value is None:
            self._kind, self._value = "null", None
        elif isinstance(value, bool):
            self._kind, self._value = "bool", value
        elif isinstance(value, str):
            self._kind, self._value = "str", value
        else:
            text = _number_text(value)
            if text is None:
                raise FilterPatternError(f"unsupported value in a pattern: {value!r}")
            self._kind, self._value = "num", text

    def matches(self, value: object) -> bool:
        if self._kind == "null":
            return value is None
        if self._kind == "bool":
            return isinstance(value, bool) and value is self._value
        if self._kind == "str":
            return isinstance(value, str) and value == self._value
        return _number_text(value) == self._value


class _Prefix(_Matcher):
    __slots__ = ("_ignore_case", "_text")

    def __init__(self, text: str, *, ignore_case: bool) -> None:
        self._text = text.casefold() if ignore_case else text
        self._ignore_case = ignore_case

    def matches(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return (value.casefold() if self._ignore_case else value).startswith(self._text)


class _Suffix(_Matcher):
    __slots__ = ("_ignore_case", "_text")

    def __init__(self, text: str, *, ignore_case: bool) -> None:
        self._text = text.casefold() if ignore_case else text
        self._ignore_case = ignore_case

    def matches(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return (value.casefold() if self._ignore_case else value).endswith(self._text)


class _EqualsIgnoreCase(_Matcher):
    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text.casefold()

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and value.casefold() == self._text


class _Wildcard(_Matcher):
    __slots__ = ("_regex",)

    def __init__(self, pattern: str) -> None:
        parts: list[str] = []
        i = 0
        while i < len(pattern):
            char = pattern[i]
            if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
                parts.append(re.escape(pattern[i + 1]))
                i += 2
                continue
            if char == "*":
                if parts and parts[-1] == ".*":
                    # EventBridge rejects consecutive wildcards; so do we, at compile time.
                    raise FilterPatternError(f"wildcard {pattern!r} has consecutive '*'")
                parts.append(".*")
            else:
                parts.append(re.escape(char))
            i += 1
        self._regex = re.compile("".join(parts), re.DOTALL)

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and self._regex.fullmatch(value) is not None


class _Numeric(_Matcher):
    __slots__ = ("_conditions",)

    def __init__(self, spec: object) -> None:
        if not isinstance(spec, list) or len(spec) not in (2, 4):
            raise FilterPatternError(
                f"numeric expects [op, number] or [op, number, op, number], got {spec!r}"
            )
        conditions: list[tuple[str, float]] = []
        for op, bound in zip(spec[::2], spec[1::2], strict=True):
            number = _number_value(bound)
            if op not in _NUMERIC_OPS or number is None or not math.isfinite(number):
                raise FilterPatternError(f"numeric condition {op!r} {bound!r} is not valid")
            conditions.append((op, number))
        if len(conditions) == 2:
            (low_op, low), (high_op, high) = conditions
            if low_op not in (">", ">=") or high_op not in ("<", "<=") or low > high:
                raise FilterPatternError(
                    f"numeric range {spec!r} must be a lower bound (> or >=) followed by an "
                    "upper bound (< or <=)"
                )
        self._conditions = tuple(conditions)

    def matches(self, value: object) -> bool:
        number = _number_value(value)
        if number is None:
            return False
        for op, bound in self._conditions:
            if op == "=" and number != bound:
                return False
            if op == "<" and not number < bound:
                return False
            if op == "<=" and not number <= bound:
                return False
            if op == ">" and not number > bound:
                return False
            if op == ">=" and not number >= bound:
                return False
        return True


class _AnythingBut(_Matcher):
    __slots__ = ("_excluded",)

    def __init__(self, spec: object) -> None:
        excluded: list[_Matcher]
        if isinstance(spec, list):
            if not spec:
                raise FilterPatternError("anything-but needs at least one value")
            excluded = [_Exact(v) for v in spec]
        elif isinstance(spec, dict):
            if len(spec) != 1:
                raise FilterPatternError(f"anything-but takes one operator, got {spec!r}")
            ((op, arg),) = spec.items()
            excluded = [_string_operator(op, arg, where="anything-but")]
        else:
            excluded = [_Exact(spec)]
        self._excluded = tuple(excluded)

    def matches(self, value: object) -> bool:
        return not any(m.matches(value) for m in self._excluded)


def _string_operator(op: str, arg: object, *, where: str) -> _Matcher:
    """`prefix`, `suffix`, `equals-ignore-case` or `wildcard`, including the nested case forms."""
    if op in ("prefix", "suffix") and isinstance(arg, dict):
        if list(arg) != ["equals-ignore-case"] or not isinstance(arg["equals-ignore-case"], str):
            raise FilterPatternError(f"{where}: {op} only nests equals-ignore-case, got {arg!r}")
        text = arg["equals-ignore-case"]
        return (_Prefix if op == "prefix" else _Suffix)(text, ignore_case=True)
    if not isinstance(arg, str):
        raise FilterPatternError(f"{where}: {op} expects a string, got {arg!r}")
    if op == "prefix":
        return _Prefix(arg, ignore_case=False)
    if op == "suffix":
        return _Suffix(arg, ignore_case=False)
    if op == "equals-ignore-case":
        return _EqualsIgnoreCase(arg)
    if op == "wildcard":
        return _Wildcard(arg)
    raise FilterPatternError(f"{where}: unsupported operator {op!r}")


def _compile_matcher(item: object, path: str) -> _Matcher | bool:
    """A matcher, or True/False for `{"exists": true|false}` (handled by the field)."""
    if not isinstance(item, dict):
        return _Exact(item)
    if len(item) != 1:
        raise FilterPatternError(f"{path}: an operator object holds exactly one operator")
    ((op, arg),) = item.items()
    if op == "exists":
        if not isinstance(arg, bool):
            raise FilterPatternError(f"{path}: exists expects true or false, got {arg!r}")
        return arg
    if op == "numeric":
        return _Numeric(arg)
    if op == "anything-but":
        return _AnythingBut(arg)
    return _string_operator(op, arg, where=path)


# --- structure -----------------------------------------------------------------------------


class _Leaf:
    """The OR list of one field."""

    __slots__ = ("_exists_false", "_exists_true", "_matchers")

    def __init__(self, items: list[object], path: str) -> None:
        if not items:
            raise FilterPatternError(f"{path}: the list of values is empty")
        matchers: list[_Matcher] = []
        self._exists_true = False
        self._exists_false = False
        for item in items:
            compiled = _compile_matcher(item, path)
            if compiled is True:
                self._exists_true = True
            elif compiled is False:
                self._exists_false = True
            else:
                assert isinstance(compiled, _Matcher)
                matchers.append(compiled)
        self._matchers = tuple(matchers)

    def matches(self, value: object) -> bool:
        if value is _MISSING:
            return self._exists_false
        if isinstance(value, dict):
            # Exists and the other operators apply to leaf values only (EventBridge rule).
            return False
        if self._exists_true:
            return True
        if isinstance(value, list):
            return any(m.matches(v) for v in value for m in self._matchers)
        return any(m.matches(value) for m in self._matchers)


class _Object:
    """An object level of a pattern: every field must match, and one branch of every `$or`."""

    __slots__ = ("_fields", "_ors")

    def __init__(self, spec: Mapping[str, Any], path: str) -> None:
        fields: list[tuple[str, _Leaf | _Object]] = []
        ors: list[tuple[_Object, ...]] = []
        for key, sub in spec.items():
            where = f"{path}.{key}" if path else key
            if key == "$or":
                if not isinstance(sub, list) or len(sub) < 2:
                    raise FilterPatternError(f"{where}: $or needs a list of at least two patterns")
                branches = []
                for branch in sub:
                    if not isinstance(branch, dict) or not branch:
                        raise FilterPatternError(f"{where}: each $or branch is a pattern object")
                    branches.append(_Object(branch, path))
                ors.append(tuple(branches))
            elif isinstance(sub, dict):
                if not sub:
                    raise FilterPatternError(f"{where}: an empty object matches nothing")
                fields.append((key, _Object(sub, where)))
            elif isinstance(sub, list):
                fields.append((key, _Leaf(sub, where)))
            else:
                raise FilterPatternError(
                    f"{where}: values in a pattern are lists or objects, got {sub!r}"
                )
        self._fields = tuple(fields)
        self._ors = tuple(ors)

    @property
    def keys(self) -> frozenset[str]:
        keys = {k for k, _ in self._fields}
        for branches in self._ors:
            for branch in branches:
                keys |= branch.keys
        return frozenset(keys)

    def matches(self, obj: object, ignore: Container[str] = ()) -> bool:
        if isinstance(obj, list):
            return any(self.matches(e, ignore) for e in obj if isinstance(e, dict))
        mapping: Mapping[str, Any] = obj if isinstance(obj, dict) else {}
        for key, node in self._fields:
            if key in ignore:
                continue
            value = mapping.get(key, _MISSING)
            if isinstance(node, _Object):
                # A missing or scalar parent still lets `{"exists": false}` below it match.
                if not node.matches(value if isinstance(value, dict | list) else {}):
                    return False
            elif not node.matches(value):
                return False
        return all(any(b.matches(obj, ignore) for b in branches) for branches in self._ors)


@dataclass(frozen=True, slots=True)
class Pattern:
    """One compiled filter pattern, with its source text."""

    source: str
    _root: _Object

    @property
    def keys(self) -> frozenset[str]:
        """Top-level keys the pattern names (e.g. `data`)."""
        return self._root.keys

    def matches(self, event: Mapping[str, Any], *, ignore: Container[str] = ()) -> bool:
        """Whether `event` matches; top-level keys in `ignore` are treated as matching."""
        return self._root.matches(event, ignore)


def compile_pattern(pattern: str | Mapping[str, Any]) -> Pattern:
    """Compile a pattern given as FilterCriteria holds it (a JSON string) or as a mapping."""
    if isinstance(pattern, str):
        try:
            spec = parse_json_preserving_numbers(pattern)
        except ValueError as exc:
            raise FilterPatternError(f"filter pattern {pattern!r} is not JSON: {exc}") from None
        source = pattern
    else:
        spec = parse_json_preserving_numbers(json.dumps(pattern))
        source = json.dumps(pattern, separators=(",", ":"))
    if not isinstance(spec, dict) or not spec:
        raise FilterPatternError(f"filter pattern {source!r} is not a non-empty JSON object")
    return Pattern(source=source, _root=_Object(spec, ""))


class FilterCriteria:
    """The filters of one mapping: a record passes if any pattern matches."""

    __slots__ = ("_patterns",)

    def __init__(self, patterns: Iterable[str | Mapping[str, Any]] = ()) -> None:
        self._patterns = tuple(compile_pattern(p) for p in patterns)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def __len__(self) -> int:
        return len(self._patterns)

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return self._patterns

    @property
    def keys(self) -> frozenset[str]:
        """Every top-level key any pattern names."""
        keys: frozenset[str] = frozenset()
        for pattern in self._patterns:
            keys |= pattern.keys
        return keys

    def matches(
        self,
        event: Mapping[str, Any],
        *,
        ignore: Container[str] = (),
        unavailable: Container[str] = (),
    ) -> bool:
        """True when there are no patterns or any pattern matches.

        Top-level keys in `ignore` count as matching (Kafka values that are not UTF-8: only
        the other filters apply); a pattern naming a key in `unavailable` does not match
        (Kinesis data that is not JSON, when a pattern filters on `data`).
        """
        if not self._patterns:
            return True
        return any(
            p.matches(event, ignore=ignore)
            for p in self._patterns
            if not any(key in unavailable for key in p.keys)
        )
