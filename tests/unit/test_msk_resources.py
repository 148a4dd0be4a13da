"""The MSK custom resources' handlers: topics as code and the bootstrap brokers.

The handler logic runs over an in-memory `TopicAdmin` (a cluster of topics, partitions and
retention, which refuses what Kafka refuses), with the event shapes the CDK Provider framework
sends: every property a string, as CloudFormation hands them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from cascata_runtime.msk_resources import (
    TopicsError,
    TopicSpec,
    TopicState,
    handle_bootstrap,
    handle_topics,
    plan_topics,
    topics_handler,
)

DAY_MS = 86_400_000


class InMemoryTopics:
    """A cluster's topics as `TopicAdmin` sees them, with a log of the calls made."""

    def __init__(self, topics: Mapping[str, TopicState] | None = None) -> None:
        self.topics: dict[str, TopicState] = dict(topics or {})
        self.calls: list[tuple[str, Any]] = []

    def describe(self, names: Sequence[str]) -> dict[str, TopicState]:
        return {n: self.topics[n] for n in names if n in self.topics}

    def create(self, topics: Sequence[TopicSpec]) -> None:
        self.calls.append(("create", [t.name for t in topics]))
        for t in topics:
            assert t.name not in self.topics, f"{t.name} exists"
            self.topics[t.name] = TopicState(t.partitions, t.retention_ms)

    def add_partitions(self, counts: Mapping[str, int]) -> None:
        self.calls.append(("add_partitions", dict(counts)))
        for name, count in counts.items():
            assert count > self.topics[name].partitions, "Kafka only grows partitions"
            self.topics[name] = TopicState(count, self.topics[name].retention_ms)

    def set_retention(self, retention: Mapping[str, int]) -> None:
        self.calls.append(("set_retention", dict(retention)))
        for name, ms in retention.items():
            self.topics[name] = TopicState(self.topics[name].partitions, ms)

    def delete(self, names: Sequence[str]) -> None:
        self.calls.append(("delete", list(names)))
        for name in names:
            del self.topics[name]


def _event(request: str, topics: list[tuple[str, int, int]], *, delete: bool = False,
           old: list[tuple[str, int, int]] | None = None, physical_id: str | None = None
           ) -> dict[str, Any]:
    def props(items: list[tuple[str, int, int]]) -> dict[str, Any]:
        return {
            "ServiceToken": "arn:aws:lambda:eu-west-1:111122223333:function:provider",
            "Owner": "cascata-dev",
            "BootstrapServers": "boot-abc.c1.kafka-serverless.eu-west-1.amazonaws.com:9098",
            "Topics": [{"Name": n, "Partitions": str(p), "RetentionMs": str(r)}
                       for n, p, r in items],
            "DeleteTopicsOnRemoval": "true" if delete else "false",
        }

    event: dict[str, Any] = {"RequestType": request, "ResourceProperties": props(topics)}
    if old is not None:
        event["OldResourceProperties"] = props(old)
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    return event


def test_create_makes_every_declared_topic_with_its_partitions_and_retention() -> None:
    # Given an empty cluster
    cluster = InMemoryTopics()
    # When the resource is created with two topics (CloudFormation's string properties)
    response = handle_topics(_event("Create", [("raw", 4, DAY_MS), ("validated", 2, DAY_MS)]),
                             cluster)
    # Then both exist as declared, and the resource has a stable id naming its owner
    assert cluster.topics == {"raw": TopicState(4, DAY_MS), "validated": TopicState(2, DAY_MS)}
    assert response["PhysicalResourceId"] == "topics:cascata-dev"
    assert response["Data"]["Created"] == "raw,validated"


def test_create_is_idempotent_over_topics_that_already_exist() -> None:
    # Given a cluster where one topic exists as declared (a retried or adopted deployment)
    cluster = InMemoryTopics({"raw": TopicState(4, DAY_MS)})
    # When the resource is created again
    handle_topics(_event("Create", [("raw", 4, DAY_MS), ("validated", 2, DAY_MS)]), cluster)
    handle_topics(_event("Create", [("raw", 4, DAY_MS), ("validated", 2, DAY_MS)]), cluster)
    # Then only the missing topic was created, once, and nothing else was touched
    assert cluster.calls == [("create", ["validated"])]


def test_update_grows_partitions_and_sets_a_changed_retention() -> None:
    cluster = InMemoryTopics({"raw": TopicState(2, DAY_MS), "alerts": TopicState(1, DAY_MS)})
    # When the stage declares more partitions for raw and a week of retention for alerts
    handle_topics(_event("Update", [("raw", 6, DAY_MS), ("alerts", 1, 7 * DAY_MS)],
                         old=[("raw", 2, DAY_MS), ("alerts", 1, DAY_MS)],
                         physical_id="topics:cascata-dev"), cluster)
    # Then exactly those two changes are made
    assert cluster.calls == [("add_partitions", {"raw": 6}),
                             ("set_retention", {"alerts": 7 * DAY_MS})]
    assert cluster.topics["raw"] == TopicState(6, DAY_MS)
    assert cluster.topics["alerts"] == TopicState(1, 7 * DAY_MS)


