"""Fixtures for the local event source mapping engine: moto in-process, a manual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cascata.local.clock import ManualClock
from tests.local.helpers import REGION


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process with fake credentials: nothing can reach AWS."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def kinesis(moto_aws: None) -> Any:
    return boto3.client("kinesis", region_name=REGION)


@pytest.fixture
def make_stream(kinesis: Any) -> Callable[..., str]:
    def make(name: str = "orders", shards: int = 1) -> str:
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        return name

    return make


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
