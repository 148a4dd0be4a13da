"""Stage configuration: CDK context in, one frozen `StageConfig` out.

Every stage difference (shard counts, retention, thresholds, removal policy, the broker) is
resolved here, once, from `cdk.json` defaults (`context.stages.<stage>`) overridden by any `-c`
flag of the same name. Constructs receive plain keyword arguments taken from the config and
never look at the stage name, so a new stage is a new block of context, not new code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from cascata.pipeline import (
    FIRST_VERSION,
    LOCAL_ACCOUNT,
    LOCAL_REGION,
    Broker,
    Pipeline,
    ReplayFrom,
    check_version,
)
from cascata.project import current_pipeline

DEFAULT_STAGE: Final = "dev"
DEFAULT_BREAK_GLASS_ROLE: Final = "cascata-break-glass"
DEFAULT_PARTITIONS: Final = 3

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ROLE_NAME = re.compile(r"^[\w+=,.@*?/-]{1,512}$")
_LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})

# CloudWatch Logs accepts only these retention periods (days -> `logs.RetentionDays` member).
LOG_RETENTION: Final = MappingProxyType(
    {
        1: "ONE_DAY",
        3: "THREE_DAYS",
        5: "FIVE_DAYS",
        7: "ONE_WEEK",
        14: "TWO_WEEKS",
        30: "ONE_MONTH",
        60: "TWO_MONTHS",
        90: "THREE_MONTHS",
        120: "FOUR_MONTHS",
        150: "FIVE_MONTHS",
        180: "SIX_MONTHS",
        365: "ONE_YEAR",
        400: "THIRTEEN_MONTHS",
        545: "EIGHTEEN_MONTHS",
        731: "TWO_YEARS",
        1096: "THREE_YEARS",
        1827: "FIVE_YEARS",
        2192: "SIX_YEARS",
        2557: "SEVEN_YEARS",
        2922: "EIGHT_YEARS",
        3288: "NINE_YEARS",
        3653: "TEN_YEARS",
    }
)


class ConfigError(ValueError):
    """The CDK context does not describe a deployable stage; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class AlarmThresholds:
    """When the pipeline pages someone. Counts are per `period_minutes` window."""

    iterator_age_ms: int
    """Kinesis: how old the newest record a mapping has read may get (GetRecords age)."""
    offset_lag: int
    """MSK: how many records a mapping may be behind the end of a partition."""
    errors: int
    throttles: int
    quarantined: int
    period_minutes: int


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """MSK Serverless placement and Lambda's provisioned Kafka pollers (`-c broker=msk`)."""

    vpc_cidr: str
    zone_count: int
    """Subnets in this many of the region's zones (`Fn::GetAZs`, resolved at deploy time)."""
    min_pollers: int
    max_pollers: int
    partitions: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Declared stream name -> its topic's partition count, over `shard_counts`."""
    default_partitions: int = DEFAULT_PARTITIONS
    """A topic's partitions when neither `partitions` nor `shard_counts` names its stream."""


@dataclass(frozen=True, slots=True)
class StageConfig:
    """Everything that differs between stages, already validated."""

    stage: str
    account: str
    region: str
    broker: Broker
    stream_retention_hours: int
    shard_counts: Mapping[str, int]
    """Declared stream name -> provisioned shard count. Streams not listed are on-demand."""
    log_retention_days: int
    log_level: str
    retain_data: bool
    """True keeps stateful resources when the stack is deleted (RemovalPolicy.RETAIN)."""
    deletion_protection: bool
    object_expiration_days: int
    access_log_expiration_days: int
    alarms: AlarmThresholds
    alarm_email: str | None
    kafka: KafkaSettings
    break_glass_role: str = DEFAULT_BREAK_GLASS_ROLE
    """The IAM role name (with its path, wildcards allowed) that alone may delete archived
    history: the archive bucket's policy denies deletes to everyone else."""
    reserved_concurrency: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Declared function name -> the concurrency this stage reserves for it, over the
    declaration's own. Reserving needs an account limit above the reservations plus the
    100 Lambda keeps unreserved, which a new or development account often lacks."""
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    app: str = "cascata"
    """The pipeline's app name, the prefix of its stack and resource names."""

    @property
    def stack_name(self) -> str:
        return f"{self.app}-{self.stage}"

    @property
    def stream_retention_seconds(self) -> int:
        return self.stream_retention_hours * 3600

    @property
    def stream_retention_ms(self) -> int:
        return self.stream_retention_seconds * 1000

    def topic_partitions(self, stream: str) -> int:
        """A declared stream's partitions as a Kafka topic: `kafka.partitions`, else its
        shard count, else `kafka.default_partitions`."""
        return (self.kafka.partitions.get(stream) or self.shard_counts.get(stream)
                or self.kafka.default_partitions)

    def version_stack_name(self, version: str) -> str:
        """`cascata-<stage>` for v1 (the base stack), `cascata-<stage>-<version>` otherwise."""
        return self.stack_name if version == FIRST_VERSION else f"{self.stack_name}-{version}"


