"""Which pipeline a command, a synthesis or a test works on: the project's setting.

A cascata project is a directory whose `pyproject.toml` has a `[tool.cascata]` table:

    [tool.cascata]
    pipeline = "payments.pipeline:PIPELINE"   # module:attribute of the declaration
    code = "lambdas"                         # the functions' code: on the import path, and
                                             # the Lambda asset (beside cascata_runtime)

The pipeline is found, in order: `--pipeline module:attr` on the command line (which sets
it for the process), `CASCATA_PIPELINE` in the environment, the project's `pyproject.toml`
found from the working directory upward. Loading puts the project's code directory on the
import path, so the handlers that the declaration names import as they do on Lambda.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cascata.pipeline import Pipeline

PIPELINE_ENV = "CASCATA_PIPELINE"
PROJECT_ENV = "CASCATA_PROJECT"
"""A project directory to use instead of searching upward from the working directory."""
DEFAULT_CODE_DIR = "lambdas"


class ProjectError(ValueError):
    """The project setting is missing or names nothing loadable; the message says which."""


@dataclass(frozen=True, slots=True)
class Project:
    root: Path
    """The directory of the project's pyproject.toml (or the working directory)."""
    pipeline_ref: str | None
    """`module:attribute` of the pipeline declaration, as the settings give it."""
    code_dir: Path
    """The functions' code: what handler strings are relative to."""

    @property
    def name(self) -> str:
        return self.root.name


def find_project(start: Path | None = None) -> Project:
    """The project around `start` (default: `CASCATA_PROJECT` or the working directory)."""
    here = (start or Path(os.environ.get(PROJECT_ENV) or Path.cwd())).resolve()
    for directory in (here, *here.parents):
        settings = _settings(directory / "pyproject.toml")
        if settings is not None:
            return _project(directory, settings)
    return Project(root=here, pipeline_ref=None, code_dir=here / DEFAULT_CODE_DIR)


def _settings(path: Path) -> dict[str, object] | None:
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProjectError(f"{path}: {exc}") from None
    table = data.get("tool", {}).get("cascata")
    return table if isinstance(table, dict) else None


def _project(root: Path, settings: dict[str, object]) -> Project:
    ref = settings.get("pipeline")
    code = settings.get("code", DEFAULT_CODE_DIR)
    if ref is not None and not isinstance(ref, str):
        raise ProjectError(f"{root / 'pyproject.toml'}: [tool.cascata] pipeline must be a "
                           "string like 'myapp.pipeline:PIPELINE'")
    if (not isinstance(code, str) or not code or Path(code).is_absolute()
            or ".." in Path(code).parts):
        raise ProjectError(f"{root / 'pyproject.toml'}: [tool.cascata] code must be a "
                           "directory inside the project, like 'lambdas'")
    return Project(root=root, pipeline_ref=ref, code_dir=root / code)


_lock = threading.Lock()
_override: str | None = None
_loaded: dict[str, Pipeline] = {}


def use_pipeline(ref: str | None) -> None:
    """Make `ref` (`module:attr`) the pipeline of this process (the `--pipeline` option)."""
    global _override
    if ref is not None:
        _split(ref)
    with _lock:
        _override = ref


def pipeline_ref(project: Project | None = None) -> str:
    """The `module:attr` this process works on, by the order the module docstring gives."""
    ref = _override or os.environ.get(PIPELINE_ENV) or (project or find_project()).pipeline_ref
    if not ref:
        raise ProjectError(
            "no pipeline is set: add [tool.cascata] pipeline = 'module:attr' to pyproject.toml, "
            f"set {PIPELINE_ENV}, or pass --pipeline module:attr"
        )
    return ref


def current_pipeline() -> Pipeline:
    """The pipeline this process works on (loaded once per reference)."""
    project = find_project()
    return load_pipeline(pipeline_ref(project), project=project)


def load_pipeline(ref: str, *, project: Project | None = None) -> Pipeline:
    """Import `module:attr` (the project's code directory on the import path) and check that
    it is a sound Pipeline."""
    module_name, attr = _split(ref)
    with _lock:
        cached = _loaded.get(ref)
        if cached is not None:
            return cached
        add_code_path(project or find_project())
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ProjectError(f"pipeline {ref!r}: cannot import {module_name!r}: {exc}") from None
        found = getattr(module, attr, None)
        if not isinstance(found, Pipeline):
            what = "nothing" if found is None else type(found).__name__
            raise ProjectError(f"pipeline {ref!r}: {module_name}.{attr} is {what}, "
                               "not a cascata Pipeline")
        problems = found.validate()
        if problems:
            raise ProjectError(f"pipeline {ref!r} is not sound: " + "; ".join(problems))
        _loaded[ref] = found
        return found


def add_code_path(project: Project) -> None:
    """Put the project's code directory first on the import path (once)."""
    path = str(project.code_dir)
    if project.code_dir.is_dir() and path not in sys.path:
        sys.path.insert(0, path)


def _split(ref: str) -> tuple[str, str]:
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr.isidentifier() or not all(
        part.isidentifier() for part in module.split(".")
    ):
        raise ProjectError(f"pipeline {ref!r} is not module:attribute, like "
                           "'payments.pipeline:PIPELINE'")
    return module, attr
