"""Versions: naming, the registry and its live pointer, settings, the replay's arrival gate."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from cascata.cli_versions import parse_settings
from cascata.console import CliError
from cascata.pipeline import check_version
from cascata.replay import Gate
from cascata.versions import (
    BUILDING,
    READY,
    Registry,
    VersionRecord,
    compare_rows,
    content,
)
from cascata_runtime.versions import versioned_name
from payments.domain.fraud import DEFAULT_RULES, rules_from_json, rules_from_overrides
from payments.pipeline import PIPELINE


def test_the_declaration_and_the_runtime_name_versions_alike() -> None:
    for table in PIPELINE.versioned_tables:
        base = PIPELINE.physical_name(table.name, stage="dev")
        for version in ("v1", "v2", "v17"):
            built = PIPELINE if version == "v1" else PIPELINE.for_version(version)
            assert built.physical_name(table.name, stage="dev") == versioned_name(base, version)


def test_a_version_rebuilds_only_what_stays_inside_the_pipeline() -> None:
    built = PIPELINE.for_version("v2")
    assert "notify" not in {p.name for p in built.processors}
    assert built.apis == () and built.archives == ()
    # Shared: origin streams (from the stream), buckets, the topic, the registry.
    for shared in ("payments-raw", "customers", "quarantine", "archive", "versions",
                   "notifications"):
        assert not built.owns(shared)
        assert built.physical_name(shared, stage="dev") == PIPELINE.physical_name(
            shared, stage="dev")
    for owned in ("balances", "fraud-state", "payments-validated", "alerts"):
        assert built.owns(owned)
    from_archive = PIPELINE.for_version("v2", replay_from="archive")
    assert from_archive.owns("payments-raw")
    assert from_archive.physical_name("payments-raw", stage="dev") == "cascata-dev-payments-raw-v2"


@pytest.mark.parametrize("bad", ["v0", "V2", "v", "2", "v2x", "v123456", "latest", ""])
def test_version_names_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        check_version(bad)


def test_v1_is_not_a_replay_target() -> None:
    with pytest.raises(ValueError, match="deployed"):
        PIPELINE.for_version("v1")


@pytest.fixture
def registry() -> Iterator[Registry]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="versions", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "version", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "version",
                                                "AttributeType": "S"}])
        yield Registry(ddb, "versions")


def record(version: str, state: str = READY) -> VersionRecord:
    return VersionRecord(version=version, state=state, replay_from="stream", since=None,
                         until="2026-11-25T00:00:00Z", created_at="t", updated_at="t")


def test_v1_is_live_until_something_is_promoted(registry: Registry) -> None:
    assert registry.live() == "v1"
    registry.create(record("v2"))
    assert registry.promote("v2") == ("v1", "v2")
    assert registry.live() == "v2"
    assert registry.promote("v1") == ("v2", "v1")
    assert registry.promote("v1") == ("v1", "v1")


def test_only_a_complete_existing_version_can_be_promoted(registry: Registry) -> None:
    with pytest.raises(CliError, match="does not exist"):
        registry.promote("v3")
    registry.create(record("v3", BUILDING))
    with pytest.raises(CliError, match="not ready"):
        registry.promote("v3")
    assert registry.live() == "v1"


def test_a_version_name_is_taken_once(registry: Registry) -> None:
    registry.create(record("v2"))
    with pytest.raises(CliError, match="already exists"):
        registry.create(record("v2"))


def test_a_promote_that_lost_a_race_changes_nothing(registry: Registry) -> None:
    registry.create(record("v2"))
    registry.create(record("v3"))
    registry.promote("v2")
    stale = Registry(registry._ddb, "versions")
    # Another promote lands between this one's read of the pointer and its write: this one
    # still sees the pointer as it was before (v1 live).
    read = stale._get
    stale._get = lambda key: (  # type: ignore[method-assign]
        {"version": "@live", "live": "v1"} if key == "@live" else read(key))
    with pytest.raises(CliError, match="changed while promoting"):
        stale.promote("v3")
    stale._get = read  # type: ignore[method-assign]
    assert registry.live() == "v2"


def test_records_survive_a_round_trip(registry: Registry) -> None:
    rec = record("v2", BUILDING)
    rec.checkpoints = {"validate/payments-raw": {"shardId-0": 12345678901234567890123456789}}
    rec.config = {"fraud-detect": {"FRAUD_RULES": '{"velocity_max_payments": 6}'}}
    registry.create(rec)
    again = registry.get("v2")
    assert again is not None
    assert again.checkpoints == rec.checkpoints and again.config == rec.config
    assert [r.version for r in registry.records()] == ["v2"]


def test_settings_become_the_functions_environment() -> None:
    config = parse_settings(["fraud-detect.velocity_max_payments=6",
                             "fraud-detect.tier_limits_minor={\"basic\": 150000}"])
    rules = rules_from_json(config["fraud-detect"]["FRAUD_RULES"])
    assert rules.velocity_max_payments == 6
    assert rules.tier_limits_minor["basic"] == 150_000
    assert rules.tier_limits_minor["premium"] == DEFAULT_RULES.tier_limits_minor["premium"]


@pytest.mark.parametrize(("value", "message"), [
    ("velocity_max_payments=6", "PROCESSOR.SETTING=VALUE"),
    ("nope.x=1", "no settings"),
    ("balances.x=1", "no settings"),
    ("fraud-detect.unknown=1", "unknown fraud rule"),
    ("fraud-detect.velocity_max_payments=many", "must be an integer"),
    ("fraud-detect.velocity_max_payments=0", "at least 1"),
    ("fraud-detect.velocity_keep=2", "velocity_keep"),
])
def test_bad_settings_are_refused_before_any_replay(value: str, message: str) -> None:
    with pytest.raises(CliError, match=message):
        parse_settings([value])


def test_unchanged_settings_record_nothing() -> None:
    assert parse_settings(["fraud-detect.velocity_max_payments=5"]) == {}
    assert rules_from_json("") is DEFAULT_RULES
    with pytest.raises(ValueError, match="not JSON"):
        rules_from_json("{")
    with pytest.raises(ValueError, match="object"):
        rules_from_json("[]")
    assert rules_from_overrides({}) == DEFAULT_RULES


def test_the_gate_releases_records_in_arrival_order_across_streams() -> None:
    gate = Gate(["payments-raw", "customers"])
    assert not gate.allows("payments-raw", 1.0, None)  # closed until opened
    gate.open_for("customers", 5.0)
    assert gate.allows("customers", 4.9, "payments-raw")
    assert not gate.allows("customers", 5.1, "payments-raw")
    assert not gate.allows("payments-raw", 1.0, "customers")
    # A tie goes to the stream declared first.
    assert not gate.allows("customers", 5.0, "payments-raw")
    gate.open_for("payments-raw", 5.0)
    assert gate.allows("payments-raw", 5.0, "customers")
    gate.open_for("payments-raw", None)
    assert gate.allows("payments-raw", 1e12, None)


def test_diff_ignores_bookkeeping_and_names_the_fields_that_differ() -> None:
    balances = next(t for t in PIPELINE.tables if t.name == "balances")
    a = {"k": content(balances, {"account_id": "a", "balances": {"USD": 1}, "fences": {"0": "9"},
                                 "version": 3})}
    b = {"k": content(balances, {"account_id": "a", "balances": {"USD": 2}, "fences": {"1": "4"},
                                 "version": 1})}
    a = {json.dumps({"account_id": "a"}): a["k"]}
    b = {json.dumps({"account_id": "a"}): b["k"], json.dumps({"account_id": "z"}): {}}
    found = compare_rows("balances", a, b)
    assert [(d.kind, d.fields) for d in found] == [("changed", ("balances",)),
                                                  ("only_in_b", ())]
    assert found[0].a == {"balances": {"USD": 1}} and found[0].b == {"balances": {"USD": 2}}


def test_a_version_without_a_record_is_promotable_only_if_its_views_exist(
    registry: Registry,
) -> None:
    with pytest.raises(CliError, match="does not exist"):
        registry.promote("v4", deployed=lambda v: False)
    assert registry.promote("v4", deployed=lambda v: True) == ("v1", "v4")


def test_one_replay_at_a_time_builds_a_version(registry: Registry) -> None:
    import os
    import socket

    from cascata.versions import lease_owner

    mine = lease_owner()
    rec = record("v5", BUILDING)
    rec.lease_owner, rec.lease_until_ms = mine, 2**62
    registry.create(rec)
    other = registry.get("v5")
    assert other is not None
    with pytest.raises(CliError, match="being replayed by another process"):
        registry.acquire(other, f"{socket.gethostname()}:{os.getpid()}:other")
    # A holder whose process is gone (killed) is taken over at once.
    dead = record("v6", BUILDING)
    dead.lease_owner, dead.lease_until_ms = f"{socket.gethostname()}:999999999:x", 2**62
    registry.create(dead)
    again = registry.get("v6")
    assert again is not None
    registry.acquire(again, mine)
    assert registry.get("v6").lease_owner == mine  # type: ignore[union-attr]


def test_a_version_being_replayed_cannot_be_retired_and_a_retired_one_stops_its_replay(
    registry: Registry,
) -> None:
    from cascata.versions import lease_owner

    rec = record("v7", BUILDING)
    rec.lease_owner, rec.lease_until_ms = lease_owner(), 2**62
    registry.create(rec)
    with pytest.raises(CliError, match="being replayed"):
        registry.mark_retired(registry.get("v7"))  # type: ignore[arg-type]
    registry.release(rec)
    registry.mark_retired(registry.get("v7"))  # type: ignore[arg-type]
    rec.lease_owner = "someone:1:x"
    with pytest.raises(CliError, match="retired or taken over"):
        registry.save(rec)
    with pytest.raises(CliError, match="not ready"):
        registry.promote("v7")


def test_the_live_version_cannot_be_retired(registry: Registry) -> None:
    registry.create(record("v8"))
    registry.promote("v8")
    with pytest.raises(CliError, match="became live"):
        registry.mark_retired(registry.get("v8"))  # type: ignore[arg-type]
