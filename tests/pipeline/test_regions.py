"""`cascata up` and the commands that reach it, in the region the user's configuration names.

Each test runs `up` (or the embedded emulator) in this process and the commands through
`cascata.cli.main`, with fake credentials and a temporary AWS config file: nothing leaves the
machine."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cascata.cli import main
from cascata.local.emulator import EmbeddedAws, provision
from cascata.local.serve import UpOptions
from cascata.pipeline import LOCAL_ACCOUNT
from payments.pipeline import PIPELINE
from tests.support.up import running_up

pytestmark = pytest.mark.pipeline
STAGE = "regions"
RAW = PIPELINE.physical_name("payments-raw", stage=STAGE)


@pytest.fixture(autouse=True)
def _settings(no_aws_settings: None) -> None:
    """No region, profile or endpoint but what each test names (tests/conftest.py)."""


@pytest.fixture
def up_in_eu_west_1(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """`cascata up`, started with AWS_REGION=eu-west-1 (then the variable is unset again:
    each test says what the commands' environment names)."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    with running_up(UpOptions(port=0, api_port=0, stage=STAGE), timeout_s=60) as ready:
        monkeypatch.delenv("AWS_REGION")
        yield ready


def records_in(region: str, stream: str) -> int | None:
    from moto.kinesis.models import kinesis_backends

    found = kinesis_backends[LOCAL_ACCOUNT][region].streams.get(stream)
    return None if found is None else sum(len(s.records) for s in found.shards.values())


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_up_produce_and_status_in_the_region_the_environment_names(
    up_in_eu_west_1: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = up_in_eu_west_1["aws_endpoint_url"]
    # Given `up` started under AWS_REGION=eu-west-1: its resources are in eu-west-1 only
    assert up_in_eu_west_1["region"] == "eu-west-1"
    assert records_in("eu-west-1", RAW) == 0
    assert records_in("us-east-1", RAW) is None
    # When produce runs with the same environment
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    code, out, err = run(["produce", "--events", "30", "--stage", STAGE, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["sent"] == 30
    assert records_in("eu-west-1", RAW) == 30
    # Then status finds up's report there, and the pipeline drains
    report: dict[str, Any] = {}
    deadline = time.time() + 90
    while time.time() < deadline:
        code, out, err = run(["status", "--stage", STAGE, "--json"], capsys)
        assert code == 0, err
        report = json.loads(out)
        if report["lag_records"] == 0 and report["views"]["balances"] > 0:
            break
        time.sleep(0.5)
    assert report["region"] == "eu-west-1"
    assert report["lag_records"] == 0 and report["views"]["balances"] > 0
    # And what the runtime names in its ARNs is in that region too
    from moto.s3.models import s3_backends

    archive = PIPELINE.physical_name("archive", stage=STAGE, region="eu-west-1")
    assert s3_backends[LOCAL_ACCOUNT]["aws"].buckets[archive].region_name == "eu-west-1"


def test_a_profile_gives_the_region_and_the_endpoint(
    up_in_eu_west_1: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config"
    config.write_text("[profile local-up]\nregion = eu-west-1\n"
                      f"endpoint_url = {up_in_eu_west_1['aws_endpoint_url']}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    code, out, err = run(["--profile", "local-up", "produce", "--events", "7", "--stage", STAGE,
                          "--json"], capsys)
    assert code == 0, err
    assert records_in("eu-west-1", RAW) == 7
    # The global option after the command's name works the same
    code, out, err = run(["versions", "--stage", STAGE, "--profile", "local-up", "--json"],
                         capsys)
    assert code == 0, err
    assert json.loads(out)["live"] == "v1"


def test_region_disagreement_is_one_line_unless_nothing_named_a_region(
    up_in_eu_west_1: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = up_in_eu_west_1["aws_endpoint_url"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    # Given the environment names another region than up's: a one-line error naming both
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    for args in (["produce", "--events", "3"], ["status"], ["versions"]):
        code, _, err = run([*args, "--stage", STAGE], capsys)
        assert code == 2
        [line] = err.strip().splitlines()
        assert line.startswith("error: ") and "runs in eu-west-1, not in us-west-2" in line
        assert "--region eu-west-1" in line
    assert records_in("us-west-2", RAW) is None
    # When --region names up's region, it overrides the environment
    code, _, err = run(["produce", "--events", "3", "--stage", STAGE, "--region", "eu-west-1"],
                       capsys)
    assert code == 0, err
    assert records_in("eu-west-1", RAW) == 3
    # And when nothing names a region, the commands follow up's
    monkeypatch.delenv("AWS_REGION")
    code, out, err = run(["produce", "--events", "2", "--stage", STAGE, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["sent"] == 2
    assert records_in("eu-west-1", RAW) == 5
    # A stage up does not run is an error too, not an empty answer
    code, _, err = run(["status", "--stage", "elsewhere"], capsys)
    assert code == 2 and "no pipeline" in err and "no table cascata-elsewhere-balances" in err


def test_a_service_endpoint_variable_is_honoured_by_an_aws_facing_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an emulator with the pipeline in eu-west-1, and no endpoint but per-service ones
    with EmbeddedAws(region="eu-west-1") as aws:
        provision(PIPELINE, aws, stage=STAGE)
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        for service in ("KINESIS", "DYNAMODB", "STS"):
            monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", str(aws.endpoint_url))
        # When produce (AWS by default) and versions --aws (AWS itself) run
        code, _, err = run(["produce", "--events", "4", "--stage", STAGE], capsys)
        assert code == 0, err
        code, out, err = run(["versions", "--aws", "--stage", STAGE, "--json"], capsys)
        assert code == 0, err
        # Then the requests arrived at the emulator: the records, and the registry read
        assert records_in("eu-west-1", RAW) == 4
        assert json.loads(out)["live"] == "v1"
        # And without the Kinesis variable produce would have gone elsewhere (AWS itself)
        monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:9")
        code, _, err = run(["produce", "--events", "4", "--stage", STAGE], capsys)
        assert code == 2 and "cannot reach http://127.0.0.1:9" in err


def test_the_demo_runs_in_the_region_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    code, out, err = run(["demo", "--events", "200", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] and result["region"] == "eu-west-1"
