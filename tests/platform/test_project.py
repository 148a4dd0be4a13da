"""Which pipeline a process works on: pyproject.toml's setting, the environment, --pipeline."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cascata import project
from cascata.cli import main
from cascata.project import ProjectError, find_project, load_pipeline, pipeline_ref

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(project.PIPELINE_ENV, raising=False)
    monkeypatch.delenv(project.PROJECT_ENV, raising=False)
    project.use_pipeline(None)
    yield
    project.use_pipeline(None)


def _write(root: Path, setting: str, module: str | None = None, body: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f"[tool.cascata]\n{setting}\n")
    if module:
        code = root / "code"
        code.mkdir(exist_ok=True)
        (code / f"{module}.py").write_text(body)
    return root


def test_this_repository_names_the_payments_pipeline() -> None:
    found = find_project(ROOT / "cascata" / "local")
    assert found.root == ROOT
    assert found.pipeline_ref == "payments.pipeline:PIPELINE"
    assert found.code_dir == ROOT / "lambdas"


def test_the_setting_is_found_from_a_subdirectory_and_loads_with_its_code_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = ("from payments.pipeline import PIPELINE as BASE\n"
            "from dataclasses import replace\nMINE = replace(BASE, app='mine')\n")
    root = _write(tmp_path / "proj", 'pipeline = "tiny_decl:MINE"\ncode = "code"', "tiny_decl",
                  body)
    (root / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(root / "deep" / "er")
    found = find_project()
    assert found.root == root and found.code_dir == root / "code"
    pipeline = load_pipeline(pipeline_ref(found), project=found)
    assert pipeline.app == "mine"
    assert str(root / "code") in sys.path


def test_environment_and_option_override_the_file_in_that_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _write(tmp_path, 'pipeline = "a.b:FILE"')
    monkeypatch.chdir(root)
    assert pipeline_ref() == "a.b:FILE"
    monkeypatch.setenv(project.PIPELINE_ENV, "c.d:ENV")
    assert pipeline_ref() == "c.d:ENV"
    project.use_pipeline("e.f:OPTION")
    assert pipeline_ref() == "e.f:OPTION"


@pytest.mark.parametrize(("setting", "module", "body", "says"), [
    ("", None, "", "no pipeline is set"),
    ('pipeline = "no_colon"', None, "", "is not module:attribute"),
    ('pipeline = "missing_module_xyz:P"', None, "", "cannot import 'missing_module_xyz'"),
    ('pipeline = "decl_none:P"\ncode = "code"', "decl_none", "P = 3\n", "is int, not a cascata"),
    ('pipeline = "decl_absent:P"\ncode = "code"', "decl_absent", "", "is nothing, not a"),
    ('pipeline = "decl_bad:P"\ncode = "code"', "decl_bad",
     "from dataclasses import replace\nfrom payments.pipeline import PIPELINE\n"
     "P = replace(PIPELINE, processors=PIPELINE.processors * 2)\n", "is not sound"),
    ("pipeline = 3", None, "", "must be a string"),
    ('code = "../elsewhere"', None, "", "must be a directory inside the project"),
])
def test_a_wrong_setting_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         setting: str, module: str | None, body: str,
                                         says: str) -> None:
    root = _write(tmp_path / "p", setting, module, body)
    monkeypatch.chdir(root)
    with pytest.raises(ProjectError, match=says):
        load_pipeline(pipeline_ref())


def test_the_command_line_says_so_in_one_line_and_exits_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--pipeline", "nowhere_module_q:P", "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: pipeline 'nowhere_module_q:P': cannot import")
    assert "\n" not in err and "Traceback" not in err
    assert main(["--pipeline", "bad", "status"]) == 2
    assert "is neither module:attribute nor a project directory" in capsys.readouterr().err


def test_another_project_is_chosen_by_its_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    example = ROOT / "examples" / "iot"
    assert main(["--pipeline", str(example), "plan", "--rate", "50", "--record-bytes", "300",
                 "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["streams"]["readings-raw"]["records_per_s"] == 50
    assert planned["streams"]["readings"]["records_per_s"] == 50
    assert planned["monthly_usd"]["total"] > 0
    assert find_project().root == example
