"""The functions' in-process clients answer as the emulator's HTTP endpoint does.

Every operation served in-process (`FAST_OPERATIONS`) runs the same script twice against one
embedded emulator, once through a boto3 client over HTTP and once in-process, on twin
resources; the answers (and errors: class, code, message) must be the same, but for what
differs between twins by nature (sequence numbers, message ids, request metadata).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from cascata.local.emulator import EmbeddedAws
from cascata.local.inprocess import FAST_OPERATIONS, InProcessClient


@pytest.fixture(scope="module")
def aws() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as running:
        yield running


def outcome(call: Callable[[], Any]) -> Any:
    """The answer without its metadata, or the error as (class, code, message)."""
    try:
        answer = call()
    except ClientError as exc:
        error = exc.response["Error"]
        return ("error", type(exc).__name__, error.get("Code"), error.get("Message"))
    except ParamValidationError as exc:
        return ("invalid", str(exc))
    if isinstance(answer, dict):
        answer = {k: v for k, v in answer.items() if k != "ResponseMetadata"}
        if hasattr(answer.get("Body"), "read"):
            answer["Body"] = answer["Body"].read()
    return answer


def renamed(value: Any, label: str) -> Any:
    """`value` with the twin's own resource name replaced by a common one."""
    if isinstance(value, dict):
        return {renamed(k, label): renamed(v, label) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(renamed(v, label) for v in value)
    if isinstance(value, str):
        return value.replace(f"twin-{label}", "twin")
    return value


def same(results: dict[str, list[Any]]) -> bool:
    """The twins' answers are equal once each twin's own resource names are set aside."""
    assert renamed(results["fast"], "fast") == renamed(results["http"], "http")
    return True


def twins(aws: EmbeddedAws, service: str) -> list[tuple[str, Any]]:
    fast = aws.function_client(service)
    assert isinstance(fast, InProcessClient)
    return [("http", aws.client(service)), ("fast", fast)]


def test_the_functions_get_in_process_clients_and_everything_else_http(aws: EmbeddedAws) -> None:
    for service in FAST_OPERATIONS:
        client = aws.function_client(service)
        assert isinstance(client, InProcessClient)
        assert client.meta.region_name == aws.region
    assert not isinstance(aws.function_client("sqs"), InProcessClient)
    # an operation not served in-process goes over HTTP, to the same state
    assert "TableNames" in aws.function_client("dynamodb").list_tables()


def test_dynamodb_answers_and_errors_match_http(aws: EmbeddedAws) -> None:
    def script(label: str, client: Any) -> list[Any]:
        table = f"twin-{label}"
        aws.client("dynamodb").create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
        item = {**key, "n": {"N": "1"}, "b": {"B": b"\x00\xff"}, "m": {"M": {"l": {"L": [
            {"S": "x"}, {"BS": [b"1", b"2"]}]}}}}
        condition = {"ConditionExpression": "attribute_not_exists(pk) OR #n < :n",
                     "ExpressionAttributeNames": {"#n": "n"},
                     "ExpressionAttributeValues": {":n": {"N": "1"}}}
        steps = [
            lambda: client.put_item(TableName=table, Item=item, **condition),
            lambda: client.put_item(TableName=table, Item=item, **condition),  # condition fails
            lambda: client.get_item(TableName=table, Key=key, ConsistentRead=True),
            lambda: client.update_item(
                TableName=table, Key=key, UpdateExpression="SET #n = #n + :one",
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="ALL_NEW"),
            lambda: client.batch_write_item(RequestItems={table: [
                {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"S": str(i)}}}}
                for i in range(2, 6)]}),
            lambda: client.batch_get_item(
                RequestItems={table: {"Keys": [key, {"pk": {"S": "a"}, "sk": {"S": "9"}}],
                                      "ConsistentRead": True}},
                ReturnConsumedCapacity="TOTAL"),
            lambda: client.query(TableName=table, KeyConditionExpression="pk = :p",
                                 ExpressionAttributeValues={":p": {"S": "a"}}, Limit=3),
            lambda: client.scan(TableName=table, Select="COUNT"),
            lambda: client.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "t"}, "sk": {"S": "1"}}}},
                {"ConditionCheck": {"TableName": table, "Key": key,
                                    "ConditionExpression": "attribute_not_exists(pk)"}},
            ]),
            lambda: client.delete_item(TableName=table, Key=key, ReturnValues="ALL_OLD"),
            lambda: client.get_item(TableName="no-such-table", Key=key),
            lambda: client.put_item(TableName=table, Item={"pk": {"N": 1}}),
        ]
        return [outcome(step) for step in steps]

    results = {label: script(label, client) for label, client in twins(aws, "dynamodb")}
    assert same(results)
    assert results["fast"][1][:3] == ("error", "ConditionalCheckFailedException",
                                      "ConditionalCheckFailedException")
    assert results["fast"][2]["Item"]["b"] == {"B": b"\x00\xff"}
    assert results["fast"][-1][0] == "invalid"


