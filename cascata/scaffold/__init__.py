"""`cascata new NAME`: a new project, ready to test, run and synthesize with no edit.

The project has app.py and cdk.json (the CDK app), pyproject.toml (naming its pipeline for
every cascata command), a declaration with one origin stream, one processor and one view, the
processor's thin handler and pure domain, tests (the domain alone, and the whole pipeline with
the `cascata_local` fixture), sample events and a Makefile with `make demo` and `make test`.
"""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

TEMPLATE = Path(__file__).resolve().parent / "template"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,16}[a-z0-9]$")
MAX_NAME = 18
"""A project's name prefixes every physical name; S3 bucket names (at most 63 characters)
also carry the stage, the bucket, the account and the region, which leaves 18."""
_TAKEN = frozenset({"cascata", "cascata_runtime", "tests", "stacks", "app", "lambdas"})


class ScaffoldError(ValueError):
    """The name or the directory cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Created:
    directory: Path
    package: str
    files: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"directory": str(self.directory), "package": self.package,
                "files": list(self.files)}


def check_name(name: str) -> str:
    """The project's Python package name for `name`, or ScaffoldError saying what is wrong."""
    if not _NAME.match(name) or "--" in name:
        raise ScaffoldError(
            f"project name {name!r} must be 2-{MAX_NAME} characters of a-z, 0-9 and single "
            "'-', starting with a letter (it prefixes every AWS resource name)")
    package = name.replace("-", "_")
    if keyword.iskeyword(package) or package in _TAKEN:
        raise ScaffoldError(f"project name {name!r} would shadow the Python name {package!r}; "
                            "choose another")
    return package


def cascata_requirement() -> str:
    """How the new project's Makefile installs cascata: from the directory this cascata was
    installed from (a checkout), else the same release."""
    try:
        dist = metadata.distribution("cascata")
    except metadata.PackageNotFoundError:
        return str(Path(__file__).resolve().parents[2])
    direct = dist.read_text("direct_url.json")
    if direct:
        url = str(json.loads(direct).get("url", ""))
        parsed = urlparse(url)
        if parsed.scheme == "file":
            return unquote(parsed.path)
        if url:
            return url
    return f"cascata=={dist.version}"


def create(name: str, directory: Path | None = None, *,
           requirement: str | None = None) -> Created:
    """Write the project `name` into `directory` (default: ./NAME), which must not exist or
    be empty."""
    package = check_name(name)
    target = (directory or Path.cwd() / name).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not empty")
    values = {
        "project": name,
        "package": package,
        "title": name.replace("-", " ").capitalize(),
        "cascata_requirement": requirement or cascata_requirement(),
    }
    written: list[str] = []
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = source.relative_to(TEMPLATE).as_posix().replace("__package__", package)
        relative = relative.removesuffix(".tmpl")
        text = source.read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace("{{" + placeholder + "}}", value)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text, encoding="utf-8")
        written.append(relative)
    (target / ".gitignore").write_text(".venv/\ncdk.out/\n__pycache__/\n.pytest_cache/\n")
    written.append(".gitignore")
    return Created(directory=target, package=package, files=tuple(sorted(written)))
