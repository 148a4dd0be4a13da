"""Each function's settings: the environment variable of a field is its name in capitals."""

from __future__ import annotations

from dataclasses import dataclass

from cascata_runtime.settings import FunctionSettings


@dataclass(frozen=True, slots=True)
class ValidateSettings(FunctionSettings):
    readings_stream: str
    dedupe_table: str
    origin_streams: str
    quarantine_bucket: str
    stage: str


@dataclass(frozen=True, slots=True)
class AggregatesSettings(FunctionSettings):
    device_stats_table: str
    alerts_stream: str
    quarantine_bucket: str
    stage: str


@dataclass(frozen=True, slots=True)
class AlertingSettings(FunctionSettings):
    device_alerts_table: str
    quarantine_bucket: str
    stage: str


@dataclass(frozen=True, slots=True)
class QuerySettings(FunctionSettings):
    device_stats_table: str
    device_alerts_table: str
    versions_table: str
    stage: str