REPLAY_CONTEXT_KEYS: Final = ("version", "replayFrom", "replaySince", "replayUntil")
"""The context keys that ask for a version stack (`-c version=v2 ...`)."""


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """A version of the views to rebuild on AWS, in a stack of its own next to the base one."""

    version: str
    replay_from: ReplayFrom
    since: datetime | None = None
    """Replay from this instant (UTC) instead of everything: the mappings on the shared origin
    streams start AT_TIMESTAMP (stream mode), the republisher skips older archive objects
    (archive mode)."""
    until: datetime | None = None
    """Archive mode only: the republisher stops at this instant (UTC)."""


def replay_config(
    context: Callable[[str], Any],
    *,
    config: StageConfig,
    pipeline: Pipeline | None = None,
) -> ReplayConfig | None:
    """The version stack the context asks for (`-c version=v2 [-c replayFrom=stream|archive]
    [-c replaySince=<RFC 3339>] [-c replayUntil=<RFC 3339>]`), or None for the base stack only.

    Every mistake is a `ConfigError` naming the key and what it accepts.
    """
    pipeline = pipeline or current_pipeline()
    given = {key: context(key) for key in REPLAY_CONTEXT_KEYS if context(key) not in (None, "")}
    if "version" not in given:
        if given:
            keys = ", ".join(sorted(given))
            raise ConfigError(
                f"{keys} only apply to a version stack: add -c version=v2 (or the "
                "version to rebuild)"
            )
        return None
    version = str(given["version"])
    try:
        check_version(version)
    except ValueError as exc:
        raise ConfigError(f"-c version: {exc}") from None
    if version == FIRST_VERSION:
        raise ConfigError(
            f"-c version={FIRST_VERSION} is the base stack's own version; a "
            "version stack rebuilds a new one (v2, v3, ...)"
        )
    replay_from: ReplayFrom
    match str(given.get("replayFrom", "stream")):
        case "stream":
            replay_from = "stream"
        case "archive":
            replay_from = "archive"
        case other:
            raise ConfigError(
                f"-c replayFrom={other!r}: use stream (the origin streams from "
                "their trim horizon) or archive (the S3 archive)"
            )
    since = _instant(given.get("replaySince"), "replaySince")
    until = _instant(given.get("replayUntil"), "replayUntil")
    if until is not None and replay_from != "archive":
        raise ConfigError(
            "-c replayUntil only applies with -c replayFrom=archive: a replay from "
            "the streams keeps following them"
        )
    if since is not None and until is not None and until <= since:
        raise ConfigError(
            f"-c replayUntil ({rfc3339(until)}) must be after -c replaySince ({rfc3339(since)})"
        )
    if replay_from == "archive" and config.broker is not Broker.KINESIS:
        # The archives are Firehose delivery streams reading Kinesis; on MSK none is rendered.
        raise ConfigError(
            f"-c replayFrom=archive: broker {config.broker.value!r} archives nothing; "
            "replay from its topics with -c replayFrom=stream"
        )
    if replay_from == "archive":
        archived = {a.stream for a in pipeline.archives}
        missing = sorted(s.name for s in pipeline.streams if s.origin and s.name not in archived)
        if missing:
            raise ConfigError(
                f"-c replayFrom=archive needs every origin stream archived; not "
                f"archived: {', '.join(missing)}"
            )
        buckets = sorted({a.bucket for a in pipeline.archives})
        if len(buckets) != 1:
            raise ConfigError(
                f"-c replayFrom=archive reads one archive bucket; the archives "
                f"use {', '.join(buckets) or 'none'}"
            )
    return ReplayConfig(version=version, replay_from=replay_from, since=since, until=until)


