"""Suite-wide settings: fake credentials and no network, whatever the machine has configured."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before any test module imports boto3 or Powertools: nothing may ever reach AWS, and
# Powertools must not buffer metrics (they are printed only in Lambda).
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
        "POWERTOOLS_SERVICE_NAME": "cascata-tests",
    }
)


LONGEST_FIRST = (
    "tests/pipeline/test_versions.py",  # a real quiet period, then five replays
    "tests/pipeline/test_bench.py",
    "tests/infrastructure/test_compliance.py",
    "tests/infrastructure/test_synth.py",
    "tests/pipeline/test_tutorial.py",
    "tests/infrastructure/test_versions.py",
    "tests/infrastructure/test_scanners.py",
    "tests/pipeline/test_demo_kafka.py",
    "tests/pipeline/test_demo.py",
    "tests/pipeline/test_regions.py",
    "tests/pipeline/test_console_browser.py",
    "tests/pipeline/test_hot_keys.py",
    "tests/unit/test_balances_properties.py",
)
"""Files that take half a minute or more, slowest first (as measured), started first: with
`--dist loadfile` each file runs on one worker, and a long file started last would run alone at
the end while the other core idles. pyproject.toml's `--no-loadscope-reorder` keeps xdist from
reordering the files by their number of tests."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def order(item: pytest.Item) -> int:
        return rank.get(os.path.relpath(str(item.path), root), len(rank))

    items.sort(key=order)  # stable: every other test keeps its place


@pytest.fixture
def no_aws_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Nothing names a region, a profile or an endpoint unless the test does, and no real AWS
    configuration is read; the command line's --profile/--region are cleared around it."""
    from cascata.aws_env import use_settings

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB",
                 "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    use_settings(profile=None, region=None)
    yield
    use_settings(profile=None, region=None)


@pytest.fixture
def lambda_context() -> object:
    from tests.support.events import LambdaContext

    return LambdaContext("test-function")


@pytest.fixture
def aws() -> Iterator[None]:
    """moto in-process for functional tests (no server, no network)."""
    from moto import mock_aws

    with mock_aws():
        yield
