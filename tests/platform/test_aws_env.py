"""Profiles, regions, partitions and endpoints as the AWS CLI resolves them (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascata.aws_env import AwsSettingsError, arn, partition_for, resolve, use_settings
from cascata.cli import global_options_first, main
from cascata.local.emulator import UP_ENDPOINT, external


@pytest.fixture(autouse=True)
def _settings(no_aws_settings: None) -> None:
    """No region, profile or endpoint but what each test names (tests/conftest.py)."""


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    path = tmp_path / "config"
    path.write_text(body)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))


def test_the_region_comes_from_the_flag_then_aws_region_then_the_default_then_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(tmp_path, monkeypatch, "[profile team]\nregion = ap-southeast-2\n")
    # Nothing names one: the local default, named by no one
    assert (resolve().region, resolve().region_source) == ("us-east-1", "")
    use_settings(profile="team", region=None)
    assert (resolve().region, resolve().region_source) == ("ap-southeast-2", "profile team")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert resolve().region == "eu-central-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert (resolve().region, resolve().region_source) == ("eu-west-1", "AWS_REGION")
    use_settings(profile="team", region="us-west-2")
    assert (resolve().region, resolve().region_source) == ("us-west-2", "--region")
    assert resolve().session.profile_name == "team"


def test_aws_itself_needs_a_region_someone_named() -> None:
    with pytest.raises(AwsSettingsError, match="no AWS region"):
        resolve(default_region=None)


def test_the_partition_follows_the_region() -> None:
    assert partition_for("eu-west-1") == "aws"
    assert arn("kinesis", "stream/s", region="cn-north-1", account="1") == \
        "arn:aws-cn:kinesis:cn-north-1:1:stream/s"
    assert arn("lambda", "function:f", region="us-gov-west-1", account="1").startswith(
        "arn:aws-us-gov:lambda:us-gov-west-1:")
    with pytest.raises(AwsSettingsError, match="unknown AWS region 'eu west 1'"):
        partition_for("eu west 1")


def test_endpoints_are_botocores_own_the_profile_then_the_service_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(tmp_path, monkeypatch,
            "[profile local]\nregion = eu-west-1\nendpoint_url = http://127.0.0.1:4999\n")
    use_settings(profile="local", region=None)
    # Given a profile with a region and an endpoint_url
    aws = external(None)
    assert aws.region == "eu-west-1"
    assert aws.where("kinesis") == "http://127.0.0.1:4999"
    # When one service gets its own endpoint, only that service moves
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:4998")
    aws = external(None)
    assert aws.where("kinesis") == "http://127.0.0.1:4998"
    assert aws.where("dynamodb") == "http://127.0.0.1:4999"
    # And --endpoint-url beats them all
    assert external("http://127.0.0.1:4997").where("kinesis") == "http://127.0.0.1:4997"


def test_the_local_default_endpoint_only_where_nothing_is_configured(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    aws = external(None, default_endpoint=UP_ENDPOINT)
    assert aws.where("kinesis") == UP_ENDPOINT
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4996")
    aws = external(None, default_endpoint=UP_ENDPOINT)
    assert aws.where("dynamodb") == "http://127.0.0.1:4996"
    assert aws.where("kinesis") == UP_ENDPOINT
    # Without a local default, AWS itself, in the region named
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert external(None).where("kinesis") == "https://kinesis.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--profile", "nope", "status"], {}, "no AWS profile 'nope'"),
        (["status", "--profile", "nope"], {}, "no AWS profile 'nope'"),
        (["produce", "--events", "3"], {"AWS_PROFILE": "ghost"}, "no AWS profile 'ghost'"),
        (["--region", "nowhere", "status"], {}, "unknown AWS region 'nowhere'"),
        (["versions", "--region=mars-1", "--json"], {}, "unknown AWS region 'mars-1'"),
        (["versions", "--aws"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "no AWS region"),
    ],
)
def test_a_bad_profile_or_region_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], message: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in captured.err


def test_main_leaves_no_region_behind_for_the_next_command() -> None:
    assert main(["--region", "eu-west-1", "plan", "--rate", "10", "--record-bytes", "200",
                 "--json"]) == 0
    assert (resolve().region, resolve().region_source) == ("us-east-1", "")


def test_global_options_are_read_before_or_after_the_command() -> None:
    assert global_options_first(["produce", "--events", "3", "--region", "eu-west-1"]) == [
        "--region", "eu-west-1", "produce", "--events", "3"]
    assert global_options_first(["status", "--profile=p", "--json", "--pipeline", "x:y"]) == [
        "--profile=p", "--pipeline", "x:y", "status", "--json"]
    assert global_options_first(["invoke", "f", "--", "--region", "x"]) == [
        "invoke", "f", "--", "--region", "x"]