def test_fewer_partitions_than_the_topic_has_fails_the_deployment_with_the_reason() -> None:
    cluster = InMemoryTopics({"raw": TopicState(6, DAY_MS)})
    with pytest.raises(TopicsError, match=r"cannot remove partitions.*raw has 6 partitions, 2"):
        handle_topics(_event("Update", [("raw", 2, DAY_MS)], old=[("raw", 6, DAY_MS)]), cluster)
    assert cluster.calls == []


def test_a_topic_no_longer_declared_is_kept_and_reported_even_when_destroying() -> None:
    cluster = InMemoryTopics({"raw": TopicState(1, DAY_MS), "old": TopicState(1, DAY_MS)})
    response = handle_topics(_event("Update", [("raw", 1, DAY_MS)], delete=True,
                                    old=[("raw", 1, DAY_MS), ("old", 1, DAY_MS)]), cluster)
    assert "old" in cluster.topics
    assert response["Data"]["Kept"] == "old"


def test_delete_keeps_the_topics_of_a_retained_stage() -> None:
    cluster = InMemoryTopics({"raw": TopicState(1, DAY_MS)})
    response = handle_topics(_event("Delete", [("raw", 1, DAY_MS)], delete=False,
                                    physical_id="topics:cascata-prod"), cluster)
    assert cluster.topics == {"raw": TopicState(1, DAY_MS)}
    assert cluster.calls == []
    assert response == {"PhysicalResourceId": "topics:cascata-prod"}


def test_delete_drops_the_existing_topics_when_the_removal_policy_is_destroy() -> None:
    # Given one declared topic already gone (deleted by hand)
    cluster = InMemoryTopics({"raw": TopicState(1, DAY_MS), "other": TopicState(1, DAY_MS)})
    handle_topics(_event("Delete", [("raw", 1, DAY_MS), ("gone", 1, DAY_MS)], delete=True),
                  cluster)
    # Then only the declared topic that exists is deleted; the undeclared one stays
    assert cluster.calls == [("delete", ["raw"])]
    assert set(cluster.topics) == {"other"}


@pytest.mark.parametrize(
    "item",
    [{"Name": "raw", "Partitions": "0", "RetentionMs": "1"},
     {"Name": "raw", "Partitions": "x", "RetentionMs": "1"},
     {"Name": "raw", "RetentionMs": "1"}],
)
def test_a_malformed_topic_is_refused_before_anything_changes(item: dict[str, str]) -> None:
    cluster = InMemoryTopics()
    event = _event("Create", [])
    event["ResourceProperties"]["Topics"] = [item]
    with pytest.raises(TopicsError):
        handle_topics(event, cluster)
    assert cluster.calls == []


def test_plan_is_pure_and_lists_each_change_once() -> None:
    declared = [TopicSpec("a", 3, DAY_MS), TopicSpec("b", 1, -1), TopicSpec("c", 2, DAY_MS)]
    existing = {"a": TopicState(1, DAY_MS), "b": TopicState(1, DAY_MS)}
    plan = plan_topics(declared, existing, removed=["a", "z"])
    assert [t.name for t in plan.create] == ["c"]
    assert plan.grow == {"a": 3}
    assert plan.retention == {"b": -1}
    assert plan.kept == ("z",)


def test_the_lambda_handler_builds_its_admin_from_the_bootstrap_property(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    cluster = InMemoryTopics()
    seen: list[tuple[str, str]] = []

    def factory(servers: str, region: str) -> InMemoryTopics:
        seen.append((servers, region))
        return cluster

    topics_handler(_event("Create", [("raw", 1, DAY_MS)]), None, admin_factory=factory)
    assert seen == [("boot-abc.c1.kafka-serverless.eu-west-1.amazonaws.com:9098", "eu-west-1")]
    assert "raw" in cluster.topics


class FakeKafkaApi:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def get_bootstrap_brokers(self, *, ClusterArn: str) -> dict[str, Any]:
        self.asked.append(ClusterArn)
        return self.answer


CLUSTER = "arn:aws:kafka:eu-west-1:111122223333:cluster/cascata-dev/0b7f9c1e-1"


def test_bootstrap_answers_the_sasl_iam_string_of_the_cluster() -> None:
    api = FakeKafkaApi({"BootstrapBrokerStringSaslIam": "boot-abc.c1:9098"})
    event = {"RequestType": "Create", "ResourceProperties": {"ClusterArn": CLUSTER}}
    response = handle_bootstrap(event, api)
    assert api.asked == [CLUSTER]
    assert response == {"PhysicalResourceId": f"bootstrap:{CLUSTER}",
                        "Data": {"BootstrapBrokers": "boot-abc.c1:9098"}}


def test_bootstrap_without_an_iam_string_fails_and_delete_calls_nothing() -> None:
    api = FakeKafkaApi({"BootstrapBrokerString": "b-1:9092"})
    with pytest.raises(TopicsError, match="no SASL/IAM bootstrap brokers"):
        handle_bootstrap({"RequestType": "Update", "PhysicalResourceId": "bootstrap:x",
                          "ResourceProperties": {"ClusterArn": CLUSTER}}, api)
    handle_bootstrap({"RequestType": "Delete", "PhysicalResourceId": "bootstrap:x",
                      "ResourceProperties": {"ClusterArn": CLUSTER}}, api)
    assert api.asked == [CLUSTER]
