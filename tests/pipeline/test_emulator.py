"""The embedded emulator: loopback only, declared resources, moto's defects guarded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cascata.local.emulator import EmbeddedAws, provision
from payments.pipeline import PIPELINE


@pytest.fixture(scope="module")
def aws() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as running:
        yield running


def test_the_server_listens_on_loopback_on_an_ephemeral_port(aws: EmbeddedAws) -> None:
    assert aws.endpoint_url is not None
    assert aws.endpoint_url.startswith("http://127.0.0.1:")
    assert not aws.endpoint_url.endswith(":5000")


def test_a_client_keeps_its_connection_across_requests(
    aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    peers: list[str] = []
    serve = DomainDispatcherApplication.__call__

    def noting(self: object, environ: dict[str, str], start_response: object) -> object:
        peers.append(environ["REMOTE_PORT"])
        return serve(self, environ, start_response)  # type: ignore[arg-type]

    monkeypatch.setattr(DomainDispatcherApplication, "__call__", noting)
    kinesis = aws.client("kinesis")
    for _ in range(20):
        kinesis.list_streams()
    assert len(peers) == 20 and len(set(peers)) == 1


def test_an_empty_s3_put_expecting_100_continue_gets_its_answer(aws: EmbeddedAws) -> None:
    """boto3 sends `Expect: 100-continue` with an empty PutObject body: the final answer
    must follow the interim one (a server that stops at `100 Continue` hangs the client)."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as raised:
        aws.client("s3").put_object(Bucket="no-such-bucket-here", Key="k", Body=b"")
    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"


def test_provisioning_creates_every_declared_resource_and_is_idempotent(aws: EmbeddedAws) -> None:
    first = provision(PIPELINE, aws, stage="emu")
    again = provision(PIPELINE, aws, stage="emu")
    assert again.created == ()
    streams = aws.client("kinesis").list_streams()["StreamNames"]
    assert {first.names[s.name] for s in PIPELINE.streams} <= set(streams)
    tables = aws.client("dynamodb").list_tables()["TableNames"]
    assert first.names["balances"] in tables
    buckets = {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}
    assert {first.names[b.name] for b in PIPELINE.buckets} <= buckets


def test_eight_concurrent_producers_on_one_shard_lose_nothing(aws: EmbeddedAws) -> None:
    kinesis = aws.client("kinesis")
    kinesis.create_stream(StreamName="one-shard", ShardCount=1)
    errors: list[BaseException] = []

    def producer(n: int) -> None:
        try:
            for batch in range(5):
                records = [{"Data": f"{n}-{batch}-{i}".encode(), "PartitionKey": "hot"}
                           for i in range(200)]
                response = kinesis.put_records(StreamName="one-shard", Records=records)
                assert response["FailedRecordCount"] == 0
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    shard = next(iter(aws.kinesis_backend().streams["one-shard"].shards.values()))
    payloads = {r.data for r in shard.records.values()}
    assert len(shard.records) == 8000
    assert len(payloads) == 8000
    assert list(shard.records) == list(range(1, 8001))


def test_writes_do_not_scan_the_shard_as_it_grows(aws: EmbeddedAws) -> None:
    """Unpatched, every write walks every key of the shard to find the last sequence number
    (at 40k records a write is an order of magnitude slower). Counted, not timed: a write may
    not walk the shard's records at all once the shard knows its last sequence number."""
    from collections import OrderedDict

    kinesis = aws.client("kinesis")
    kinesis.create_stream(StreamName="growing", ShardCount=1)
    backend = aws.kinesis_backend()
    shard = next(iter(backend.streams["growing"].shards.values()))
    walks = {"count": 0}

    class Counting(OrderedDict):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            walks["count"] += 1
            return super().__iter__()

        def __reversed__(self) -> Any:
            walks["count"] += 1
            return super().__reversed__()

        def keys(self) -> Any:
            walks["count"] += 1
            return super().keys()

    shard.records = Counting(shard.records)
    shard.put_record("k", "eA==", None)  # the first write may look once
    walks["count"] = 0
    for _ in range(5000):
        shard.put_record("k", "eA==", None)
    assert walks["count"] == 0
    assert shard.get_max_sequence_number() == 5001 == len(shard.records)


def test_reads_by_sequence_are_indexed_and_exact(aws: EmbeddedAws) -> None:
    kinesis = aws.client("kinesis")
    kinesis.create_stream(StreamName="reads", ShardCount=1)
    kinesis.put_records(StreamName="reads",
                        Records=[{"Data": str(i).encode(), "PartitionKey": "k"} for i in range(50)])
    shard_id = kinesis.list_shards(StreamName="reads")["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName="reads", ShardId=shard_id,
                                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                    StartingSequenceNumber="10")["ShardIterator"]
    page = kinesis.get_records(ShardIterator=it, Limit=5)
    assert [r["Data"] for r in page["Records"]] == [b"10", b"11", b"12", b"13", b"14"]
    nxt = kinesis.get_records(ShardIterator=page["NextShardIterator"], Limit=100)
    assert len(nxt["Records"]) == 35
    assert nxt["MillisBehindLatest"] == 0


def test_after_a_split_writes_go_to_open_shards_only(aws: EmbeddedAws) -> None:
    kinesis = aws.client("kinesis")
    kinesis.create_stream(StreamName="resharded", ShardCount=1)
    parent = kinesis.list_shards(StreamName="resharded")["Shards"][0]
    middle = str((int(parent["HashKeyRange"]["EndingHashKey"]) + 1) // 2)
    kinesis.split_shard(StreamName="resharded", ShardToSplit=parent["ShardId"],
                        NewStartingHashKey=middle)
    kinesis.put_records(StreamName="resharded",
                        Records=[{"Data": b"x", "PartitionKey": f"k{i}"} for i in range(100)])
    shards = aws.kinesis_backend().streams["resharded"].shards
    closed = [s for s in shards.values() if not s.is_open]
    assert closed and all(len(s.records) == 0 for s in closed)
    assert sum(len(s.records) for s in shards.values() if s.is_open) == 100
