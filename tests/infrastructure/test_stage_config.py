"""Stage configuration: context in, a validated StageConfig out, mistakes named early.

Pure Python, no synthesis: these run in milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cascata.cdk.config import ConfigError, stage_config
from cascata.pipeline import Broker
from payments.pipeline import PIPELINE

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
    # Reservations where the account is sized for them; dev's may be a fresh account
    assert dict(dev.reserved_concurrency) == {}
    assert set(prod.reserved_concurrency) == {a.name for a in PIPELINE.apis}
    assert dev.break_glass_role == prod.break_glass_role == "cascata-break-glass"


def test_the_powertools_layer_is_no_stage_knob_and_new_knobs_have_defaults() -> None:
    # Given a stage block from before the archive guard and the reservations (a scaffolded
    # project's cdk.json), Then it still resolves, with no reservation and the default role
    stages = {"dev": {k: v for k, v in CDK_CONTEXT["stages"]["dev"].items()
                      if k not in ("break_glass_role", "reserved_concurrency")}}
    config = stage_config(_context(stages=stages), environ={})
    assert dict(config.reserved_concurrency) == {}
    assert config.break_glass_role == "cascata-break-glass"
    assert "powertools_layer_version" not in CDK_CONTEXT["stages"]["dev"]


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
        ({"reserved_concurrency": '{"ingestion": 5}'}, "not a declared function"),
        ({"reserved_concurrency": '{"ingest": 0}'}, "reserved_concurrency.ingest 0 is outside"),
        ({"break_glass_role": "break glass"}, "break_glass_role 'break glass' is not an IAM"),
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
        for path in sorted((ROOT / "cascata" / "cdk").glob("*.py"))
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


# --- version stacks: -c version / replayFrom / replaySince / replayUntil -----------------------


def _replay(**overrides: Any) -> Any:
    from cascata.cdk.config import replay_config

    context = _context(**overrides)
    return replay_config(context, config=stage_config(context, environ={}))


def test_without_a_version_there_is_no_version_stack() -> None:
    assert _replay() is None


def test_a_version_replays_from_the_streams_unless_told_otherwise() -> None:
    replay = _replay(version="v2")
    assert (replay.version, replay.replay_from, replay.since, replay.until) == (
        "v2",
        "stream",
        None,
        None,
    )
    archive = _replay(
        version="v12",
        replayFrom="archive",
        replaySince="2026-11-25T01:00:00+01:00",
        replayUntil="2026-11-26T00:00:00Z",
    )
    assert archive.replay_from == "archive"
    # Instants are normalized to UTC
    assert archive.since.isoformat() == "2026-11-25T00:00:00+00:00"
    assert archive.until.isoformat() == "2026-11-26T00:00:00+00:00"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"replayFrom": "archive"}, "only apply to a version stack: add -c version=v2"),
        ({"replaySince": "2026-11-25T00:00:00Z"}, "only apply to a version stack"),
        ({"version": "2"}, "is not a version name like v2"),
        ({"version": "v0"}, "is not a version name like v2"),
        ({"version": "v1"}, "is the base stack's own version"),
        ({"version": "v2", "replayFrom": "s3"}, "-c replayFrom='s3': use stream"),
        ({"version": "v2", "replaySince": "yesterday"}, "not an RFC 3339 date-time"),
        ({"version": "v2", "replaySince": "2026-11-25"}, "not an RFC 3339 date-time"),
        ({"version": "v2", "replaySince": "2026-11-25T00:00:00"}, "with a time zone"),
        (
            {"version": "v2", "replayUntil": "2026-11-25T00:00:00Z"},
            "replayUntil only applies with -c replayFrom=archive",
        ),
        (
            {
                "version": "v2",
                "replayFrom": "archive",
                "replaySince": "2026-11-25T00:00:00Z",
                "replayUntil": "2026-11-24T00:00:00Z",
            },
            "must be after -c replaySince",
        ),
        (
            {"version": "v2", "broker": "msk", "replayFrom": "archive"},
            "-c replayFrom=archive: broker 'msk' archives nothing; replay from its topics "
            "with -c replayFrom=stream",
        ),
    ],
)
def test_version_context_mistakes_are_refused_naming_the_key(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _replay(**overrides)


def test_a_version_on_msk_replays_from_the_topics() -> None:
    # Given the MSK variant, When a version is asked for (from the streams, by default)
    replay = _replay(version="v2", broker="msk", replaySince="2026-11-25T00:00:00Z")
    # Then it is accepted like on Kinesis
    assert (replay.version, replay.replay_from) == ("v2", "stream")
    assert _replay(version="v2", broker="msk", replayFrom="stream").replay_from == "stream"


def test_an_archive_replay_on_msk_is_refused_in_one_line() -> None:
    # Nothing is archived on MSK (the Firehose archives read Kinesis streams)
    with pytest.raises(ConfigError) as refused:
        _replay(version="v2", broker="msk", replayFrom="archive")
    assert "\n" not in str(refused.value)


def test_an_archive_replay_needs_every_origin_stream_archived() -> None:
    from cascata.cdk.config import replay_config

    # Given a declaration that archives payments-raw only
    partial = replace(PIPELINE, archives=PIPELINE.archives[:1])
    context = _context(version="v2", replayFrom="archive")
    config = stage_config(context, pipeline=partial, environ={})
    # Then a replay from the archive is refused (customers would never be refilled)...
    with pytest.raises(ConfigError, match="not archived: customers"):
        replay_config(context, config=config, pipeline=partial)
    # ... while a replay from the streams is fine
    assert replay_config(_context(version="v2"), config=config, pipeline=partial) is not None


def test_replay_pipeline_starts_mappings_where_a_rebuild_must() -> None:
    from datetime import UTC, datetime

    from cascata.cdk.config import ReplayConfig
    from cascata.cdk.replay import replay_pipeline

    since = datetime(2026, 11, 25, tzinfo=UTC)
    for mode in ("stream", "archive"):
        version = replay_pipeline(PIPELINE, ReplayConfig("v3", mode, since=since))
        assert version.version == "v3" and version.replay_from == mode
        assert "notify" not in {p.name for p in version.processors}
        for proc in version.processors:
            for source in proc.sources:
                assert source.max_record_age_s == -1
                assert not source.validate(), source
                if version.owns(source.stream):
                    assert source.starting_position == "TRIM_HORIZON"
                else:
                    assert (source.starting_position, source.starting_position_timestamp) == (
                        "AT_TIMESTAMP",
                        since.timestamp(),
                    )


def test_a_setting_cascata_does_not_read_is_refused_not_ignored() -> None:
    stages = {name: dict(values) for name, values in CDK_CONTEXT["stages"].items()}
    stages["dev"]["powertools_layer_version"] = 38
    stages["dev"]["log_levle"] = "DEBUG"
    with pytest.raises(ConfigError) as refused:
        stage_config(_context(stages=stages), environ={})
    assert "stages.dev.log_levle is not a setting cascata reads" in str(refused.value)
    assert "stages.dev.powertools_layer_version is not a setting" in str(refused.value)
