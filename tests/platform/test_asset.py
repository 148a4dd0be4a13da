"""The functions' asset: the project's code beside cascata_runtime, staged without Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascata.cdk.asset import lambda_asset, runtime_dir

ROOT = Path(__file__).resolve().parents[2]


def test_in_this_repository_the_code_dir_is_the_asset() -> None:
    asset = lambda_asset(ROOT / "lambdas", declaration_module="payments.pipeline")
    assert asset.path == ROOT / "lambdas"
    assert "payments/pipeline.py" in asset.excludes
    assert runtime_dir() == ROOT / "lambdas" / "cascata_runtime"


def test_a_project_s_code_is_staged_beside_the_runtime(tmp_path: Path) -> None:
    code = tmp_path / "lambdas"
    (code / "shop" / "handlers").mkdir(parents=True)
    (code / "shop" / "__init__.py").write_text("")
    (code / "shop" / "pipeline.py").write_text("import cascata\n")
    (code / "shop" / "handlers" / "count.py").write_text("def handler(e, c): ...\n")
    (code / "shop" / "__pycache__").mkdir()
    (code / "shop" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (code / "shop" / "test_local.py").write_text("")
    asset = lambda_asset(code, declaration_module="shop.pipeline")
    staged = {p.relative_to(asset.path).as_posix() for p in asset.path.rglob("*")
              if p.is_file()}
    assert {"shop/__init__.py", "shop/handlers/count.py"} <= staged
    assert not {"shop/pipeline.py", "shop/test_local.py", "shop/__pycache__/x.pyc"} & staged
    runtime = {p for p in staged if p.startswith("cascata_runtime/")}
    assert "cascata_runtime/state.py" in runtime and "cascata_runtime/handler.py" in runtime
    assert not any("__pycache__" in p for p in runtime)


def test_a_missing_code_dir_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"\[tool.cascata\] code"):
        lambda_asset(tmp_path / "nope")


def test_a_code_dir_with_its_own_runtime_ships_it(tmp_path: Path) -> None:
    code = tmp_path / "lambdas"
    (code / "cascata_runtime").mkdir(parents=True)
    (code / "cascata_runtime" / "__init__.py").write_text("")
    (code / "app").mkdir()
    asset = lambda_asset(code)
    assert asset.path == code
