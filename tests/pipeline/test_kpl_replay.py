"""A KPL aggregate through the archive and a replay from it, on the local runtime.

Three payments packed into one Kinesis record on `payments-raw` are three user records at one
sequence number. The archiver keeps each one, told apart by its subsequence number, and a
replay from the archive republishes all three, so the replayed version's balances are live's.
The producer puts the aggregate twice (a retry): live turns the copies away, and so does the
replay, whose streams hold both. Kept lean (three events, no workload): the replay runs every
processor of a version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cascata.local.objects import read_stream
from cascata.replay import ReplayOptions, ReplayResult, run_replay
from cascata.testing import LocalPipeline
from cascata_runtime.archive import decode_object, line_bytes
from payments.domain.fraud import DEFAULT_RULES
from payments.pipeline import PIPELINE
from payments.tooling.audit import BALANCES, run_audit
from tests.support.events import payment
from tests.support.kpl import aggregate_events

pytestmark = pytest.mark.pipeline

STAGE = "kplreplay"
ACCOUNTS = ("kplr-alice", "kplr-bob", "kplr-carol")
PAYMENTS = [
    payment("kplr-1", payer="kplr-alice", payee="kplr-bob", amount_minor=1000),
    payment("kplr-2", payer="kplr-bob", payee="kplr-carol", amount_minor=300),
    payment("kplr-3", payer="kplr-carol", payee="kplr-alice", amount_minor=50),
]


@pytest.fixture(scope="module")
def local() -> Iterator[LocalPipeline]:
    with LocalPipeline(PIPELINE, stage=STAGE) as running:
        for _ in range(2):  # the producer's retry of the whole aggregate
            running.produce("payments-raw", [aggregate_events(PAYMENTS)], key="kplr-aggregate")
            running.drain()
        yield running


@pytest.fixture(scope="module")
def replayed(local: LocalPipeline) -> ReplayResult:
    """v2, replayed from the archive of what `local` took live."""
    return run_replay(local.aws, ReplayOptions(version="v2", replay_from="archive",
                                               stage=STAGE, timeout_s=120),
                      pipeline=PIPELINE)


def archived(local: LocalPipeline) -> list[dict[str, Any]]:
    s3 = local.aws.client("s3")
    bucket = PIPELINE.physical_name(PIPELINE.archives[0].bucket, stage=STAGE,
                                    account=local.aws.account, region=local.aws.region)
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            lines.extend(decode_object(body))
    return lines


def balances(local: LocalPipeline, version: str) -> dict[str, Any]:
    built = PIPELINE if version == "v1" else PIPELINE.for_version(version)
    table = built.physical_name("balances", stage=STAGE)
    ddb = local.aws.reading_client("dynamodb")
    out = {}
    for account in ACCOUNTS:
        item = ddb.get_item(TableName=table, Key={"account_id": {"S": account}},
                            ConsistentRead=True).get("Item")
        assert item is not None, (version, account)
        out[account] = {currency: int(amount["N"])
                        for currency, amount in item["balances"]["M"].items()}
    return out


def test_the_archiver_keeps_every_user_record_with_its_subsequence(local: LocalPipeline) -> None:
    lines = [line for line in archived(local) if line["stream"] == "payments-raw"]
    sequences = sorted({line["sequence_number"] for line in lines}, key=int)
    assert len(sequences) == 2
    for sequence in sequences:
        at = {line["subsequence_number"]: line for line in lines
              if line["sequence_number"] == sequence}
        assert sorted(at) == [0, 1, 2]
        assert [at[i]["event_id"] for i in range(3)] == ["kplr-1", "kplr-2", "kplr-3"]
        assert [at[i]["partition_key"] for i in range(3)] == list(ACCOUNTS)
        assert [line_bytes(at[i]) for i in range(3)] == [
            json.dumps(p, separators=(",", ":")).encode() for p in PAYMENTS]


def test_a_replay_from_the_archive_applies_every_user_record_as_live(
    local: LocalPipeline, replayed: ReplayResult,
) -> None:
    # Given live's balances, from the three payments of one aggregate
    live = balances(local, "v1")
    assert live == {"kplr-alice": {"USD": -1000 + 50}, "kplr-bob": {"USD": 1000 - 300},
                    "kplr-carol": {"USD": 300 - 50}}
    # When a version is replayed from the archive (the fixture)
    # Then every user record was republished, the copies too, and each payment applied once:
    # the balances are live's
    assert replayed.state == "ready" and replayed.republished == 6
    assert balances(local, "v2") == live
    validated = PIPELINE.for_version("v2").physical_name("payments-validated", stage=STAGE)
    ids = sorted(json.loads(data)["event_id"]
                 for data in read_stream(local.aws.reading_client("kinesis"), validated))
    assert ids == ["kplr-1", "kplr-2", "kplr-3"]
    assert local.failures() == []


def test_the_audit_recomputes_every_user_record_and_finds_live_and_replay_equal(
    local: LocalPipeline, replayed: ReplayResult,
) -> None:
    bucket = PIPELINE.physical_name(PIPELINE.archives[0].bucket, stage=STAGE,
                                    account=local.aws.account, region=local.aws.region)
    for version in ("v1", "v2"):
        built = PIPELINE if version == "v1" else PIPELINE.for_version(version)
        report = run_audit(s3=local.aws.client("s3"), dynamodb=local.aws.client("dynamodb"),
                           archive_bucket=bucket, rules=DEFAULT_RULES, version=version,
                           tables={BALANCES: built.physical_name(BALANCES, stage=STAGE)})
        assert replayed.state == "ready"
        assert report.archive.events == 6, version
        assert report.views[BALANCES].batch_keys == 3 and report.total_differences == 0, \
            [d.to_json() for d in report.differences]