def test_kinesis_answers_and_errors_match_http(aws: EmbeddedAws) -> None:
    def script(label: str, client: Any) -> list[Any]:
        stream = f"twin-{label}"
        aws.client("kinesis").create_stream(StreamName=stream, ShardCount=1)
        shard = "shardId-000000000000"
        records = [{"Data": f"event {i}".encode(), "PartitionKey": f"k{i}"} for i in range(3)]
        put = outcome(lambda: client.put_records(StreamName=stream, Records=records))
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard,
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got = outcome(lambda: client.get_records(ShardIterator=iterator, Limit=10))
        return [
            put["FailedRecordCount"], [r["ShardId"] for r in put["Records"]],
            [(r["Data"], r["PartitionKey"], type(r["ApproximateArrivalTimestamp"]))
             for r in got["Records"]],
            [s["ShardId"] for s in outcome(lambda: client.list_shards(StreamName=stream))[
                "Shards"]],
            outcome(lambda: client.describe_stream_summary(StreamName=stream))[
                "StreamDescriptionSummary"]["StreamStatus"],
            outcome(lambda: client.put_record(StreamName=stream, Data=b"x", PartitionKey="k"))[
                "ShardId"],
            outcome(lambda: client.put_records(StreamName="no-such-stream", Records=records)),
            outcome(lambda: client.put_records(StreamName=stream, Records=[{"Data": "x"}])),
        ]

    results = {label: script(label, client) for label, client in twins(aws, "kinesis")}
    assert same(results)
    assert results["fast"][2][0][0] == b"event 0"


def test_s3_objects_match_http_and_other_parameters_go_over_http(aws: EmbeddedAws) -> None:
    def script(label: str, client: Any) -> list[Any]:
        bucket = f"twin-{label}"
        aws.client("s3").create_bucket(Bucket=bucket)
        put = outcome(lambda: client.put_object(
            Bucket=bucket, Key="a/b.json", Body=b'{"a": 1}', ContentType="application/json",
            ContentEncoding="identity"))
        got = outcome(lambda: client.get_object(Bucket=bucket, Key="a/b.json"))
        meta = outcome(lambda: client.put_object(Bucket=bucket, Key="m", Body=b"x",
                                                 Metadata={"who": "me"}))
        return [
            put["ETag"],
            {k: got[k] for k in ("Body", "ContentType", "ContentEncoding", "ETag",
                                 "ContentLength")},
            type(got["LastModified"]), got["LastModified"].tzinfo is not None,
            meta["ETag"],
            client.get_object(Bucket=bucket, Key="m")["Metadata"],
            outcome(lambda: client.get_object(Bucket=bucket, Key="missing")),
            outcome(lambda: client.put_object(Bucket="no-such-bucket-x", Key="k", Body=b"")),
        ]

    results = {label: script(label, client) for label, client in twins(aws, "s3")}
    assert same(results)
    assert results["fast"][6][1:3] == ("NoSuchKey", "NoSuchKey")


