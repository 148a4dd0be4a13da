"""Stage configuration: context in, a validated StageConfig out, mistakes named early.

Pure Python, no synthesis: these run in milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cascata.pipeline import PIPELINE, Broker
from stacks.config import ConfigError, stage_config

from .conftest import CDK_CONTEXT, ROOT


def _context(**overrides: Any) -> Any:
    values = {**CDK_CONTEXT, **overrides}
    return values.get


def test_dev_and_prod_defaults_resolve_from_cdk_json() -> None:
    dev = stage_config(_context(), environ={})
    prod = stage_config(_context(stage="prod"), environ={})
    assert dev.stage == "dev" and prod.stage == "prod"
    assert dev.broker is Broker.KINESIS
    assert (dev.retain_data, prod.retain_data) == (False, True)
    assert (dev.deletion_protection, prod.deletion_protection) == (False, True)
    assert prod.stream_retention_hours > dev.stream_retention_hours
    assert dict(prod.shard_counts) == {}
    assert set(dev.shard_counts) == {s.name for s in PIPELINE.streams}
    assert prod.alarms.iterator_age_ms < dev.alarms.iterator_age_ms


def test_cli_strings_are_coerced_and_win_over_stage_defaults() -> None:
    config = stage_config(
        _context(
            stage="prod",
            stream_retention_hours="72",
            deletion_protection="false",
            removal_policy="destroy",
            log_retention_days="30",
            alarm_thresholds='{"iterator_age_ms": 1, "offset_lag": 2, "errors": 3, '
            '"throttles": 4, "quarantined": 5, "period_minutes": 1}',
            broker="msk",
        ),
        environ={},
    )
    assert config.stream_retention_hours == 72
    assert config.deletion_protection is False
    assert config.retain_data is False
    assert config.log_retention_days == 30
    assert config.alarms.quarantined == 5
    assert config.broker is Broker.MSK


def test_account_and_region_come_from_context_then_cli_environment_then_placeholders() -> None:
    explicit = stage_config(
        _context(account="210987654321", region="ap-south-1"),
        environ={"CDK_DEFAULT_ACCOUNT": "111111111111"},
    )
    assert (explicit.account, explicit.region) == ("210987654321", "ap-south-1")
    from_cli = stage_config(
        _context(),
        environ={"CDK_DEFAULT_ACCOUNT": "111111111111", "CDK_DEFAULT_REGION": "eu-north-1"},
    )
    assert (from_cli.account, from_cli.region) == ("111111111111", "eu-north-1")
    placeholder = stage_config(_context(), environ={})
    assert (placeholder.account, placeholder.region) == ("123456789012", "us-east-1")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stage": "qa"}, "stage 'qa' has no defaults in cdk.json"),
        ({"broker": "rabbitmq"}, "broker 'rabbitmq' is not one of"),
        ({"account": "12345"}, "not a 12-digit AWS account id"),
        ({"shard_counts": '{"payments-cooked": 2}'}, "not a declared stream"),
        ({"log_retention_days": 45}, "is not one CloudWatch accepts"),
        ({"removal_policy": "snapshot"}, "removal_policy must be"),
        ({"stream_retention_hours": 12}, "outside 24..8760"),
    ],
)
def test_mistakes_are_refused_with_a_message_naming_the_knob(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        stage_config(_context(**overrides), environ={})


def test_a_maximum_record_age_not_well_below_retention_is_refused() -> None:
    # Given a processor that would keep retrying records for 20 hours of a 24-hour stream
    slow = replace(
        PIPELINE,
        processors=tuple(
            replace(p, sources=tuple(replace(s, max_record_age_s=72_000) for s in p.sources))
            if p.name == "postings"
            else p
            for p in PIPELINE.processors
        ),
    )
    # Then the dev stage refuses it: the payload could expire before reaching the destination
    with pytest.raises(ConfigError, match="postings: max_record_age_s 72000 is not well below"):
        stage_config(_context(), pipeline=slow, environ={})
    # ... while prod's 7-day retention accepts it
    assert stage_config(_context(stage="prod"), pipeline=slow, environ={}).stage == "prod"


def test_constructs_never_branch_on_the_stage_name() -> None:
    # Stage differences are constructor arguments (STYLE.md); a stage literal in a construct
    # means a difference that cdk.json cannot express.
    offenders = [
        f"{path.name}:{number}"
        for path in sorted((ROOT / "stacks").glob("*.py"))
        if path.name != "config.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"""stage\s*[!=]=|["'](dev|prod)["']""", line)
    ]
    assert not offenders, offenders


def test_cdk_json_pins_the_app_and_every_stage_has_every_knob() -> None:
    import json

    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    assert cdk_json["app"] == "python3 app.py"
    stages = cdk_json["context"]["stages"]
    assert set(stages) >= {"dev", "prod"}
    assert set(stages["dev"]) == set(stages["prod"])
    assert Path(ROOT / "package.json").exists()
