"""Stateful resources and event source mappings keep their logical ids across refactors.

`stable_ids.json` records, per variant, the logical id and type of every resource whose
replacement would lose data or a read position (streams, tables, buckets, queues, the key, log
groups, event source mappings, the MSK cluster and its network, Firehose delivery streams and
their buffered records), collide on a fixed name (functions, the dashboard, topics, the Glue
database and tables, the Athena workgroup, the audit policy, the replay state machine) or
change an address clients call (the HTTP API, whose URL embeds its id). A refactor that changes
one of those ids would make CloudFormation create a new resource and delete the old one.
Version stacks are recorded too (`v2_stream`, `v2_archive`, `v2_msk`): a promoted version's
tables and mappings are as precious as the base stack's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from .conftest import Synthesized

SNAPSHOT = Path(__file__).with_name("stable_ids.json")
UPDATE_VARIABLE = "CASCATA_UPDATE_STABLE_IDS"
PROTECTED_TYPES = frozenset(
    {
        "AWS::Kinesis::Stream",
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::KMS::Key",
        "AWS::Logs::LogGroup",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Lambda::Function",
        "AWS::CloudWatch::Dashboard",
        "AWS::MSK::ServerlessCluster",
        "AWS::ApiGatewayV2::Api",
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::EC2::SecurityGroup",
        "AWS::KinesisFirehose::DeliveryStream",
        "AWS::Glue::Database",
        "AWS::Glue::Table",
        "AWS::Athena::WorkGroup",
        "AWS::IAM::ManagedPolicy",
        "AWS::StepFunctions::StateMachine",
        # Replaced, the topics resource would adopt the topics and its old self delete them.
        "Custom::KafkaTopics",
    }
)

HOW_TO_FIX = f"""
A stateful resource or event source mapping would be REPLACED on the next deploy: a new
stream/table/bucket (data left behind), a new mapping (read position reset, records replayed
or skipped), or a name collision that fails the deployment.

If this was an accidental refactor: pin the resource again with
`cascata.cdk.naming.pin(construct, stable_id(...))` so its logical id is the recorded one.

If the replacement is intended (you have a migration plan for the data and read positions),
record the new ids and explain the migration in the change:
    {UPDATE_VARIABLE}=1 .venv/bin/pytest tests/infrastructure/test_stable_ids.py
then review the diff of {SNAPSHOT.name}.
"""


def _protected(synth: Synthesized) -> dict[str, str]:
    return {
        logical_id: resource["Type"]
        for logical_id, resource in sorted(synth.resources.items())
        if resource["Type"] in PROTECTED_TYPES
    }


@pytest.mark.parametrize("variant", ["dev", "prod", "msk", "v2_stream", "v2_archive", "v2_msk"])
def test_protected_logical_ids_match_the_snapshot(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    current = _protected(synth)
    recorded: dict[str, dict[str, str]] = (
        json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    )
    if os.environ.get(UPDATE_VARIABLE) == "1":
        recorded[variant] = current
        SNAPSHOT.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
        pytest.skip(f"recorded {len(current)} protected ids for {variant} in {SNAPSHOT.name}")
    expected = recorded.get(variant)
    assert expected is not None, f"no snapshot for {variant}.\n{HOW_TO_FIX}"

    # Then nothing recorded disappeared or changed type...
    missing = {k: t for k, t in expected.items() if k not in current}
    retyped = {k: (t, current[k]) for k, t in expected.items() if k in current and current[k] != t}
    assert not missing, f"protected resources gone or renamed: {missing}\n{HOW_TO_FIX}"
    assert not retyped, f"protected resources changed type: {retyped}\n{HOW_TO_FIX}"
    # ... and every protected resource is pinned and recorded (none with a generated id)
    unrecorded = sorted(set(current) - set(expected))
    assert not unrecorded, (
        f"protected resources not in {SNAPSHOT.name}: {unrecorded}. Pin them with "
        f"cascata.cdk.naming.pin and record them with {UPDATE_VARIABLE}=1 (see above).\n"
        f"{HOW_TO_FIX}"
    )


def test_snapshot_ids_are_readable_not_hashed() -> None:
    # CDK's generated ids end in an 8-character uppercase hex hash; pinned ids never do.
    recorded = json.loads(SNAPSHOT.read_text())
    for variant, resources in recorded.items():
        for logical_id in resources:
            assert not re.search(r"[0-9A-F]{8}$", logical_id), f"{variant}: pin {logical_id}"