def test_sns_publish_matches_http(aws: EmbeddedAws) -> None:
    topic = aws.client("sns").create_topic(Name="twin-topic")["TopicArn"]
    def script(label: str, client: Any) -> list[Any]:
        ok = outcome(lambda: client.publish(TopicArn=topic, Message="m", MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "alert"}}))
        return [sorted(ok), outcome(lambda: client.publish(
            TopicArn=topic + "-missing", Message="m"))]

    results = {label: script(label, client) for label, client in twins(aws, "sns")}
    assert same(results)


def test_a_conditional_write_is_atomic_across_in_process_and_http_writers(
    aws: EmbeddedAws,
) -> None:
    aws.client("dynamodb").create_table(
        TableName="claims", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST")
    clients = [aws.function_client("dynamodb"), aws.client("dynamodb")]
    for round_ in range(20):
        wins: list[int] = []
        start = threading.Barrier(8)

        def claim(n: int, round_: int = round_, start: threading.Barrier = start,
                  wins: list[int] = wins) -> None:
            start.wait()
            try:
                clients[n % 2].put_item(TableName="claims", Item={"id": {"S": f"r{round_}"},
                                                                  "by": {"N": str(n)}},
                                        ConditionExpression="attribute_not_exists(id)")
            except ClientError:
                return
            wins.append(n)

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1, f"round {round_}: {len(wins)} writers won the same claim"


def test_recording_keeps_every_in_process_request_in_order_and_changes_nothing(
    aws: EmbeddedAws,
) -> None:
    from cascata.local.inprocess import record_calls

    client = aws.function_client("kinesis")
    aws.client("kinesis").create_stream(StreamName="recorded", ShardCount=1)
    records = [{"Data": b"one", "PartitionKey": "k"}]
    with record_calls() as calls:
        client.put_records(StreamName="recorded", Records=records)
        client.list_shards(StreamName="recorded")
        with pytest.raises(RuntimeError, match="already being recorded"), record_calls():
            pass
        aws.reading_client("kinesis").list_shards(StreamName="recorded")  # the runtime's read
    client.list_shards(StreamName="recorded")  # after the recording: not kept
    assert [(service, method) for service, method, _ in calls] == [
        ("kinesis", "put_records"), ("kinesis", "list_shards")]
    assert calls[0][2] == {"StreamName": "recorded", "Records": records}
    assert calls[0][2]["Records"] is not records  # a copy: the caller's list stays its own


def test_blobs_are_decoded_wherever_they_sit_even_under_attributes_named_like_types(
    aws: EmbeddedAws,
) -> None:
    aws.client("dynamodb").create_table(
        TableName="blobs", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST")
    item = {"id": {"S": "x"}, "S": {"M": {"B": {"B": b"\x01"}, "N": {"L": [{"B": b"\x02"}]}}},
            "BS": {"BS": [b"\x03"]}, "SS": {"SS": ["a", "b"]}}
    fast = aws.function_client("dynamodb")
    fast.put_item(TableName="blobs", Item=item)
    got = fast.get_item(TableName="blobs", Key={"id": {"S": "x"}})["Item"]
    assert got == aws.client("dynamodb").get_item(TableName="blobs",
                                                  Key={"id": {"S": "x"}})["Item"]
    assert got["S"]["M"]["B"] == {"B": b"\x01"} and got["S"]["M"]["N"]["L"] == [{"B": b"\x02"}]


def test_paginators_page_in_process_as_over_http(aws: EmbeddedAws) -> None:
    aws.client("dynamodb").create_table(
        TableName="pages", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST")
    fast = aws.function_client("dynamodb")
    for i in range(25):
        fast.put_item(TableName="pages", Item={"id": {"S": f"k{i:02d}"}})
    pages = {label: [page["Items"] for page in client.get_paginator("scan").paginate(
        TableName="pages", PaginationConfig={"PageSize": 10})]
        for label, client in (("http", aws.client("dynamodb")), ("fast", fast))}
    assert pages["fast"] == pages["http"] and [len(p) for p in pages["fast"]] == [10, 10, 5]
    # an operation served over HTTP keeps its own paginator
    assert fast.get_paginator("list_tables").paginate().build_full_result()["TableNames"]
