"""`cascata up --console-port`: a bad or taken port is one line and exit status 2.

Apart from tests/pipeline/test_console.py: these start `up` themselves, and one process runs one
embedded emulator at a time."""

from __future__ import annotations

import pytest

from cascata.local.serve import UpOptions

pytestmark = pytest.mark.pipeline


@pytest.mark.parametrize(("args", "words"), [
    (["--port", "4599", "--console-port", "4599"], "--console-port must differ"),
    (["--api-port", "4598", "--console-port", "4598"], "--console-port must differ"),
    (["--console-port", "70000"], "--console-port"),
])
def test_a_bad_console_port_is_one_line_and_exit_2(args: list[str], words: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cascata.cli import main

    assert main(["up", *args]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error") and words in error and "\n" not in error


def test_a_console_port_in_use_is_one_line() -> None:
    import socket

    from cascata.console import CliError
    from cascata.local.serve import up as run_up

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CliError) as raised:
            run_up(UpOptions(port=0, api_port=0, stage="consoleport", console_port=port))
    message = str(raised.value)
    assert f"cannot serve the console on 127.0.0.1:{port}" in message and "\n" not in message
