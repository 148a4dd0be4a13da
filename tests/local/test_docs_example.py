"""The example in docs/local-runtime.md runs and its assertions hold."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "local-runtime.md"


def test_the_documented_example_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the first Python block of the documentation, when its test function runs, then
    every assertion in it holds (the documentation cannot drift from the engine)."""
    text = DOC.read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S)
    assert example is not None
    # Pad with blank lines so that a failing assertion reports its line in the document.
    source = "\n" * text[: example.start(1)].count("\n") + example.group(1)
    namespace: dict[str, Any] = {}
    exec(compile(source, str(DOC), "exec"), namespace)  # our own documentation, by design

    namespace["test_a_negative_amount_ends_on_the_failure_queue"](monkeypatch)