def _instant(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in text.upper():
        raise ConfigError(
            f"-c {name}={text!r} is not an RFC 3339 date-time with a time zone, "
            "e.g. 2026-11-25T00:00:00Z"
        )
    return parsed.astimezone(UTC)


def rfc3339(instant: datetime) -> str:
    """`2026-11-25T00:00:00Z`: how the stacks hand an instant to a function."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stage_config(
    context: Callable[[str], Any],
    *,
    pipeline: Pipeline | None = None,
    environ: Mapping[str, str] | None = None,
) -> StageConfig:
    """Resolve the stage named by the `stage` context key into a validated `StageConfig`.

    `context` is `app.node.try_get_context`. Account and region come from `-c account=` /
    `-c region=`, then from the CDK CLI's `CDK_DEFAULT_ACCOUNT` / `CDK_DEFAULT_REGION`, then
    from placeholders, so `cdk synth` never needs credentials (deploying to the placeholder
    account fails loudly, as it should).
    """
    pipeline = pipeline or current_pipeline()
    env = os.environ if environ is None else environ
    stage = str(context("stage") or DEFAULT_STAGE)
    stages = _as_mapping(context("stages"), "stages")
    if stage not in stages:
        known = ", ".join(sorted(stages)) or "none"
        raise ConfigError(
            f"stage {stage!r} has no defaults in cdk.json (context.stages); known stages: {known}"
        )
    defaults = _as_mapping(stages[stage], f"stages.{stage}")

    read: set[str] = {"broker", "alarm_email", "break_glass_role", "reserved_concurrency"}

    def knob(name: str) -> Any:
        # A `-c name=value` flag wins over the stage default; CLI values arrive as strings.
        read.add(name)
        override = context(name)
        if override is not None:
            return override
        if name not in defaults:
            raise ConfigError(f"stages.{stage}.{name} is missing from cdk.json")
        return defaults[name]

    account = str(context("account") or env.get("CDK_DEFAULT_ACCOUNT") or LOCAL_ACCOUNT)
    region = str(context("region") or env.get("CDK_DEFAULT_REGION") or LOCAL_REGION)
    if not _ACCOUNT.match(account):
        raise ConfigError(f"account {account!r} is not a 12-digit AWS account id")
    if not _REGION.match(region):
        raise ConfigError(f"region {region!r} is not an AWS region name such as eu-west-1")

    broker_name = str(context("broker") or defaults.get("broker") or Broker.KINESIS.value)
    try:
        broker = Broker(broker_name)
    except ValueError:
        allowed = ", ".join(b.value for b in Broker)
        raise ConfigError(f"broker {broker_name!r} is not one of: {allowed}") from None

    thresholds = _as_mapping(knob("alarm_thresholds"), "alarm_thresholds")
    kafka = _as_mapping(knob("kafka"), "kafka")
    config = StageConfig(
        app=pipeline.app,
        stage=stage,
        account=account,
        region=region,
        broker=broker,
        stream_retention_hours=_as_int(knob("stream_retention_hours"), "stream_retention_hours"),
        shard_counts=MappingProxyType(
            {
                str(k): _as_int(v, f"shard_counts.{k}")
                for k, v in _as_mapping(knob("shard_counts"), "shard_counts").items()
            }
        ),
        log_retention_days=_as_int(knob("log_retention_days"), "log_retention_days"),
        log_level=str(knob("log_level")).upper(),
        retain_data=_removal_policy(knob("removal_policy")),
        deletion_protection=_as_bool(knob("deletion_protection"), "deletion_protection"),
        object_expiration_days=_as_int(knob("object_expiration_days"), "object_expiration_days"),
        access_log_expiration_days=_as_int(
            knob("access_log_expiration_days"), "access_log_expiration_days"
        ),
        alarms=AlarmThresholds(
            **{
                f.name: _as_int(thresholds.get(f.name), f"alarm_thresholds.{f.name}")
                for f in fields(AlarmThresholds)
            }
        ),
        alarm_email=str(context("alarm_email") or defaults.get("alarm_email") or "") or None,
        break_glass_role=str(
            context("break_glass_role")
            or defaults.get("break_glass_role")
            or DEFAULT_BREAK_GLASS_ROLE
        ),
        reserved_concurrency=MappingProxyType(
            {
                str(k): _as_int(v, f"reserved_concurrency.{k}")
                for k, v in _as_mapping(
                    context("reserved_concurrency") or defaults.get("reserved_concurrency"),
                    "reserved_concurrency",
                ).items()
            }
        ),
        kafka=KafkaSettings(
            vpc_cidr=str(kafka.get("vpc_cidr") or "10.42.0.0/16"),
            zone_count=_as_int(kafka.get("zone_count", 2), "kafka.zone_count"),
            min_pollers=_as_int(kafka.get("min_pollers", 1), "kafka.min_pollers"),
            max_pollers=_as_int(kafka.get("max_pollers", 2), "kafka.max_pollers"),
            partitions=MappingProxyType(
                {
                    str(k): _as_int(v, f"kafka.partitions.{k}")
                    for k, v in _as_mapping(kafka.get("partitions"), "kafka.partitions").items()
                }
            ),
            default_partitions=_as_int(
                kafka.get("default_partitions", DEFAULT_PARTITIONS), "kafka.default_partitions"
            ),
        ),
        tags=MappingProxyType({"app": pipeline.app, "stage": stage}),
    )
    problems = validate(config, pipeline=pipeline)
    problems += [f"stages.{stage}.{name} is not a setting cascata reads (a misspelling, or one "
                 f"a later release removed)" for name in sorted(set(defaults) - read)]
    if problems:
        raise ConfigError("invalid stage configuration:\n  - " + "\n  - ".join(problems))
    return config


def validate(config: StageConfig, *, pipeline: Pipeline | None = None) -> list[str]:
    """Cross-checks between the stage and the declaration, as sentences."""
    pipeline = pipeline or current_pipeline()
    problems = [f"pipeline: {p}" for p in pipeline.validate()]
    streams = {s.name for s in pipeline.streams}
    if not 24 <= config.stream_retention_hours <= 8760:
        problems.append(
            f"stream_retention_hours {config.stream_retention_hours} is outside 24..8760"
        )
    for name, shards in config.shard_counts.items():
        if name not in streams:
            problems.append(f"shard_counts names {name!r}, which is not a declared stream")
        if not 1 <= shards <= 500:
            problems.append(f"shard_counts.{name} {shards} is outside 1..500")
    for proc in pipeline.processors:
        for source in proc.sources:
            age = source.max_record_age_s
            # A record must reach the on-failure destination while it is still in the stream,
            # otherwise the payload is lost to retention before anyone can look at it.
            if age == -1 or age * 2 > config.stream_retention_seconds:
                problems.append(
                    f"{proc.name}: max_record_age_s {age} is not well below the "
                    f"{config.stream_retention_hours} h retention of {source.stream} (at most "
                    "half is allowed)"
                )
    if config.log_retention_days not in LOG_RETENTION:
        problems.append(
            f"log_retention_days {config.log_retention_days} is not one CloudWatch accepts: "
            + ", ".join(map(str, LOG_RETENTION))
        )
    if config.log_level not in _LOG_LEVELS:
        problems.append(f"log_level {config.log_level!r} is not one of {sorted(_LOG_LEVELS)}")
    if config.object_expiration_days < 1 or config.access_log_expiration_days < 1:
        problems.append("object_expiration_days and access_log_expiration_days must be >= 1")
    alarms = config.alarms
    if alarms.period_minutes not in (1, 5, 10, 15, 30, 60):
        problems.append(f"alarm_thresholds.period_minutes {alarms.period_minutes} is unusual")
    if any(getattr(alarms, f.name) < 0 for f in fields(AlarmThresholds)):
        problems.append("alarm thresholds must be >= 0")
    functions = {f.name for f in pipeline.functions}
    for name, reserved in config.reserved_concurrency.items():
        if name not in functions:
            problems.append(
                f"reserved_concurrency names {name!r}, which is not a declared function"
            )
        if not 1 <= reserved <= 1000:
            problems.append(f"reserved_concurrency.{name} {reserved} is outside 1..1000")
    if not _ROLE_NAME.match(config.break_glass_role):
        problems.append(
            f"break_glass_role {config.break_glass_role!r} is not an IAM role name (with an "
            "optional path; * and ? match any characters)"
        )
    kafka = config.kafka
    if not 2 <= kafka.zone_count <= 5:
        problems.append("kafka.zone_count must be 2..5 (MSK Serverless needs two zones or more)")
    if not 1 <= kafka.min_pollers <= kafka.max_pollers <= 2000:
        problems.append("kafka pollers need 1 <= min_pollers <= max_pollers <= 2000")
    for name, count in kafka.partitions.items():
        if name not in streams:
            problems.append(f"kafka.partitions names {name!r}, which is not a declared stream")
        if count < 1:
            problems.append(f"kafka.partitions.{name} {count} must be >= 1")
    if kafka.default_partitions < 1:
        problems.append(f"kafka.default_partitions {kafka.default_partitions} must be >= 1")
    for bucket in pipeline.buckets:
        name = pipeline.physical_name(
            bucket.name, stage=config.stage, account=config.account, region=config.region
        )
        if len(name) > 63:
            problems.append(f"bucket name {name!r} is longer than S3's 63 characters")
    return problems


def _as_mapping(value: Any, name: str) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a JSON object: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be an object, got {type(value).__name__}")
    return value


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _removal_policy(value: Any) -> bool:
    text = str(value).strip().lower()
    if text not in ("retain", "destroy"):
        raise ConfigError(f"removal_policy must be 'retain' or 'destroy', got {value!r}")
    return text == "retain"
