"""Terminal output: progress on stderr, summaries and JSON on stdout, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

out = Console(highlight=False, soft_wrap=True)
if not out.is_terminal:
    # Piped or captured output (CI logs) gets room for the summary tables.
    out = Console(highlight=False, soft_wrap=True, width=120)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(Exception):
    """A problem the user can fix: printed as one line, exit status 2."""


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


@contextmanager
def progress(enabled: bool = True) -> Iterator[Progress]:
    bar = Progress(
        TextColumn("[bold]{task.description:<22}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not enabled,
    )
    with bar:
        yield bar
