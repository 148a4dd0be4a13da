"""Bad input for the commands that read files: `cascata invoke --event` and `cascata produce
--file` (rows of docs/bad-input.md; `test_bad_input` checks the table). Apart from the running
pipeline of `test_bad_input`: each command starts and stops its own emulator."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cascata.cli import main
from tests.pipeline.bad_input_cases import case, deep
from tests.support.events import kinesis_event, payment

# --- event files for `cascata invoke` ----------------------------------------------------------


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error"), err
    assert "Traceback" not in err
    return lines[0]


@case("`cascata invoke --event`", "a file that is not JSON, not UTF-8, or not an object",
      "one `error:` line, exit 2")
@case("`cascata invoke --event`", "a file nested over 512 levels or with a lone surrogate",
      "one `error:` line naming `too_deep` or `invalid_text`, exit 2")
@case("`cascata invoke --event`", "a file over 6 MB (Lambda's payload limit)",
      "one `error:` line, exit 2")
def test_invoke_refuses_event_files_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "not-json.json": (b"{nope", "not JSON"),
        "not-utf8.json": (b'{"a":"\xff"}', "not UTF-8"),
        "array.json": (b"[]", "JSON object"),
        "deep.json": (b"[" * 600 + b"]" * 600, "too_deep"),
        "lone.json": (b'{"Records":[],"x":"\\udc00"}', "invalid_text"),
        "huge.json": (b'{"a":"' + b"x" * (6 * 1024 * 1024) + b'"}', "6 MB"),
    }
    for name, (content, fragment) in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert main(["invoke", "validate", "--event", str(path)]) == 2, name
        assert fragment in one_error_line(capsys), name


@case("`cascata invoke --event`", "a Kinesis record whose data is not valid base64",
      "quarantined with `undecodable`, its original text kept")
def test_invoke_quarantines_a_record_that_is_not_base64_with_what_arrived(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = kinesis_event([payment("fine")], stream="cascata-local-payments-raw")
    bad = dict(event["Records"][0])
    bad["kinesis"] = {**bad["kinesis"], "data": "not*base64!", "sequenceNumber": "99"}
    event["Records"].append(bad)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    assert main(["invoke", "validate", "--event", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["response"] == {"batchItemFailures": []}
    [quarantined] = result["effects"]["quarantined"]
    assert quarantined["reason"]["code"] == "undecodable"
    assert base64.b64decode(quarantined["data_base64"]) == b"not*base64!"


# --- JSONL files for `cascata produce` ---------------------------------------------------------


@case("`cascata produce --file`", "a line that is not JSON, not UTF-8, nested over 32 "
      "levels, with a lone surrogate, or without a string `key`",
      "one `error:` line naming the file, the line and the reason, exit 2; nothing sent")
@case("`cascata produce --file`", "a line over 1 MiB", "one `error:` line, exit 2; nothing sent")
def test_produce_names_the_line_it_cannot_send(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = json.dumps(payment("good")).encode()
    lines = {
        b"{nope": "not JSON",
        b'{"key":"\xff"}': "not UTF-8",
        json.dumps({"key": "k", "d": deep(40)}).encode(): "too_deep",
        b'{"key":"k","n":"\\ud800"}': "invalid_text",
        json.dumps({"nokey": 1}).encode(): "`key`",
        json.dumps({"key": "k", "pad": "x" * (1024 * 1024)}).encode(): "1 MiB",
    }
    for number, (line, fragment) in enumerate(lines.items()):
        path = tmp_path / f"events-{number}.jsonl"
        path.write_bytes(good + b"\n" + line + b"\n")
        # No endpoint is given: the file is refused before anything is sent anywhere.
        assert main(["produce", "--file", str(path)]) == 2
        message = one_error_line(capsys)
        assert f"{path}:2" in message and fragment in message, message
