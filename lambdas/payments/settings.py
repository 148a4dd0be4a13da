"""Environment of each payments function: the only module that knows environment names.

Each function's settings are a frozen dataclass whose fields are filled from environment
variables named in `ENVIRONMENT`. `from_env()` fails fast, naming every missing variable, so a
misconfigured function fails on its first invocation with a message that says what to fix.
The CDK stacks and the local runtime set exactly these variables (tests check both).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from cascata_runtime.errors import ConfigurationError


class _FromEnv:
    ENVIRONMENT: ClassVar[Mapping[str, str]]
    """Field name -> environment variable name."""
    OPTIONAL: ClassVar[Mapping[str, str]] = {}
    """Field name -> environment variable name, for settings with a default (absent or empty
    means the default)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        environ = os.environ if environ is None else environ
        missing = [env for env in cls.ENVIRONMENT.values() if not environ.get(env)]
        if missing:
            raise ConfigurationError(
                f"{cls.__name__}: missing environment variable(s): {', '.join(sorted(missing))}"
            )
        values: dict[str, Any] = {f: environ[env] for f, env in cls.ENVIRONMENT.items()}
        values.update({f: environ[env] for f, env in cls.OPTIONAL.items() if environ.get(env)})
        return cls(**values)

    @classmethod
    def variables(cls) -> frozenset[str]:
        return frozenset(cls.ENVIRONMENT.values())

    @classmethod
    def optional_variables(cls) -> frozenset[str]:
        return frozenset(cls.OPTIONAL.values())


@dataclass(frozen=True, slots=True)
class ValidateSettings(_FromEnv):
    validated_stream: str
    dedupe_table: str
    origin_streams: str
    quarantine_bucket: str
    stage: str
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "validated_stream": "VALIDATED_STREAM",
        "dedupe_table": "DEDUPE_TABLE",
        "origin_streams": "ORIGIN_STREAMS",
        "quarantine_bucket": "QUARANTINE_BUCKET",
        "stage": "PIPELINE_STAGE",
    }


@dataclass(frozen=True, slots=True)
class PostingsSettings(_FromEnv):
    ledger_stream: str
    quarantine_bucket: str
    stage: str
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "ledger_stream": "LEDGER_STREAM",
        "quarantine_bucket": "QUARANTINE_BUCKET",
        "stage": "PIPELINE_STAGE",
    }


@dataclass(frozen=True, slots=True)
class BalancesSettings(_FromEnv):
    balances_table: str
    quarantine_bucket: str
    stage: str
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "balances_table": "BALANCES_TABLE",
        "quarantine_bucket": "QUARANTINE_BUCKET",
        "stage": "PIPELINE_STAGE",
    }


@dataclass(frozen=True, slots=True)
class FraudDetectSettings(_FromEnv):
    alerts_stream: str
    alerts_table: str
    fraud_state_table: str
    profiles_table: str
    quarantine_bucket: str
    stage: str
    rules: str = ""
    """JSON object of `FraudRules` overrides (a version built with changed thresholds); empty
    means the production defaults."""
    OPTIONAL: ClassVar[Mapping[str, str]] = {"rules": "FRAUD_RULES"}
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "alerts_stream": "ALERTS_STREAM",
        "alerts_table": "ALERTS_TABLE",
        "fraud_state_table": "FRAUD_STATE_TABLE",
        "profiles_table": "PROFILES_TABLE",
        "quarantine_bucket": "QUARANTINE_BUCKET",
        "stage": "PIPELINE_STAGE",
    }


@dataclass(frozen=True, slots=True)
class WindowsSettings(_FromEnv):
    activity_table: str
    activity_stream: str
    late_stream: str
    quarantine_bucket: str
    stage: str
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "activity_table": "ACTIVITY_TABLE",
        "activity_stream": "ACTIVITY_STREAM",
        "late_stream": "LATE_STREAM",
        "quarantine_bucket": "QUARANTINE_BUCKET",
        "stage": "PIPELINE_STAGE",
    }


@dataclass(frozen=True, slots=True)
class WindowsCloseSettings(_FromEnv):
    activity_table: str
    activity_stream: str
    validated_stream: str
    """Read only to check that an idle shard's committed fence is at its tip."""
    stage: str
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "activity_table": "ACTIVITY_TABLE",
        "activity_stream": "ACTIVITY_STREAM",
        "validated_stream": "VALIDATED_STREAM",
        "stage": "PIPELINE_STAGE",
    }


@dataclass(frozen=True, slots=True)
class ProfilesSettings(_FromEnv):
    profiles_table: str
    dedupe_table: str
    origin_streams: str
    quarantine_bucket: str
    stage: str
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "profiles_table": "PROFILES_TABLE",
        "dedupe_table": "DEDUPE_TABLE",
        "origin_streams": "ORIGIN_STREAMS",
        "quarantine_bucket": "QUARANTINE_BUCKET",
        "stage": "PIPELINE_STAGE",
    }


@dataclass(frozen=True, slots=True)
class NotifySettings(_FromEnv):
    notifications_topic: str
    alerts_table: str
    quarantine_bucket: str
    stage: str
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "notifications_topic": "NOTIFICATIONS_TOPIC",
        "alerts_table": "ALERTS_TABLE",
        "quarantine_bucket": "QUARANTINE_BUCKET",
        "stage": "PIPELINE_STAGE",
    }


@dataclass(frozen=True, slots=True)
class QuerySettings(_FromEnv):
    balances_table: str
    profiles_table: str
    activity_table: str
    alerts_table: str
    versions_table: str
    stage: str
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "balances_table": "BALANCES_TABLE",
        "profiles_table": "PROFILES_TABLE",
        "activity_table": "ACTIVITY_TABLE",
        "alerts_table": "ALERTS_TABLE",
        "versions_table": "VERSIONS_TABLE",
        "stage": "PIPELINE_STAGE",
    }


@dataclass(frozen=True, slots=True)
class IngestSettings(_FromEnv):
    raw_stream: str
    stage: str
    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "raw_stream": "RAW_STREAM",
        "stage": "PIPELINE_STAGE",
    }


SETTINGS_BY_FUNCTION: Mapping[str, type[_FromEnv]] = {
    "validate": ValidateSettings,
    "postings": PostingsSettings,
    "balances": BalancesSettings,
    "fraud-detect": FraudDetectSettings,
    "windows": WindowsSettings,
    "windows-close": WindowsCloseSettings,
    "profiles": ProfilesSettings,
    "notify": NotifySettings,
    "query": QuerySettings,
    "ingest": IngestSettings,
}
"""Declared processor name -> its settings class (the infrastructure tests read this)."""

__all__ = [
    "SETTINGS_BY_FUNCTION",
    "BalancesSettings",
    "PostingsSettings",
    "ValidateSettings",
]
