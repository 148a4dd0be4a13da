"""docs/tutorial.md, step by step, in a temporary directory, with the installed cascata.

Each command the test runs is checked to be in the tutorial as written; the code the tutorial
asks the reader to add is taken from the tutorial itself. The project's `.venv` is this
suite's environment (a link), so `make` finds cascata installed and installs nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text()
VENV = Path(sys.executable).parent.parent
CASCATA = str(VENV / "bin" / "cascata")


def commands() -> list[str]:
    """The tutorial's shell commands, in order (`$ ` lines of its console blocks)."""
    blocks = re.findall(r"```console\n(.*?)```", TUTORIAL, flags=re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def python_blocks(section: str) -> list[str]:
    body = TUTORIAL.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def run(command: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    assert command in commands(), f"{command!r} is not a step of docs/tutorial.md"
    # The tutorial's own command lines, run as a reader would type them.
    done = subprocess.run(command, shell=True, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env or _env())
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "CASCATA_", "AWS_ENDPOINT_URL"))}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_tutorial_from_cascata_new_to_cdk_synth(tmp_path: Path) -> None:
    # 1. Create the project
    run("cascata new shop-app", tmp_path)
    project = tmp_path / "shop-app"
    assert (project / "lambdas" / "shop_app" / "pipeline.py").is_file()
    (project / ".venv").symlink_to(VENV, target_is_directory=True)

    # 2. Test it
    tested = run("make test", project)
    assert re.search(r"\b4 passed\b", tested.stdout), tested.stdout[-2000:]

    # 3. Run it locally: `make demo` is `cascata up` (on 4566; here on a free port, run
    # directly so that Ctrl-C reaches it as it does in a terminal)
    assert "make demo" in commands()
    assert "\t$(VENV)/bin/cascata up $(ARGS)\n" in (project / "Makefile").read_text()
    port = _free_port()
    demo = subprocess.Popen(
        [".venv/bin/cascata", "up", "--port", str(port), "--json"], cwd=project,
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        endpoints = _first_json_line(demo)
        assert endpoints["aws_endpoint_url"] == f"http://127.0.0.1:{port}"
        assert run("export AWS_ENDPOINT_URL=http://127.0.0.1:4566", project)
        there = _env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        sent = run(".venv/bin/cascata produce --file sample-events.jsonl --stream events",
                   project, there)
        assert "sent 5 events" in sent.stdout
        run(".venv/bin/cascata status", project, there)
        views = _views_when_settled(project, there)
        assert views["counts"] == 2  # keys k-1 and k-2; the retried e-0002 counted once
    finally:
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, err[-2000:]

    # 4. Change it: the tutorial's own code, where it says to put it
    insert, new_test = python_blocks("4. Change it")
    counts = project / "lambdas" / "shop_app" / "domain" / "counts.py"
    anchor = "        elif isinstance(event, Envelope):\n"
    source = counts.read_text()
    assert source.count(anchor) == 1
    counts.write_text(source.replace(anchor, insert + anchor))
    (project / "tests" / "test_items.py").write_text(new_test)
    changed = run("make test", project)
    assert re.search(r"\b5 passed\b", changed.stdout), changed.stdout[-2000:]

    # 5. Render it for AWS, offline
    run("make synth", project)
    template = json.loads((project / "cdk.out" / "shop-app-dev.template.json").read_text())
    functions = [r["Properties"] for r in template["Resources"].values()
                 if r["Type"] == "AWS::Lambda::Function"]
    assert [f["Handler"] for f in functions] == ["shop_app.handlers.count.handler"]
    [asset] = (project / "cdk.out").glob("asset.*")
    assert sorted(p.name for p in asset.iterdir()) == ["cascata_runtime", "shop_app"]
    assert not (asset / "shop_app" / "pipeline.py").exists()
    assert (asset / "cascata_runtime" / "state.py").is_file()

    # ... and with the CDK CLI (this repository's, which `make test` installs), offline too
    cli = ROOT / "node_modules" / ".bin" / "cdk"
    assert "npx cdk synth -c stage=dev" in TUTORIAL
    shutil.rmtree(project / "cdk.out")
    synthesized = subprocess.run(
        [str(cli), "synth", "--no-notices", "--quiet", "-c", "stage=dev"], cwd=project,
        env=_env(CDK_DISABLE_CLI_TELEMETRY="true"), capture_output=True, text=True,
        timeout=600)
    assert synthesized.returncode == 0, synthesized.stderr[-3000:]
    assert (project / "cdk.out" / "shop-app-dev.template.json").is_file()


def _first_json_line(process: subprocess.Popen[str]) -> dict[str, object]:
    """The JSON object `cascata up --json` prints once it is up (make echoes its command
    first)."""
    assert process.stdout is not None and process.stderr is not None
    text = ""
    for line in process.stdout:
        if text or line.startswith("{"):
            text += line
            try:
                found: dict[str, object] = json.loads(text)
            except ValueError:
                continue
            return found
    raise AssertionError(f"cascata up ended before it was up: {process.stderr.read()[-2000:]}")


def _views_when_settled(project: Path, env: dict[str, str]) -> dict[str, int]:
    """`status --json` until nothing is behind and the view holds what was sent (every event
    processed); bounded generously, whatever the machine's load."""
    deadline = time.monotonic() + 300
    while True:
        done = subprocess.run([".venv/bin/cascata", "status", "--json"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        report = json.loads(done.stdout)
        views: dict[str, int] = report["views"]
        if report["lag_records"] == 0 and views.get("counts") == 2:
            return views
        assert time.monotonic() < deadline, report
        time.sleep(0.5)
