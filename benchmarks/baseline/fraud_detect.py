"""Baseline `fraud-detect`: rule state per payer in one UpdateItem per payment, alert items
(a conditional PutItem each) and one SNS message per alert (notify's job, done inline).

The rules are simple stand-ins for cascata's (velocity, a large payment to a new payee, a
payment over the payer's tier limit): the bench compares what the rules cost to keep, and both
sides raise a few alerts on the workload's bursts.
"""

from __future__ import annotations

import json

from benchmarks.baseline.app import Dependencies, Handler, Settings, dependencies
from benchmarks.baseline.app import stream_function as _stream_function
from cascata_runtime.envelope import Envelope, format_time
from payments.domain.schemas import Event, PaymentMade

SETTINGS = Settings
__all__ = ["SETTINGS", "dependencies", "make_handler"]

VELOCITY_INTERVAL_S = 60
VELOCITY_MAX = 5
NEW_PAYEE_LARGE_MINOR = 50_000
TIER_CHECK_OVER_MINOR = 100_000
TIER_LIMITS_MINOR = {"basic": 200_000, "plus": 500_000, "premium": 2_000_000}


def make_handler(deps: Dependencies) -> Handler:
    dynamodb = deps.client("dynamodb")
    sns = deps.client("sns")
    state_table = deps.settings.get("FRAUD_STATE_TABLE")
    alerts_table = deps.settings.get("ALERTS_TABLE")
    profiles_table = deps.settings.get("PROFILES_TABLE")
    topic_name = deps.settings.get("NOTIFICATIONS_TOPIC")
    topic_arn: list[str] = []

    def topic() -> str:
        # The binding gives the topic's name; Publish needs its ARN (account from STS, once).
        if not topic_arn:
            identity = deps.client("sts").get_caller_identity()
            partition = str(identity["Arn"]).split(":")[1]
            topic_arn.append(f"arn:{partition}:sns:{sns.meta.region_name}:"
                             f"{identity['Account']}:{topic_name}")
        return topic_arn[0]

    def raise_alert(envelope: Envelope, payment: PaymentMade, rule: str) -> None:
        when = format_time(envelope.occurred_at)
        item = {"account_id": {"S": payment.payer},
                "alert_key": {"S": f"{when}#{envelope.event_id}#{rule}"},
                "day": {"S": when[:10]}, "rule": {"S": rule},
                "payment_event_id": {"S": envelope.event_id},
                "amount_minor": {"N": str(payment.amount.amount_minor)},
                "currency": {"S": payment.amount.currency}, "payee": {"S": payment.payee}}
        try:
            dynamodb.put_item(TableName=alerts_table, Item=item,
                              ConditionExpression="attribute_not_exists(alert_key)")
        except dynamodb.exceptions.ConditionalCheckFailedException:
            return
        sns.publish(TopicArn=topic(), Message=json.dumps(
            {"account": payment.payer, "rule": rule, "payment_event_id": envelope.event_id}))

    def tier_of(account: str) -> str:
        found = dynamodb.get_item(TableName=profiles_table, Key={"customer_id": {"S": account}},
                                  ProjectionExpression="tier").get("Item", {})
        return str(found.get("tier", {}).get("S", "basic"))

    def on_event(envelope: Envelope, event: Event) -> None:
        assert isinstance(event, PaymentMade)
        bucket = int(envelope.occurred_at.timestamp()) // VELOCITY_INTERVAL_S
        old = dynamodb.update_item(
            TableName=state_table, Key={"payer": {"S": event.payer}},
            UpdateExpression="ADD #bucket :one, #payees :payee",
            ExpressionAttributeNames={"#bucket": f"v{bucket}", "#payees": "payees"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":payee": {"SS": [event.payee]}},
            ReturnValues="UPDATED_OLD",
        ).get("Attributes", {})
        amount = event.amount.amount_minor
        if int(old.get(f"v{bucket}", {}).get("N", "0")) + 1 == VELOCITY_MAX + 1:
            raise_alert(envelope, event, "velocity")
        if event.payee not in old.get("payees", {}).get("SS", []) \
                and amount >= NEW_PAYEE_LARGE_MINOR:
            raise_alert(envelope, event, "new_payee_large")
        if amount > TIER_CHECK_OVER_MINOR and amount > TIER_LIMITS_MINOR.get(
                tier_of(event.payer), TIER_LIMITS_MINOR["basic"]):
            raise_alert(envelope, event, "tier_limit")

    return _stream_function("fraud-detect", deps, (PaymentMade,), on_event)
