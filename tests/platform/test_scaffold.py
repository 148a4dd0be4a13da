"""`cascata new`: names checked, nothing overwritten, every file rendered, one-line errors."""

from __future__ import annotations

import ast
import json
import tomllib
from pathlib import Path

import pytest

from cascata.cli import main
from cascata.scaffold import ScaffoldError, check_name, create


@pytest.mark.parametrize("name", ["a", "1abc", "Abc", "ab_c", "ab--c", "abc-", "x" * 19,
                                  "tests", "class", "cascata"])
def test_a_name_that_cannot_prefix_aws_names_or_import_is_refused(name: str) -> None:
    with pytest.raises(ScaffoldError):
        check_name(name)


def test_a_project_is_rendered_whole(tmp_path: Path) -> None:
    created = create("iot-lab", tmp_path / "iot-lab", requirement="/src/cascata")
    root = created.directory
    assert created.package == "iot_lab"
    settings = tomllib.loads((root / "pyproject.toml").read_text())
    assert settings["tool"]["cascata"] == {"pipeline": "iot_lab.pipeline:PIPELINE",
                                           "code": "lambdas"}
    assert json.loads((root / "cdk.json").read_text())["app"] == "python3 app.py"
    assert "CASCATA ?= /src/cascata" in (root / "Makefile").read_text()
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "{{" not in text, path
            if path.suffix == ".py":
                ast.parse(text, filename=str(path))
    assert (root / "lambdas" / "iot_lab" / "handlers" / "count.py").is_file()
    assert 'app="iot-lab"' in (root / "lambdas" / "iot_lab" / "pipeline.py").read_text()


def test_an_existing_project_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not empty"):
        create("taken", tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_the_command_reports_in_json_and_refuses_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "lab-one", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["package"] == "lab_one" and "lambdas/lab_one/pipeline.py" in report["files"]
    assert main(["new", "lab-one"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")
    assert main(["new", "Bad_Name"]) == 2
    err = capsys.readouterr().err
    assert "must be 2-18 characters" in err and err.count("\n") == 1
