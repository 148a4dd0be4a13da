"""Reading what a pipeline left, page by page (the local tools' checks): a bucket's keys and
objects, a stream's records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def list_keys(s3: Any, bucket: str, prefix: str = "") -> Iterable[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def read_objects(s3: Any, bucket: str, prefix: str = "") -> Iterable[bytes]:
    for key in list_keys(s3, bucket, prefix):
        yield s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def read_stream(kinesis: Any, stream: str) -> Iterable[bytes]:
    """Every record's data on a stream so far, shard by shard (in shard id order)."""
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    for shard in sorted(shards, key=lambda s: str(s["ShardId"])):
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                yield record["Data"]
            if not page["Records"] or (page.get("MillisBehindLatest", 0) == 0 and len(
                page["Records"]) < 10_000):
                break
            iterator = page.get("NextShardIterator")
