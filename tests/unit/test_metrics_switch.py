"""When a batch's metrics are emitted: Powertools' documented environment variables decide."""

from __future__ import annotations

import pytest

from cascata_runtime.observability import metrics_disabled


@pytest.mark.parametrize(
    ("disabled", "dev", "expected"),
    [
        (None, None, False),
        ("true", None, True),
        ("TRUE", None, True),
        ("1", None, True),
        ("false", None, False),
        # Dev mode disables metrics unless POWERTOOLS_METRICS_DISABLED says otherwise
        (None, "true", True),
        ("false", "true", False),
        ("true", "false", True),
    ],
)
def test_metrics_are_disabled_as_powertools_documents(
    disabled: str | None, dev: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("POWERTOOLS_METRICS_DISABLED", disabled), ("POWERTOOLS_DEV", dev)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert metrics_disabled() is expected
