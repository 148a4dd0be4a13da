"""The MSK variant's custom resources: the cluster's bootstrap brokers, and its topics as code.

MSK Serverless gives its bootstrap string only through the `GetBootstrapBrokers` API and
manages topics only through Kafka's own admin protocol (the MSK topic APIs are for provisioned
clusters), so the stack creates both at deploy time through two CloudFormation custom
resources (the CDK Provider framework calls these handlers):

- `bootstrap_handler` (outside the VPC: it calls the MSK API) answers `BootstrapBrokers`, the
  SASL/IAM bootstrap string the functions produce to;
- `topics_handler` (in the cluster's VPC, with the Kafka client layer) makes the declared
  topics exist with their partition counts and retention. It is idempotent: a topic that
  exists is grown to its declared partitions (Kafka cannot shrink one: a smaller count fails the
  deployment with the reason) and given its declared retention. When the resource is deleted
  (with its stack) its topics are deleted only if the removal policy is destroy
  (`DeleteTopicsOnRemoval`), so a retained stage keeps its data; a topic an update no longer
  declares is always kept (reported as `Kept`): dropping its data is a person's decision.

CloudFormation hands every property as a string; `TopicSpec.parse` reads them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

RETENTION_MS = "retention.ms"
ADMIN_TIMEOUT_S = 60.0


class TopicsError(RuntimeError):
    """The declared topics cannot be made so (the message says why); the deployment fails."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A declared topic: its name, partition count and retention in milliseconds."""

    name: str
    partitions: int
    retention_ms: int

    @classmethod
    def parse(cls, item: Mapping[str, Any]) -> TopicSpec:
        try:
            spec = cls(name=str(item["Name"]), partitions=int(item["Partitions"]),
                       retention_ms=int(item["RetentionMs"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TopicsError(f"a topic needs Name, Partitions and RetentionMs: {item!r} "
                              f"({exc})") from None
        if not spec.name or spec.partitions < 1 or spec.retention_ms < -1:
            raise TopicsError(f"topic {spec.name!r}: partitions must be >= 1 and retention "
                              f"a number of milliseconds (-1: unlimited)")
        return spec


@dataclass(frozen=True, slots=True)
class TopicState:
    """What the cluster has for an existing topic."""

    partitions: int
    retention_ms: int | None


@dataclass(frozen=True, slots=True)
class TopicsPlan:
    """The changes that make the cluster hold the declared topics."""

    create: tuple[TopicSpec, ...] = ()
    grow: Mapping[str, int] = field(default_factory=dict)
    """topic -> its new (larger) partition count."""
    retention: Mapping[str, int] = field(default_factory=dict)
    """topic -> its declared retention, where the cluster has another."""
    kept: tuple[str, ...] = ()
    """Topics a previous deployment declared and this one does not: kept, never deleted."""


class TopicAdmin(Protocol):
    """The admin operations the handler needs (`ConfluentTopicAdmin` over Kafka's protocol)."""

    def describe(self, names: Sequence[str]) -> dict[str, TopicState]:
        """The existing topics among `names` (absent ones are left out)."""
        ...

    def create(self, topics: Sequence[TopicSpec]) -> None: ...

    def add_partitions(self, counts: Mapping[str, int]) -> None: ...

    def set_retention(self, retention: Mapping[str, int]) -> None: ...

    def delete(self, names: Sequence[str]) -> None: ...


def parse_topics(properties: Mapping[str, Any]) -> tuple[TopicSpec, ...]:
    topics = tuple(TopicSpec.parse(item) for item in properties.get("Topics") or ())
    names = [t.name for t in topics]
    if len(set(names)) != len(names):
        raise TopicsError(f"a topic is declared twice: {sorted(names)}")
    return topics


def delete_on_removal(properties: Mapping[str, Any]) -> bool:
    return str(properties.get("DeleteTopicsOnRemoval", "false")).lower() == "true"


def plan_topics(
    declared: Sequence[TopicSpec],
    existing: Mapping[str, TopicState],
    *,
    removed: Iterable[str] = (),
) -> TopicsPlan:
    """What to change so the cluster holds `declared` (pure). `removed`: topics a previous
    deployment declared and this one does not."""
    shrunk = [
        f"{t.name} has {existing[t.name].partitions} partitions, {t.partitions} declared"
        for t in declared
        if t.name in existing and existing[t.name].partitions > t.partitions
    ]
    if shrunk:
        raise TopicsError("Kafka cannot remove partitions from a topic: " + "; ".join(shrunk)
                          + " (declare at least the current count)")
    return TopicsPlan(
        create=tuple(t for t in declared if t.name not in existing),
        grow={t.name: t.partitions for t in declared
              if t.name in existing and existing[t.name].partitions < t.partitions},
        retention={t.name: t.retention_ms for t in declared
                   if t.name in existing and existing[t.name].retention_ms != t.retention_ms},
        kept=tuple(sorted(set(removed) - {t.name for t in declared})),
    )


def apply_plan(admin: TopicAdmin, plan: TopicsPlan) -> None:
    if plan.create:
        admin.create(plan.create)
    if plan.grow:
        admin.add_partitions(plan.grow)
    if plan.retention:
        admin.set_retention(plan.retention)


def handle_topics(event: Mapping[str, Any], admin: TopicAdmin) -> dict[str, Any]:
    """A Provider framework onEvent for the topics resource, over an injected admin."""
    request = event["RequestType"]
    properties = event["ResourceProperties"]
    physical_id = event.get("PhysicalResourceId") or f"topics:{properties.get('Owner', '')}"
    declared = parse_topics(properties)
    if request == "Delete":
        if delete_on_removal(properties):
            existing = admin.describe([t.name for t in declared])
            if existing:
                admin.delete(sorted(existing))
        return {"PhysicalResourceId": physical_id}
    if request not in ("Create", "Update"):
        raise TopicsError(f"unknown request type {request!r}")
    removed: tuple[str, ...] = ()
    if request == "Update":
        removed = tuple(t.name for t in parse_topics(event.get("OldResourceProperties") or {}))
    existing = admin.describe([t.name for t in declared])
    plan = plan_topics(declared, existing, removed=removed)
    apply_plan(admin, plan)
    return {
        "PhysicalResourceId": physical_id,
        "Data": {
            "Created": ",".join(t.name for t in plan.create),
            "Grown": ",".join(sorted(plan.grow)),
            "Kept": ",".join(plan.kept),
        },
    }


class ConfluentTopicAdmin:
    """`TopicAdmin` over confluent-kafka's `AdminClient` (Kafka's admin protocol)."""

    def __init__(self, client: Any, *, timeout_s: float = ADMIN_TIMEOUT_S) -> None:
        self._client = client
        self._timeout = timeout_s

    def describe(self, names: Sequence[str]) -> dict[str, TopicState]:
        api = _admin_api()
        metadata = self._client.list_topics(timeout=self._timeout)
        present = [n for n in names if n in metadata.topics
                   and metadata.topics[n].error is None]
        if not present:
            return {}
        resources = [api.ConfigResource(api.ResourceType.TOPIC, n) for n in present]
        configs = self._client.describe_configs(resources, request_timeout=self._timeout)
        states: dict[str, TopicState] = {}
        for resource, future in configs.items():
            entries = future.result()
            entry = entries.get(RETENTION_MS)
            retention = int(entry.value) if entry is not None and entry.value is not None else None
            states[resource.name] = TopicState(
                partitions=len(metadata.topics[resource.name].partitions),
                retention_ms=retention,
            )
        return states

    def create(self, topics: Sequence[TopicSpec]) -> None:
        from confluent_kafka import KafkaError

        api = _admin_api()
        # Replication is the cluster's own (-1: the broker default); MSK Serverless sets it.
        requests = [api.NewTopic(t.name, num_partitions=t.partitions, replication_factor=-1,
                             config={RETENTION_MS: str(t.retention_ms)}) for t in topics]
        self._wait(self._client.create_topics(requests, operation_timeout=self._timeout,
                                              request_timeout=self._timeout),
                   ignore=KafkaError.TOPIC_ALREADY_EXISTS, doing="create")

    def add_partitions(self, counts: Mapping[str, int]) -> None:
        api = _admin_api()
        requests = [api.NewPartitions(name, count) for name, count in sorted(counts.items())]
        self._wait(self._client.create_partitions(requests, operation_timeout=self._timeout,
                                                  request_timeout=self._timeout),
                   doing="add partitions to")

    def set_retention(self, retention: Mapping[str, int]) -> None:
        api = _admin_api()
        resources = [
            api.ConfigResource(api.ResourceType.TOPIC, name, incremental_configs=[
                api.ConfigEntry(RETENTION_MS, str(ms),
                                incremental_operation=api.AlterConfigOpType.SET)])
            for name, ms in sorted(retention.items())
        ]
        self._wait(self._client.incremental_alter_configs(resources,
                                                          request_timeout=self._timeout),
                   doing="set the retention of")

    def delete(self, names: Sequence[str]) -> None:
        from confluent_kafka import KafkaError

        self._wait(self._client.delete_topics(list(names), operation_timeout=self._timeout,
                                              request_timeout=self._timeout),
                   ignore=KafkaError.UNKNOWN_TOPIC_OR_PART, doing="delete")

    @staticmethod
    def _wait(futures: Mapping[Any, Any], *, doing: str, ignore: int | None = None) -> None:
        failed: list[str] = []
        for key, future in futures.items():
            name = getattr(key, "name", None) or getattr(key, "topic", None) or str(key)
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - each topic's error is reported
                error = exc.args[0] if exc.args else None
                if ignore is not None and getattr(error, "code", lambda: None)() == ignore:
                    continue
                failed.append(f"{name}: {exc}")
        if failed:
            raise TopicsError(f"could not {doing} " + "; ".join(sorted(failed)))


def _admin_api() -> Any:
    """confluent-kafka's admin module (imported on use: only the layer's functions have it;
    typed loosely, as it re-exports its request types implicitly)."""
    import confluent_kafka.admin

    return confluent_kafka.admin


def admin_config(bootstrap_servers: str, *, region: str) -> dict[str, Any]:
    """AdminClient settings for MSK: TLS and IAM over SASL/OAUTHBEARER (the MSK IAM signer)."""
    from cascata_runtime.kafka_sink import msk_iam_token

    def token(_config: str) -> tuple[str, float]:
        value, expiry_ms = msk_iam_token(region)
        return value, expiry_ms / 1000.0

    return {
        "bootstrap.servers": bootstrap_servers,
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "OAUTHBEARER",
        "oauth_cb": token,
    }


def confluent_admin(bootstrap_servers: str, region: str) -> TopicAdmin:
    client = _admin_api().AdminClient(admin_config(bootstrap_servers, region=region))
    # The token callback is served from poll(): fetch the first token before any request.
    client.poll(1.0)
    return ConfluentTopicAdmin(client)


AdminFactory = Callable[[str, str], TopicAdmin]
"""(bootstrap servers, region) -> admin."""


def topics_handler(event: Mapping[str, Any], context: Any,
                   admin_factory: AdminFactory = confluent_admin) -> dict[str, Any]:
    """The topics resource's Lambda handler (`cascata_runtime.msk_resources.topics_handler`)."""
    del context
    properties = event["ResourceProperties"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    admin = admin_factory(str(properties["BootstrapServers"]), region)
    return handle_topics(event, admin)


def handle_bootstrap(event: Mapping[str, Any], kafka: Any) -> dict[str, Any]:
    """The bootstrap resource: the cluster's SASL/IAM bootstrap string, from the MSK API."""
    cluster_arn = str(event["ResourceProperties"]["ClusterArn"])
    physical_id = event.get("PhysicalResourceId") or f"bootstrap:{cluster_arn}"
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": physical_id}
    brokers = kafka.get_bootstrap_brokers(ClusterArn=cluster_arn).get(
        "BootstrapBrokerStringSaslIam")
    if not brokers:
        raise TopicsError(f"{cluster_arn} has no SASL/IAM bootstrap brokers")
    return {"PhysicalResourceId": physical_id, "Data": {"BootstrapBrokers": brokers}}


def bootstrap_handler(event: Mapping[str, Any], context: Any,
                      kafka: Any = None) -> dict[str, Any]:
    """The bootstrap resource's Lambda handler (`...msk_resources.bootstrap_handler`)."""
    del context
    if kafka is None:
        import boto3

        kafka = boto3.client("kafka")
    return handle_bootstrap(event, kafka)
