"""The example's tests run on its own pipeline, from its directory or from cascata's suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascata.pipeline import Pipeline
from cascata.project import add_code_path, find_project, load_pipeline

PROJECT = find_project(Path(__file__).resolve().parent)
add_code_path(PROJECT)  # `import iot` in the tests, as on Lambda


@pytest.fixture
def cascata_pipeline() -> Pipeline:
    """The plugin's fixtures (`cascata_local`, `cascata_chaos`) run this pipeline."""
    assert PROJECT.pipeline_ref is not None
    return load_pipeline(PROJECT.pipeline_ref, project=PROJECT)
