"""The rows of docs/bad-input.md: each registered by the test that tries it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    entry: str
    given: str
    gets: str


CASES: list[Case] = []


def case(entry: str, given: str, gets: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a row of the table for the test it decorates."""
    CASES.append(Case(entry, given, gets))
    return lambda test: test


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"n": value}
    return value
