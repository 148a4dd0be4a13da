"""Environment of each payments function: one settings dataclass per function.

Each field is filled from the environment variable of the same name in capitals (`stage` from
PIPELINE_STAGE; `cascata_runtime.settings`); fields with a default are optional. `from_env()`
fails fast, naming every missing variable, so a misconfigured function fails on its first
invocation with a message that says what to fix. The CDK stacks and the local runtime set
exactly the declaration's bindings, which tests hold to exactly these fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cascata_runtime.settings import FunctionSettings


@dataclass(frozen=True, slots=True)
class ValidateSettings(FunctionSettings):
    validated_stream: str
    dedupe_table: str
    origin_streams: str
    quarantine_bucket: str
    stage: str


@dataclass(frozen=True, slots=True)
class PostingsSettings(FunctionSettings):
    ledger_stream: str
    quarantine_bucket: str
    stage: str


@dataclass(frozen=True, slots=True)
class BalancesSettings(FunctionSettings):
    balances_table: str
    quarantine_bucket: str
    stage: str


@dataclass(frozen=True, slots=True)
class FraudDetectSettings(FunctionSettings):
    alerts_stream: str
    alerts_table: str
    fraud_state_table: str
    profiles_table: str
    quarantine_bucket: str
    stage: str
    fraud_rules: str = ""
    """JSON object of `FraudRules` overrides (a version built with changed thresholds); empty
    means the production defaults."""


@dataclass(frozen=True, slots=True)
class WindowsSettings(FunctionSettings):
    activity_table: str
    activity_stream: str
    late_stream: str
    quarantine_bucket: str
    stage: str


@dataclass(frozen=True, slots=True)
class WindowsCloseSettings(FunctionSettings):
    activity_table: str
    activity_stream: str
    validated_stream: str
    """Read only to check that an idle shard's committed fence is at its tip."""
    stage: str


@dataclass(frozen=True, slots=True)
class ProfilesSettings(FunctionSettings):
    profiles_table: str
    dedupe_table: str
    origin_streams: str
    quarantine_bucket: str
    stage: str


@dataclass(frozen=True, slots=True)
class NotifySettings(FunctionSettings):
    notifications_topic: str
    alerts_table: str
    quarantine_bucket: str
    stage: str


@dataclass(frozen=True, slots=True)
class QuerySettings(FunctionSettings):
    balances_table: str
    profiles_table: str
    activity_table: str
    alerts_table: str
    versions_table: str
    stage: str


@dataclass(frozen=True, slots=True)
class IngestSettings(FunctionSettings):
    raw_stream: str
    stage: str


SETTINGS_BY_FUNCTION: Mapping[str, type[FunctionSettings]] = {
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
