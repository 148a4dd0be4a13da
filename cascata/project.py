"""Which pipeline a command, a synthesis or a test works on: the project's setting.

A cascata project is a directory whose `pyproject.toml` has a `[tool.cascata]` table:

    [tool.cascata]
    pipeline = "payments.pipeline:PIPELINE"   # module:attribute of the declaration
    code = "lambdas"                         # the functions' code: on the import path, and
                                             # the Lambda asset (beside cascata_runtime)
    not_deployed = ["payments/tooling"]      # code-dir paths left out of the Lambda asset
    commands = "payments.tooling.cli:register"      # optional: the project's own commands
    workload = "payments.tooling.workload:sample"   # optional: `produce --events N`

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
from typing import Any

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
    not_deployed: tuple[str, ...] = ()
    """Paths under the code directory that never run on Lambda (the project's tooling)."""
    commands: str | None = None
    """`module:function(app)` adding the project's own commands to the command line."""
    workload: str | None = None
    """`module:function(events, seed) -> (stream, [(key, data)])`: sample events for
    `produce --events N` (with 0 events it only names its stream, `produce`'s default)."""

    @property
    def name(self) -> str:
        return self.root.name


def find_project(start: Path | None = None) -> Project:
    """The project around `start` (default: the one `--pipeline DIR` chose, else
    `CASCATA_PROJECT`, else the working directory)."""
    here = (start or _project_dir or Path(os.environ.get(PROJECT_ENV) or Path.cwd())).resolve()
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
    not_deployed = settings.get("not_deployed", [])
    if not isinstance(not_deployed, list) or not all(
            isinstance(p, str) and p and not Path(p).is_absolute() and ".." not in Path(p).parts
            for p in not_deployed):
        raise ProjectError(f"{root / 'pyproject.toml'}: [tool.cascata] not_deployed must be a "
                           "list of paths inside the code directory")
    hooks: dict[str, str | None] = {}
    for name in ("commands", "workload"):
        value = settings.get(name)
        if value is not None and not isinstance(value, str):
            raise ProjectError(f"{root / 'pyproject.toml'}: [tool.cascata] {name} must be a "
                               "string like 'module:function'")
        hooks[name] = value
    return Project(root=root, pipeline_ref=ref, code_dir=root / code,
                   not_deployed=tuple(not_deployed), commands=hooks["commands"],
                   workload=hooks["workload"])


_lock = threading.Lock()
_override: str | None = None
_project_dir: Path | None = None
_loaded: dict[str, Pipeline] = {}


def use_pipeline(ref: str | None) -> None:
    """Make `ref` the pipeline of this process (the `--pipeline` option): `module:attr` in
    this project, or the directory of another project (its own setting, code and commands)."""
    global _override, _project_dir
    directory: Path | None = None
    if ref is not None and ":" not in ref:
        directory = Path(ref).expanduser().resolve()
        if not directory.is_dir() or _settings(directory / "pyproject.toml") is None:
            raise ProjectError(f"{ref!r} is neither module:attribute nor a project directory "
                               "(one whose pyproject.toml has a [tool.cascata] table)")
        ref = None
    elif ref is not None:
        _split(ref)
    with _lock:
        _override = ref
        _project_dir = directory


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
    with _lock:
        cached = _loaded.get(ref)
        if cached is not None:
            return cached
        found = _attribute(ref, project, "pipeline")
        if not isinstance(found, Pipeline):
            raise ProjectError(f"pipeline {ref!r}: {ref.replace(':', '.')} is "
                               f"{_kind(found)}, not a cascata Pipeline")
        problems = found.validate()
        if problems:
            raise ProjectError(f"pipeline {ref!r} is not sound: " + "; ".join(problems))
        _loaded[ref] = found
        return found


def load_hook(ref: str, *, project: Project | None = None, what: str = "hook") -> Any:
    """Import a project's `module:function` setting (its code directory on the path)."""
    found = _attribute(ref, project, what)
    if not callable(found):
        raise ProjectError(f"{what} {ref!r}: {ref.replace(':', '.')} is {_kind(found)}, not "
                           "a function")
    return found


def _attribute(ref: str, project: Project | None, what: str) -> Any:
    module_name, attr = _split(ref)
    add_code_path(project or find_project())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProjectError(f"{what} {ref!r}: cannot import {module_name!r}: {exc}") from None
    return getattr(module, attr, None)


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


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
        raise ProjectError(f"{ref!r} is not module:attribute, like "
                           "'payments.pipeline:PIPELINE'")
    return module, attr
