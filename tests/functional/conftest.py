"""moto-backed resources for the functional tests of each handler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

RAW = "cascata-test-payments-raw"
VALIDATED = "cascata-test-payments-validated"
LEDGER = "cascata-test-ledger-entries"
BUCKET = "cascata-test-quarantine"
TABLE = "cascata-test-balances"
DEDUPE = "cascata-test-dedupe"


@dataclass
class Aws:
    kinesis: Any
    s3: Any
    dynamodb: Any

    def stream_records(self, stream: str) -> list[dict[str, Any]]:
        """Every record on every shard of the stream, decoded from JSON."""
        out = []
        shards = self.kinesis.list_shards(StreamName=stream)["Shards"]
        for shard in shards:
            it = self.kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while it:
                page = self.kinesis.get_records(ShardIterator=it, Limit=10_000)
                out.extend(
                    {"shard": shard["ShardId"], "key": r["PartitionKey"],
                     "event": json.loads(r["Data"])}
                    for r in page["Records"]
                )
                if not page["Records"]:
                    break
                it = page.get("NextShardIterator")
        return out

    def quarantined(self) -> list[dict[str, Any]]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return [
            json.loads(self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read())
            | {"_key": o["Key"]}
            for o in listing
        ]


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        for name in (RAW, VALIDATED, LEDGER):
            kinesis.create_stream(StreamName=name, ShardCount=2)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "account_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "account_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.create_table(
            TableName=DEDUPE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Aws(kinesis=kinesis, s3=s3, dynamodb=ddb)
