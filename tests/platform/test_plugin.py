"""The pytest plugin as a user's suite gets it: fixtures found by installing cascata."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iot"


def test_a_users_suite_gets_the_fixtures_and_can_change_the_faults(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest(f'''
import pytest
from pathlib import Path
from cascata.local.chaos import ChaosSettings
from cascata.project import find_project, load_pipeline

PROJECT = find_project(Path({str(EXAMPLE)!r}))

@pytest.fixture
def cascata_pipeline():
    return load_pipeline(PROJECT.pipeline_ref, project=PROJECT)

@pytest.fixture
def cascata_chaos_settings():
    return ChaosSettings(seed=3, crash_rate=0.5, put_failure_rate=0, throttle_rate=0,
                         duplicate_rate=0)
''')
    pytester.makepyfile(test_user='''
def test_local(cascata_local):
    assert cascata_local.pipeline.app == "iot"
    assert cascata_local.runtime.chaos is None

def test_chaos(cascata_chaos):
    assert cascata_chaos.runtime.chaos.crash_rate == 0.5
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
