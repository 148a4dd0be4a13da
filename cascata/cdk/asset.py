"""The functions' code asset: the project's code directory beside the Lambda runtime.

Every function of a pipeline shares one asset, and handler strings (`myapp.handlers.x.handler`)
are relative to its root. It holds the project's code directory (`[tool.cascata] code`) and
`cascata_runtime`, the part of cascata that runs on Lambda. Where the code directory holds a
`cascata_runtime` of its own (cascata's own repository, or a checkout of it), it is the asset
as it stands; otherwise the installed `cascata_runtime` and the code are copied into one
staging directory, with no Docker and no network, so `cdk synth`
works offline. The pipeline's declaration module is left out: it imports the declaration API,
which Lambda does not need.
"""

from __future__ import annotations

import atexit
import fnmatch
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cascata_runtime
from cascata.project import ProjectError, find_project, pipeline_ref

EXCLUDES = (
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "**/*.egg-info",
    "**/tests",
    "**/test_*.py",
    "**/conftest.py",
)


@dataclass(frozen=True, slots=True)
class Asset:
    path: Path
    excludes: tuple[str, ...]


def runtime_dir() -> Path:
    """Where the `cascata_runtime` package is (installed, or in cascata's repository)."""
    return Path(cascata_runtime.__file__).resolve().parent


def lambda_asset(code_dir: Path, *, declaration_module: str | None = None,
                 not_deployed: tuple[str, ...] = ()) -> Asset:
    """The asset of a project whose functions' code is in `code_dir`; `not_deployed`: paths
    under it that never run on Lambda."""
    if not code_dir.is_dir():
        raise FileNotFoundError(f"the functions' code directory {code_dir} does not exist "
                                "([tool.cascata] code in pyproject.toml)")
    excludes: tuple[str, ...] = EXCLUDES
    if declaration_module:
        excludes = (*excludes, declaration_module.replace(".", "/") + ".py")
    excludes = (*excludes, *not_deployed)
    if (code_dir / "cascata_runtime").is_dir():
        # The project carries its own runtime (cascata's repository does): ship that one.
        return Asset(code_dir, excludes)
    runtime = runtime_dir()
    staged = Path(tempfile.mkdtemp(prefix="cascata-asset-"))
    atexit.register(shutil.rmtree, staged, ignore_errors=True)
    ignore = _ignore_under(code_dir, excludes)
    dropped = ignore(str(code_dir), [entry.name for entry in code_dir.iterdir()])
    for entry in sorted(code_dir.iterdir()):
        if entry.name in dropped:
            continue
        if entry.is_dir():
            shutil.copytree(entry, staged / entry.name, ignore=ignore)
        else:
            shutil.copy2(entry, staged / entry.name)
    shutil.copytree(runtime, staged / "cascata_runtime",
                    ignore=_ignore_under(runtime.parent, excludes))
    return Asset(staged, excludes)


def _ignore_under(root: Path, excludes: tuple[str, ...]) -> Callable[[str, list[str]], set[str]]:
    """A copytree `ignore` that drops what `excludes` (CDK's glob patterns, relative to
    `root`) match."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        dropped = set()
        for name in names:
            relative = (Path(directory) / name).relative_to(root).as_posix()
            for pattern in excludes:
                bare = pattern.removeprefix("**/")
                if fnmatch.fnmatch(name, bare) or fnmatch.fnmatch(relative, pattern):
                    dropped.add(name)
        return dropped

    return ignore


_assets: dict[tuple[Path, str | None], Asset] = {}


def project_asset() -> Asset:
    """The asset of the project this process works on (staged once per process)."""
    project = find_project()
    try:
        module: str | None = pipeline_ref(project).partition(":")[0]
    except ProjectError:
        module = None
    key = (project.code_dir, module)
    if key not in _assets:
        _assets[key] = lambda_asset(project.code_dir, declaration_module=module,
                                    not_deployed=project.not_deployed)
    return _assets[key]
