"""`cascata up` in a thread of the test's own process, as the pipeline tests run it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cascata.local.serve import UpOptions, up
from cascata.pipeline import Pipeline


@contextmanager
def running_up(options: UpOptions, *, pipeline: Pipeline | None = None,
               timeout_s: float = 120.0) -> Iterator[dict[str, Any]]:
    """Start `up` and yield what it reports once ready (its endpoints, routes and region);
    on exit stop it, and check that it stopped and raised nothing."""
    stop = threading.Event()
    ready: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            up(options, pipeline=pipeline, ready=ready.append, stop=stop)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not ready and not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert ready and not errors, errors or f"up was not ready within {timeout_s} s"
        yield ready[0]
    finally:
        stop.set()
        thread.join(timeout=timeout_s)
    assert not thread.is_alive(), "up did not stop"
    assert not errors, errors
