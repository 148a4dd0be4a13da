"""`python app.py` and the pinned CDK CLI synthesize with no credentials, Docker or network.

These run the real entry points in subprocesses with every AWS credential source removed, so
a lookup, an asset bundling step or a credential-needing call anywhere in the app fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

CDK_CLI = ROOT / "node_modules" / ".bin" / "cdk"


def _offline_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        {
            # No credential source at all: files, instance metadata, environment.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            # cdk.json runs `python3 app.py`: the project's interpreter must come first.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_python_app_synthesizes_offline(tmp_path: Path) -> None:
    # Given `python app.py` choosing a stage like the CLI would
    env = _offline_environment(CDK_OUTDIR=str(tmp_path))
    # When it runs without credentials
    result = _run([sys.executable, "app.py", "-c", "stage=prod"], env)
    # Then the prod template is written, with cdk-nag satisfied
    assert result.returncode == 0, result.stderr[-3000:]
    template = json.loads((tmp_path / "cascata-prod.template.json").read_text())
    assert any(r["Type"] == "AWS::Kinesis::Stream" for r in template["Resources"].values())


@pytest.mark.skipif(
    not CDK_CLI.exists() or shutil.which("node") is None,
    reason="run `npm ci` first: the CDK CLI is pinned in package.json",
)
@pytest.mark.parametrize(
    ("context", "stack"),
    [
        (["-c", "stage=dev"], "cascata-dev"),
        (["-c", "stage=prod", "-c", "broker=msk"], "cascata-prod"),
        (
            ["-c", "broker=msk", "-c", "version=v2", "-c", "replayFrom=stream"],
            "cascata-dev-v2",
        ),
    ],
)
def test_pinned_cli_synthesizes_offline(context: list[str], stack: str, tmp_path: Path) -> None:
    result = _run(
        [str(CDK_CLI), "synth", "--no-notices", "--quiet", "--output", str(tmp_path), *context],
        _offline_environment(),
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (tmp_path / f"{stack}.template.json").exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    # Nothing was left for a credentialed context lookup to fill in
    assert not manifest.get("missing"), manifest.get("missing")


def test_python_app_synthesizes_a_version_stack_next_to_the_base(tmp_path: Path) -> None:
    env = _offline_environment(CDK_OUTDIR=str(tmp_path))
    result = _run(
        [
            sys.executable,
            "app.py",
            "-c",
            "stage=dev",
            "-c",
            "version=v3",
            "-c",
            "replayFrom=archive",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    version = json.loads((tmp_path / "cascata-dev-v3.template.json").read_text())
    types = {r["Type"] for r in version["Resources"].values()}
    assert "AWS::StepFunctions::StateMachine" in types
    assert "AWS::S3::Bucket" not in types
    assert (tmp_path / "cascata-dev.template.json").exists()


def test_python_app_refuses_bad_version_context_without_a_traceback(tmp_path: Path) -> None:
    env = _offline_environment(CDK_OUTDIR=str(tmp_path))
    result = _run([sys.executable, "app.py", "-c", "version=v1"], env)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("cascata: -c version=v1 is the base stack's")
    assert "Traceback" not in result.stderr


def test_python_app_refuses_an_archive_replay_on_msk_in_one_line(tmp_path: Path) -> None:
    env = _offline_environment(CDK_OUTDIR=str(tmp_path))
    result = _run(
        [sys.executable, "app.py", "-c", "broker=msk", "-c", "version=v2", "-c",
         "replayFrom=archive"],
        env,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "cascata: -c replayFrom=archive: broker 'msk' archives nothing; replay from its "
        "topics with -c replayFrom=stream"
    )
    assert not list(tmp_path.glob("*.template.json"))
