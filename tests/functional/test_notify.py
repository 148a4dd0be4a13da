"""notify on moto: one SNS message per fraud alert, under redelivery, duplicates and failures.

Messages are read from an SQS queue subscribed to the topic, as a subscriber would see them.
Alerts are real `fraud.alert` events raised by fraud-detect's domain from payments.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cascata_runtime.adapters import S3ObjectStore
from cascata_runtime.envelope import Envelope, SourcePosition, parse_envelope
from payments import adapters
from payments.domain.fraud import PayerState, evaluate
from payments.domain.notify import SUBJECT_MAX, plan, subject_for
from payments.domain.schemas import FraudAlert, PaymentMade, parse_event
from payments.handlers import fraud_detect, notify
from payments.settings import NotifySettings
from tests.support.events import LambdaContext, kinesis_event, payment

TOPIC = "cascata-test-notifications"
QUEUE = "cascata-test-subscriber"
VIEW = "cascata-test-alerts-view"
ALERTS = "cascata-test-alerts"
BUCKET = "cascata-test-quarantine"
CTX = LambdaContext("cascata-test-notify")
NOW = datetime(2026, 11, 2, 10, 0, 0, tzinfo=UTC)


@dataclass
class Aws:
    sns: Any
    sts: Any
    sqs: Any
    dynamodb: Any
    s3: Any
    queue_url: str
    topic_arn: str

    def messages(self) -> list[dict[str, Any]]:
        """Everything delivered to the subscriber so far (SNS JSON envelopes)."""
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            batch = got.get("Messages", [])
            if not batch:
                return out
            for m in batch:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def item(self, alert: FraudAlert) -> dict[str, Any] | None:
        from boto3.dynamodb.types import TypeDeserializer

        from payments.domain.fraud import alert_key

        raw = self.dynamodb.get_item(TableName=VIEW, ConsistentRead=True, Key={
            "account_id": {"S": alert.account}, "alert_key": {"S": alert_key(alert)}}).get("Item")
        des = TypeDeserializer()
        return {k: des.deserialize(v) for k, v in raw.items()} if raw else None

    def quarantined(self) -> list[dict[str, Any]]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return [json.loads(self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read())
                for o in listing]


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic_arn = sns.create_topic(Name=TOPIC)["TopicArn"]
        queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName=VIEW,
            KeySchema=[{"AttributeName": "account_id", "KeyType": "HASH"},
                       {"AttributeName": "alert_key", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                                  for n in ("account_id", "alert_key")],
            BillingMode="PAY_PER_REQUEST",
        )
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield Aws(sns=sns, sts=boto3.client("sts", region_name="us-east-1"), sqs=sqs,
                  dynamodb=ddb, s3=s3, queue_url=queue_url, topic_arn=topic_arn)


def raised(*payments: dict[str, Any]) -> list[FraudAlert]:
    """The alerts fraud-detect raises for these payments of one payer (fresh state)."""
    ats = []
    for n, obj in enumerate(payments):
        env = parse_envelope(obj, causation=SourcePosition("payments-validated",
                                                           "shardId-000000000000", str(n + 1)))
        assert isinstance(env, Envelope)
        event = parse_event(env)
        assert isinstance(event, PaymentMade)
        ats.append((n, event))
    return [r.alert for r in evaluate(PayerState(ats[0][1].payer), ats, tier=None).alerts]


def big(event_id: str, payer: str = "alice", payee: str = "mallory") -> dict[str, Any]:
    """A payment that raises tier_limit and new_payee: two alerts."""
    return payment(event_id, payer=payer, payee=payee, amount_minor=250_000,
                   occurred_at="2026-11-02T09:00:01Z")


def stream(alerts: list[FraudAlert], start: int = 1) -> dict[str, Any]:
    return kinesis_event([a.envelope.to_json() for a in alerts], stream=ALERTS, start=start)


def written_by_fraud_detect(aws: Aws, alerts: list[FraudAlert]) -> None:
    from payments.domain.fraud import alert_view_item

    view = adapters.DynamoAlertsView(aws.dynamodb, VIEW)
    for alert in alerts:
        view.upsert(alert_view_item(alert))


def deps(aws: Aws, **overrides: Any) -> notify.Dependencies:
    values: dict[str, Any] = {
        "quarantine_bucket": BUCKET,
        "publisher": adapters.SnsPublisher(aws.sns, aws.sts, TOPIC),
        "ledger": adapters.DynamoAlertLedger(aws.dynamodb, VIEW),
        "objects": S3ObjectStore(aws.s3),
        "now": lambda: NOW,
    }
    values.update(overrides)
    return notify.Dependencies(**values)


def handler(aws: Aws, **overrides: Any) -> Any:
    return notify.make_handler(deps(aws, **overrides))


def alert_ids(messages: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.loads(m["Message"])["event_id"] for m in messages)


def test_each_alert_becomes_one_message_with_a_subject_and_the_alert_as_json(aws: Aws) -> None:
    # Given two alerts fraud-detect raised and wrote to the view
    alerts = raised(big("p1"))
    written_by_fraud_detect(aws, alerts)
    # When notify runs over them
    assert handler(aws)(stream(alerts), CTX) == {"batchItemFailures": []}
    # Then the subscriber gets one message per alert: subject, the alert event as the body
    messages = aws.messages()
    assert alert_ids(messages) == Counter({a.envelope.event_id: 1 for a in alerts})
    by_rule = {json.loads(m["Message"])["data"]["rule"]: m for m in messages}
    tier = by_rule["tier_limit"]
    assert tier["Subject"] == "Fraud alert: tier_limit (high) on account alice"
    body = json.loads(tier["Message"])
    assert body["type"] == "fraud.alert" and body["data"]["payment_event_id"] == "p1"
    sent = json.loads(json.dumps(alerts[0].envelope.to_json()))
    assert {k: v for k, v in body.items() if k != "causation"} == {
        k: v for k, v in sent.items() if k != "causation"}
    # lineage: the causation is the alerts-stream record the message was sent for
    assert body["causation"] == {"stream": ALERTS, "shard": "shardId-000000000000",
                                 "sequence": "1"}
    assert tier["MessageAttributes"]["alert_id"]["Value"] == alerts[0].envelope.event_id
    assert tier["MessageAttributes"]["severity"]["Value"] == "high"
    assert tier["TopicArn"] == aws.topic_arn
    # and each alert's item records when and which message
    for alert in alerts:
        item = aws.item(alert)
        assert item is not None and item["notified_at"] == "2026-11-02T10:00:00Z"
        assert item["notification_id"] in {m["MessageId"] for m in messages}
        assert item["rule"] == alert.rule  # fraud-detect's attributes are kept


def test_the_same_batch_delivered_twice_sends_nothing_more(aws: Aws) -> None:
    alerts = raised(big("p1"))
    written_by_fraud_detect(aws, alerts)
    handle = handler(aws)
    assert handle(stream(alerts), CTX) == {"batchItemFailures": []}
    assert handle(stream(alerts), CTX) == {"batchItemFailures": []}
    assert sorted(alert_ids(aws.messages()).values()) == [1, 1]


def test_duplicates_in_a_batch_and_at_new_positions_send_one_message(aws: Aws) -> None:
    # Given fraud-detect re-emitted its alerts after a crash: each alert twice in one batch,
    # and once more in a later batch
    alerts = raised(big("p1"))
    written_by_fraud_detect(aws, alerts)
    handle = handler(aws)
    assert handle(stream([*alerts, *alerts]), CTX) == {"batchItemFailures": []}
    assert handle(stream(alerts, start=10), CTX) == {"batchItemFailures": []}
    assert sorted(alert_ids(aws.messages()).values()) == [1, 1]


def test_an_alert_missing_from_the_view_is_still_sent_once(aws: Aws) -> None:
    # Given notify sees the alerts before fraud-detect's view write
    alerts = raised(big("p1"))
    handle = handler(aws)
    assert handle(stream(alerts), CTX) == {"batchItemFailures": []}
    assert handle(stream(alerts, start=5), CTX) == {"batchItemFailures": []}
    # Then each is sent once, and its item is created from the alert itself
    assert sorted(alert_ids(aws.messages()).values()) == [1, 1]
    item = aws.item(alerts[0])
    assert item is not None and item["notified_at"] == "2026-11-02T10:00:00Z"
    assert item["day"] == "2026-11-02" and item["amount_minor"] == 250_000
    # and fraud-detect's later write completes the item without erasing the mark
    written_by_fraud_detect(aws, alerts)
    after = aws.item(alerts[0])
    assert after is not None and after["notified_at"] == "2026-11-02T10:00:00Z"


def test_a_failed_publish_fails_only_its_record_and_the_retry_sends_the_rest(aws: Aws) -> None:
    # Given three accounts' alerts; SNS refuses bob's
    alerts = raised(big("a1", payer="alice")) + raised(big("b1", payer="bob")) + raised(
        big("c1", payer="carol"))
    written_by_fraud_detect(aws, alerts)
    real = adapters.SnsPublisher(aws.sns, aws.sts, TOPIC)

    class RefuseBob:
        def publish(self, n: Any) -> str:
            if n.alert.account == "bob":
                raise RuntimeError("Throttling")
            return real.publish(n)

    event = stream(alerts)
    response = handler(aws, publisher=RefuseBob())(event, CTX)
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    bob = [r["kinesis"]["sequenceNumber"] for r in event["Records"]
           if r["kinesis"]["partitionKey"] == "bob"]
    assert failed == bob
    # When Lambda retries from the lowest failed sequence
    lowest = min(int(s) for s in failed)
    retry = {"Records": [r for r in event["Records"]
                         if int(r["kinesis"]["sequenceNumber"]) >= lowest]}
    assert handler(aws)(retry, CTX) == {"batchItemFailures": []}
    # Then every alert was sent exactly once
    assert alert_ids(aws.messages()) == Counter({a.envelope.event_id: 1 for a in alerts})


def test_a_failed_mark_after_publishing_does_not_fail_the_record(aws: Aws) -> None:
    # The residual window, made visible: SNS took the message, the mark could not be written.
    alerts = raised(big("p1"))[:1]
    written_by_fraud_detect(aws, alerts)
    real = adapters.DynamoAlertLedger(aws.dynamodb, VIEW)

    class MarkFails:
        def recorded(self, keys: Any) -> Any:
            return real.recorded(keys)

        def mark_notified(self, *args: Any, **kwargs: Any) -> bool:
            raise RuntimeError("ProvisionedThroughputExceededException")

    assert handler(aws, ledger=MarkFails())(stream(alerts), CTX) == {"batchItemFailures": []}
    item = aws.item(alerts[0])
    assert item is not None and "notified_at" not in item
    # a later redelivery of that alert repeats the message: the documented duplicate
    handler(aws)(stream(alerts), CTX)
    assert alert_ids(aws.messages()) == Counter({alerts[0].envelope.event_id: 2})


def test_a_failed_view_read_fails_the_alerts_and_sends_nothing(aws: Aws) -> None:
    class Unreadable:
        def recorded(self, keys: Any) -> Any:
            raise RuntimeError("InternalServerError")

        def mark_notified(self, *args: Any, **kwargs: Any) -> bool:
            raise AssertionError("nothing was sent")

    alerts = raised(big("p1"))
    response = handler(aws, ledger=Unreadable())(stream(alerts), CTX)
    assert len(response["batchItemFailures"]) == 2 and aws.messages() == []


def test_records_that_are_not_alerts_are_quarantined(aws: Aws) -> None:
    alerts = raised(big("p1"))[:1]
    event = kinesis_event([payment("x"), b"{", alerts[0].envelope.to_json()], stream=ALERTS,
                          keys=["alice", "alice", "alice"])
    assert handler(aws)(event, CTX) == {"batchItemFailures": []}
    assert sorted(q["reason"]["code"] for q in aws.quarantined()) == ["not_json",
                                                                      "unexpected_type"]
    assert len(aws.messages()) == 1


def test_the_topic_arn_is_built_from_the_caller_identity(aws: Aws) -> None:
    settings = NotifySettings.from_env({
        "NOTIFICATIONS_TOPIC": TOPIC, "ALERTS_TABLE": VIEW, "QUARANTINE_BUCKET": BUCKET,
        "PIPELINE_STAGE": "test",
    })
    asked: list[str] = []

    def client(service: str) -> Any:
        asked.append(service)
        return boto3.client(service, region_name="us-east-1")

    built = notify.dependencies(settings, client=client)
    assert isinstance(built.publisher, adapters.SnsPublisher)
    assert built.publisher.topic_arn == aws.topic_arn
    assert set(asked) == {"sns", "sts", "dynamodb", "s3"}
    alerts = raised(big("p1"))
    assert notify.make_handler(built)(stream(alerts), CTX) == {"batchItemFailures": []}
    assert len(aws.messages()) == 2


def test_fraud_detect_to_notify_end_to_end(aws: Aws) -> None:
    # Given fraud-detect's tables and stream next to the view
    from cascata_runtime.adapters import DynamoItemStore
    from cascata_runtime.emitter import KinesisSink

    kinesis = boto3.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName=ALERTS, ShardCount=1)
    for name, key in (("state", "payer"), ("profiles", "customer_id")):
        aws.dynamodb.create_table(
            TableName=name, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST")
    detect = fraud_detect.make_handler(fraud_detect.Dependencies(
        alerts_stream=ALERTS, quarantine_bucket=BUCKET,
        state=DynamoItemStore(aws.dynamodb, "state", key="payer"),
        tiers=adapters.DynamoProfileTiers(aws.dynamodb, "profiles"),
        view=adapters.DynamoAlertsView(aws.dynamodb, VIEW),
        sink=KinesisSink(kinesis, sleep=lambda _s: None), objects=S3ObjectStore(aws.s3)))
    payments = kinesis_event([big("p1"), big("p2", payee="eve")],
                             stream="cascata-test-payments-validated")
    # When fraud-detect runs twice over the same payments and notify over its stream twice
    detect(payments, CTX)
    detect(payments, CTX)
    shard = kinesis.list_shards(StreamName=ALERTS)["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName=ALERTS, ShardId=shard,
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=it)["Records"]
    event = kinesis_event([r["Data"] for r in records], stream=ALERTS,
                          keys=[r["PartitionKey"] for r in records])
    handle = handler(aws)
    assert handle(event, CTX) == {"batchItemFailures": []}
    assert handle(event, CTX) == {"batchItemFailures": []}
    # Then four alerts (tier_limit and new_payee for each payment), one message each
    counts = alert_ids(aws.messages())
    assert len(counts) == 4 and set(counts.values()) == {1}


# --- the pure part ------------------------------------------------------------------------------


def test_a_subject_is_short_printable_ascii_whatever_the_account() -> None:
    [alert] = raised(big("p1", payer="a" * 64))[:1]
    subject = subject_for(alert)
    assert len(subject) <= SUBJECT_MAX and subject.endswith("...")
    assert all(" " <= c <= "~" for c in subject)


def test_the_plan_keeps_the_first_copy_of_each_alert() -> None:
    alerts = raised(big("p1"))
    events: list[Any] = [parse_envelope(a.envelope.to_json()) for a in [*alerts, alerts[0]]]
    batch = plan(events)
    assert [n.index for n in batch.notifications] == [0, 1] and batch.repeated == (2,)
    assert batch.rejected == ()
