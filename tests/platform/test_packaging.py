"""`pip install` of the repository: what the distribution holds and the commands it installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Built from a copy: setuptools writes its build/ directory beside the sources.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "cascata", source / "cascata", ignore=skip)
    shutil.copytree(ROOT / "lambdas" / "cascata_runtime", source / "lambdas" / "cascata_runtime",
                    ignore=skip)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=300)
    [built] = out.glob("cascata-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_the_platform_and_the_lambda_runtime_not_the_app(
        wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert {"cascata/cli.py", "cascata/project.py", "cascata/cdk/pipeline_stack.py",
            "cascata/local/runtime.py", "cascata/testing/plugin.py",
            "cascata_runtime/state.py", "cascata_runtime/settings.py"} <= names
    templates = {n for n in names if n.startswith("cascata/scaffold/template/")}
    assert "cascata/scaffold/template/lambdas/__package__/pipeline.py.tmpl" in templates
    assert "cascata/scaffold/template/Makefile.tmpl" in templates
    assert not any(n.startswith(("payments/", "tests/", "lambdas/")) for n in names)


def test_the_wheel_installs_the_command_and_the_pytest_plugin(wheel: zipfile.ZipFile) -> None:
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[console_scripts]\ncascata = cascata.cli:main" in text
    assert "[pytest11]\ncascata = cascata.testing.plugin" in text
    [metadata] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    meta = wheel.read(metadata).decode()
    assert "Requires-Python: <3.14,>=3.11" in meta
    for dependency in ("boto3", "aws-cdk-lib", "moto[server]", "aws-lambda-powertools"):
        assert f"Requires-Dist: {dependency}" in meta
