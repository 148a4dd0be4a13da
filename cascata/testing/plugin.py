"""The pytest plugin every cascata install brings (entry point `pytest11`: `cascata`).

Fixtures, for the project's declared pipeline (`[tool.cascata] pipeline`, or
`CASCATA_PIPELINE`):

- `cascata_pipeline`: the declared `Pipeline` (override it in a conftest.py to test another).
- `cascata_local`: a `LocalPipeline` of it, started on the embedded emulator, closed after the
  test: `produce`, `drain`, `table`, `item`, `quarantined`, `failures`, `request`.
- `cascata_chaos`: the same with faults on (crashed invocations, partial PutRecords failures,
  throttles, duplicate sends) at rates a test of a few hundred events meets every kind of
  (`CHAOS`; override `cascata_chaos_settings` for others): the invariants a test asserts
  must hold anyway.

Tests run offline: the plugin points boto3 at fake credentials and never at an account.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from cascata.pipeline import Pipeline

if TYPE_CHECKING:
    from cascata.local.chaos import ChaosSettings
    from cascata.testing import LocalPipeline

_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cascata: a test of a cascata pipeline")


@pytest.fixture
def cascata_pipeline() -> Pipeline:
    """The project's declared pipeline."""
    from cascata.project import current_pipeline

    return current_pipeline()


@pytest.fixture
def _cascata_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in _FAKE_AWS.items():
        monkeypatch.setenv(name, os.environ.get(name, value) if name.startswith("POWER")
                           else value)


@pytest.fixture
def cascata_local(cascata_pipeline: Pipeline, _cascata_offline: None) -> Iterator[LocalPipeline]:
    """The declared pipeline on the embedded emulator, every processor running."""
    from cascata.testing import LocalPipeline

    with LocalPipeline(cascata_pipeline) as local:
        yield local


@pytest.fixture
def cascata_chaos_settings() -> ChaosSettings:
    """The faults `cascata_chaos` injects (`CHAOS`); override it to test other rates."""
    from cascata.testing import CHAOS

    return CHAOS


@pytest.fixture
def cascata_chaos(cascata_pipeline: Pipeline, cascata_chaos_settings: ChaosSettings,
                  _cascata_offline: None) -> Iterator[LocalPipeline]:
    """The declared pipeline with faults injected (`cascata_chaos_settings`)."""
    from cascata.testing import LocalPipeline

    with LocalPipeline(cascata_pipeline, chaos=cascata_chaos_settings) as local:
        yield local
