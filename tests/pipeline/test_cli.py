"""The CLI: JSON output shapes, and one-line errors with a non-zero exit for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cascata.cli import main
from cascata.local.emulator import EmbeddedAws
from tests.support.events import kinesis_event, payment

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cascata", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["produce", "--events", "-3"], "--events"),
        (["produce", "--events", "99999999999"], "--events"),
        (["demo", "--events", "0"], "--events"),
        (["demo", "--crash-rate", "0.9"], "--crash-rate"),
        (["invoke", "nosuch", "--event", "x.json"], "unknown function 'nosuch'"),
        (["invoke", "validate", "--event", "/does/not/exist.json"], "cannot read"),
        (["produce", "--events", "3", "--endpoint-url", "ftp://nowhere"], "http(s) URL"),
        (["produce", "--events", "3", "--endpoint-url", "http://127.0.0.1:9"], "cannot reach"),
        (["produce", "--events", "3", "--stream", "nope"], "unknown stream"),
        (["produce"], "exactly one of --file"),
        (["nonsense"], "No such command"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error")
    assert message in lines[0]
    assert "Traceback" not in captured.err


def test_malformed_event_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["invoke", "validate", "--event", str(bad)]) == 2
    assert "is not JSON" in capsys.readouterr().err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"hello": "world"}))
    assert main(["invoke", "validate", "--event", str(wrong)]) == 2
    assert "not a Kinesis, Kafka or API Gateway" in capsys.readouterr().err


def test_a_subprocess_sees_no_traceback_either() -> None:
    result = run_cli("produce", "--events", "-1")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_invoke_prints_response_and_effects_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = kinesis_event([payment("ok-1"), payment("bad-1", currency="ZZZ")],
                          stream="cascata-local-payments-raw")
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    assert main(["invoke", "validate", "--event", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["response"] == {"batchItemFailures": []}
    [emitted] = result["effects"]["emitted"]
    assert emitted["event"]["event_id"] == "ok-1"
    assert emitted["stream"] == "cascata-local-payments-validated"
    [quarantined] = result["effects"]["quarantined"]
    assert quarantined["reason"]["code"] == "unknown_currency"
    # The only item written: each event id's duplicate marker (the origin gate)
    assert sorted(w["item"]["id"] for w in result["effects"]["written"]) == [
        "cascata-local-payments-raw#bad-1", "cascata-local-payments-raw#ok-1"]
    assert {w["table"] for w in result["effects"]["written"]} == {"cascata-local-dedupe"}


def test_produce_from_a_jsonl_file_to_an_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [json.dumps(payment(f"f{i}")) for i in range(25)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    with EmbeddedAws() as aws:
        from cascata.local.emulator import provision
        from payments.pipeline import PIPELINE

        names = provision(PIPELINE, aws, stage="clitest").names
        code = main(["produce", "--file", str(path), "--stage", "clitest",
                     "--endpoint-url", str(aws.endpoint_url), "--json"])
        summary = json.loads(capsys.readouterr().out)
        assert code == 0
        assert summary["sent"] == 25 and summary["failed"] == 0
        stream = aws.kinesis_backend().streams[names["payments-raw"]]
        assert sum(len(s.records) for s in stream.shards.values()) == 25


def test_a_jsonl_line_without_a_key_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(payment("a")) + "\n" + json.dumps({"no": "key"}) + "\n")
    assert main(["produce", "--file", str(path)]) == 2
    assert f"{path}:2" in capsys.readouterr().err


def test_every_commands_help_names_the_global_options(capsys: pytest.CaptureFixture[str]) -> None:
    from cascata.cli import app

    assert main(["--help"]) == 0
    capsys.readouterr()
    names = [c.name or c.callback.__name__ for c in app.registered_commands if c.callback]
    assert {"up", "produce", "status", "replay", "plan", "demo"} <= set(names)
    for name in names:
        assert main([name, "--help"]) == 0, name
        text = " ".join(capsys.readouterr().out.split())
        assert "--profile NAME, --region REGION" in text, name
