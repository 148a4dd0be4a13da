"""The MSK variant made true: functions that know their brokers, exact Kafka grants, the Kafka
client layer, topics as code, and version stacks on Kafka.

Every assertion reads the synthesized templates (`msk`, `v2_msk`, a prod MSK synthesis with
declared partitions) and compares them with the declaration and the stage configuration.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cascata.cdk.config import ConfigError
from cascata.cdk.function import VPC_NETWORK_ACTIONS
from cascata.cdk.kafka import CLUSTER_UUID_OUTPUT, kafka_clients
from cascata.cdk.kafka_layer import (
    LOCK_FILE,
    MAKE_TARGET,
    STAMP_FILE,
    built_layer,
    download_command,
    layer_target,
)
from cascata.cdk.msk_resources import TOPIC_ADMIN_ACTIONS
from cascata.pipeline import Processor, ResourceKind
from payments.pipeline import PIPELINE

from .conftest import ACCOUNT, REGION, REPLAY_SINCE_EPOCH, ROOT, Synthesized, synthesize
from .variants import MSK_ENDPOINTS

KAFKA_VARIABLES = ("CASCATA_BROKER", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_AUTH")


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def _kafka_resource(resource: Any) -> tuple[str, str]:
    """(`topic` | `group`, name) of a kafka-cluster ARN as rendered, or (`cluster`, ref)."""
    if isinstance(resource, dict) and "Fn::Join" in resource:
        parts = resource["Fn::Join"][1]
        (head,) = [p for p in parts if isinstance(p, str) and ":kafka:" in p]
        kind = head.rsplit(":", 1)[1].split("/", 1)[0]
        assert isinstance(parts[-1], str), parts
        return kind, parts[-1].lstrip("/")
    assert "*" not in json.dumps(resource), resource
    return "cluster", json.dumps(resource, sort_keys=True)


def _kafka_grants(statements: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(kind, name) -> the kafka-cluster actions granted on it."""
    grants: dict[tuple[str, str], set[str]] = {}
    for statement in statements:
        actions = [a for a in _actions(statement) if a.startswith("kafka-cluster:")]
        if not actions:
            continue
        assert statement["Effect"] == "Allow"
        for resource in _resources(statement):
            grants.setdefault(_kafka_resource(resource), set()).update(actions)
    return grants


def _cluster_ref(synth: Synthesized) -> str:
    (cluster_id,) = synth.of_type("AWS::MSK::ServerlessCluster")
    return json.dumps({"Fn::GetAtt": [cluster_id, "Arn"]}, sort_keys=True)


def _environment(synth: Synthesized, function_id: str) -> dict[str, Any]:
    variables: dict[str, Any] = synth.resources[function_id]["Properties"]["Environment"][
        "Variables"
    ]
    return variables


def _reaches_kafka(synth: Synthesized, name: str) -> bool:
    return any(
        synth.pipeline.resource(b.resource).kind is ResourceKind.STREAM
        for b in synth.pipeline.function(name).bindings
    )


def _one(synth: Synthesized, resource_type: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, resource),) = synth.of_type(resource_type).items()
    return logical_id, resource


def test_functions_that_reach_kafka_know_the_brokers_and_carry_the_client_layer(
    msk: Synthesized,
) -> None:
    (layer_id, layer) = _one(msk, "AWS::Lambda::LayerVersion")
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    bootstrap_id, _ = _one(msk, "Custom::KafkaBootstrapBrokers")
    reaching = [f.name for f in msk.pipeline.functions if _reaches_kafka(msk, f.name)]
    # The writers of every stream, and windows-close (it reads offsets of its input)
    assert set(reaching) >= {"validate", "postings", "fraud-detect", "windows", "ingest",
                             "windows-close"}
    for fn in msk.pipeline.functions:
        function_id, function = msk.function(fn.name)
        props = function["Properties"]
        env = _environment(msk, function_id)
        if fn.name in reaching:
            # Given a function that binds a stream: the variables its Kafka sink reads
            assert env["CASCATA_BROKER"] == "msk", fn.name
            assert env["KAFKA_AUTH"] == "iam", fn.name
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == {
                "Fn::GetAtt": [bootstrap_id, "BootstrapBrokers"]
            }
            # ... the layer with confluent-kafka and the signer, and the brokers' network
            assert {"Ref": layer_id} in props["Layers"], fn.name
            assert "VpcConfig" in props, fn.name
        else:
            assert not set(KAFKA_VARIABLES) & set(env), fn.name
            assert {"Ref": layer_id} not in props["Layers"], fn.name
            assert "VpcConfig" not in props, fn.name
    assert set(reaching) == kafka_clients(msk.pipeline)


def test_a_function_that_only_reads_a_stream_still_talks_to_kafka() -> None:
    # Given windows-close without the activity stream it emits to: it still asks the cluster
    # where its bound input (payments-validated) ends, so it is still a Kafka client
    only_reads = replace(
        PIPELINE,
        scheduled=tuple(
            replace(s, bindings=tuple(b for b in s.bindings if b.access == "read"))
            for s in PIPELINE.scheduled
        ),
    )
    (close,) = only_reads.scheduled
    assert [b.resource for b in close.bindings] == ["payments-validated"]
    assert "windows-close" in kafka_clients(only_reads)
    # ... while a processor that only consumes (notify: its source, no stream bound) is not
    assert "notify" not in kafka_clients(only_reads)
    assert PIPELINE.processor("notify").sources


def test_the_windows_functions_may_ask_the_cluster_about_their_source(msk: Synthesized) -> None:
    """windows (partition count: a Metadata request) and windows-close (end offsets: ListOffsets)
    ask the cluster about payments-validated through an AdminClient. Kafka authorizes both
    requests with DESCRIBE on the topic, which MSK's IAM calls kafka-cluster:DescribeTopic, and
    every request needs kafka-cluster:Connect on the cluster."""
    layer_id, _ = _one(msk, "AWS::Lambda::LayerVersion")
    bootstrap_id, _ = _one(msk, "Custom::KafkaBootstrapBrokers")
    (sg_id,) = msk.of_type("AWS::EC2::SecurityGroup")
    source = msk.physical("payments-validated")
    # windows is fed from it; windows-close binds it to read it
    assert [s.stream for s in msk.pipeline.processor("windows").sources] == [
        "payments-validated"]
    assert ("payments-validated", "read") in {
        (b.resource, b.access) for b in msk.pipeline.function("windows-close").bindings}
    for name in ("windows", "windows-close"):
        grants = _kafka_grants(msk.policy_statements(name))
        assert "kafka-cluster:Connect" in grants[("cluster", _cluster_ref(msk))], name
        assert "kafka-cluster:DescribeTopic" in grants[("topic", source)], name
        # ... from inside the cluster's VPC and security group, with the brokers' address
        # and the Kafka client layer
        function_id, function = msk.function(name)
        props = function["Properties"]
        assert props["VpcConfig"]["SecurityGroupIds"] == [{"Fn::GetAtt": [sg_id, "GroupId"]}]
        assert {"Ref": layer_id} in props["Layers"], name
        env = _environment(msk, function_id)
        assert env["CASCATA_BROKER"] == "msk" and env["KAFKA_AUTH"] == "iam", name
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == {"Fn::GetAtt": [bootstrap_id,
                                                                 "BootstrapBrokers"]}


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_kinesis_stages_have_no_kafka_layer_variables_or_topics(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    assert not synth.of_type("AWS::Lambda::LayerVersion")
    assert not synth.of_type("Custom::KafkaTopics")
    assert not synth.of_type("Custom::KafkaBootstrapBrokers")
    for function_id in synth.of_type("AWS::Lambda::Function"):
        env = synth.resources[function_id]["Properties"].get("Environment", {})
        assert not set(KAFKA_VARIABLES) & set(env.get("Variables", {})), function_id


def test_kafka_grants_name_exactly_the_topics_and_groups_each_function_uses(
    msk: Synthesized,
) -> None:
    pipeline = msk.pipeline
    cluster = ("cluster", _cluster_ref(msk))
    for fn in pipeline.functions:
        grants = _kafka_grants(msk.policy_statements(fn.name))
        bound = {b.resource: b.access for b in fn.bindings
                 if pipeline.resource(b.resource).kind is ResourceKind.STREAM}
        sources = [s.stream for s in fn.sources] if isinstance(fn, Processor) else []
        writes = {msk.physical(s) for s, access in bound.items() if access != "read"}
        reads = {msk.physical(s) for s, access in bound.items() if access != "write"}
        reads |= {msk.physical(s) for s in sources}
        topics = {name: actions for (kind, name), actions in grants.items() if kind == "topic"}
        # Exactly the topics it writes, reads or is fed from: nothing else, no wildcard
        assert set(topics) == writes | reads, fn.name
        for topic, actions in topics.items():
            expected = {"kafka-cluster:DescribeTopic"}
            if topic in writes:
                expected.add("kafka-cluster:WriteData")
            if topic in reads:
                expected.add("kafka-cluster:ReadData")
            assert actions == expected, (fn.name, topic)
        if not topics:
            assert grants == {}, fn.name
            continue
        # The cluster: connect; idempotent writes (a cluster-level action) only for writers
        cluster_actions = {"kafka-cluster:Connect"}
        if writes:
            cluster_actions.add("kafka-cluster:WriteDataIdempotently")
        if sources:
            cluster_actions.add("kafka-cluster:DescribeClusterDynamicConfiguration")
        assert grants[cluster] == cluster_actions, fn.name
        # The pollers' consumer groups: one per mapping, its own
        groups = {name: actions for (kind, name), actions in grants.items() if kind == "group"}
        expected_groups = {
            m["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
            for m in (msk.mappings(fn.name).values() if sources else [])
        }
        assert set(groups) == expected_groups, fn.name
        assert all(a == {"kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"}
                   for a in groups.values())
        assert set(grants) == {cluster} | {("topic", t) for t in topics} | {
            ("group", g) for g in groups
        }


def _topics_resource(synth: Synthesized) -> dict[str, Any]:
    _, resource = _one(synth, "Custom::KafkaTopics")
    properties: dict[str, Any] = resource["Properties"]
    return properties


def test_the_topics_resource_declares_every_stream_with_partitions_and_retention(
    msk: Synthesized,
) -> None:
    properties = _topics_resource(msk)
    retention_ms = msk.config.stream_retention_hours * 3600 * 1000
    assert properties["Topics"] == [
        {"Name": msk.physical(s.name), "Partitions": msk.config.shard_counts[s.name],
         "RetentionMs": retention_ms}
        for s in msk.pipeline.streams
    ]
    # dev destroys its data with the stack; the topics go with it
    assert properties["DeleteTopicsOnRemoval"] == "true"
    bootstrap_id, _ = _one(msk, "Custom::KafkaBootstrapBrokers")
    assert properties["BootstrapServers"] == {"Fn::GetAtt": [bootstrap_id, "BootstrapBrokers"]}
    # Pinned: a replaced topics resource would delete what its successor adopted
    assert "KafkaTopics" in msk.resources
    # Every processor (and so its mappings) waits for its topics
    for proc in msk.pipeline.processors:
        _, function = msk.function(proc.name)
        assert "KafkaTopics" in function.get("DependsOn", []), proc.name


def test_the_custom_resource_functions_are_placed_and_granted_exactly(msk: Synthesized) -> None:
    layer_id, _ = _one(msk, "AWS::Lambda::LayerVersion")
    (sg_id,) = msk.of_type("AWS::EC2::SecurityGroup")
    topics_id, topics_fn = msk.function_by_name("cascata-dev-kafka-topics")
    props = topics_fn["Properties"]
    assert props["Handler"] == "cascata_runtime.msk_resources.topics_handler"
    # In the cluster's VPC and security group, with the Kafka client layer
    assert props["VpcConfig"]["SecurityGroupIds"] == [{"Fn::GetAtt": [sg_id, "GroupId"]}]
    assert {"Ref": layer_id} in props["Layers"]
    grants = _kafka_grants(msk.policy_statements_of(topics_id))
    declared = {msk.physical(s.name) for s in msk.pipeline.streams}
    assert grants.pop(("cluster", _cluster_ref(msk))) == {"kafka-cluster:Connect"}
    assert {name for _, name in grants} == declared
    for (kind, _), actions in grants.items():
        assert kind == "topic"
        assert actions == {*TOPIC_ADMIN_ACTIONS, "kafka-cluster:DeleteTopic"}

    bootstrap_id, bootstrap_fn = msk.function_by_name("cascata-dev-kafka-bootstrap")
    assert bootstrap_fn["Properties"]["Handler"] == (
        "cascata_runtime.msk_resources.bootstrap_handler")
    assert "VpcConfig" not in bootstrap_fn["Properties"]
    (cluster_id,) = msk.of_type("AWS::MSK::ServerlessCluster")
    msk_statements = [s for s in msk.policy_statements_of(bootstrap_id)
                      if any(a.startswith("kafka") for a in _actions(s))]
    assert msk_statements == [{"Action": "kafka:GetBootstrapBrokers", "Effect": "Allow",
                               "Resource": {"Fn::GetAtt": [cluster_id, "Arn"]}}]


@pytest.fixture(scope="module")
def msk_prod_partitions(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    kafka = {"vpc_cidr": "10.42.0.0/16", "zone_count": 3, "min_pollers": 1, "max_pollers": 10,
             "partitions": {"payments-raw": 12}, "default_partitions": 6}
    return synthesize(tmp_path_factory.mktemp("msk-prod"), stage="prod", broker="msk",
                      kafka=json.dumps(kafka))


def test_declared_partitions_and_a_retained_stage_keep_their_topics(
    msk_prod_partitions: Synthesized,
) -> None:
    synth = msk_prod_partitions
    properties = _topics_resource(synth)
    partitions = {t["Name"]: t["Partitions"] for t in properties["Topics"]}
    # kafka.partitions wins; prod declares no shard counts, so the rest get the default
    assert partitions == {
        synth.physical(s.name): 12 if s.name == "payments-raw" else 6
        for s in synth.pipeline.streams
    }
    assert {t["RetentionMs"] for t in properties["Topics"]} == {168 * 3600 * 1000}
    # prod retains its data: the topics outlive the stack, and may not be deleted by it
    assert properties["DeleteTopicsOnRemoval"] == "false"
    topics_id, _ = synth.function_by_name("cascata-prod-kafka-topics")
    actions = {a for s in synth.policy_statements_of(topics_id) for a in _actions(s)}
    assert "kafka-cluster:DeleteTopic" not in actions
    assert set(TOPIC_ADMIN_ACTIONS) <= actions


def test_a_version_on_kafka_has_its_own_topics_groups_and_producers(
    v2_msk: Synthesized,
) -> None:
    synth, base = v2_msk, v2_msk.base
    assert base is not None
    # The cluster, its network and the bootstrap lookup stay in the base stack
    for resource_type in ("AWS::MSK::ServerlessCluster", "AWS::EC2::VPC",
                          "Custom::KafkaBootstrapBrokers"):
        assert not synth.of_type(resource_type), resource_type
    # Its own topics: the derived streams, versioned, created by its own topics resource
    properties = _topics_resource(synth)
    owned = [s for s in synth.pipeline.streams if synth.pipeline.owns(s.name)]
    assert {s.name for s in owned} == {s.name for s in synth.pipeline.streams if not s.origin}
    assert [t["Name"] for t in properties["Topics"]] == [
        f"cascata-dev-{s.name}-v2" for s in owned
    ]
    assert properties["Owner"] == "cascata-dev-v2"
    assert "Fn::GetStackOutput" in properties["BootstrapServers"]
    # Consumer groups of its own, distinct from every live group
    base_groups = {m["Properties"]["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
                   for m in base.of_type("AWS::Lambda::EventSourceMapping").values()}
    for proc in synth.pipeline.processors:
        for source in proc.sources:
            mapping = synth.mapping(proc.name, source.stream)
            group = mapping["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
            assert group not in base_groups and "-v2" in group, group
            (topic,) = mapping["Topics"]
            if synth.pipeline.resource(source.stream).origin:  # type: ignore[union-attr]
                # The live origin topic, from replaySince (Lambda's AT_TIMESTAMP for Kafka)
                assert topic == f"cascata-dev-{source.stream}"
                assert mapping["StartingPosition"] == "AT_TIMESTAMP"
                assert mapping["StartingPositionTimestamp"] == REPLAY_SINCE_EPOCH
            else:
                assert topic == f"cascata-dev-{source.stream}-v2"
                assert mapping["StartingPosition"] == "TRIM_HORIZON"
    # Its functions produce to its own topics only
    for fn in synth.pipeline.functions:
        grants = _kafka_grants(synth.policy_statements(fn.name))
        written = {name for (kind, name), actions in grants.items()
                   if kind == "topic" and "kafka-cluster:WriteData" in actions}
        assert written == {f"cascata-dev-{s}-v2" for s in synth.pipeline.outputs(fn.name)}
        function_id, _ = synth.function(fn.name)
        env = _environment(synth, function_id)
        if _reaches_kafka(synth, fn.name):
            assert env["CASCATA_BROKER"] == "msk"
            assert "Fn::GetStackOutput" in env["KAFKA_BOOTSTRAP_SERVERS"]


CLUSTER_UUID = {"Fn::GetStackOutput": {
    "StackName": "cascata-dev", "OutputName": CLUSTER_UUID_OUTPUT, "Region": REGION}}
"""How a version stack names the live cluster's uuid: the base stack's own output, whole."""


def _kafka_names(synth: Synthesized) -> dict[tuple[str, str], set[str]]:
    """(`topic` | `group`, name) -> actions, over every policy of the stack, each ARN checked
    to be exact: the live cluster's name and uuid, no wildcard."""
    granted: dict[tuple[str, str], set[str]] = {}
    for policy in synth.of_type("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = {a for a in _actions(statement) if a.startswith("kafka-cluster:")}
            for resource in _resources(statement) if actions else []:
                if "Fn::GetStackOutput" in resource:  # the cluster ARN (Connect, ...)
                    assert "KafkaClusterArn" in resource["Fn::GetStackOutput"]["OutputName"]
                    continue
                delimiter, (head, uuid, tail) = resource["Fn::Join"]
                assert delimiter == "" and uuid == CLUSTER_UUID, resource
                kind = head.rsplit(":", 1)[1].split("/", 1)[0]
                assert kind in ("topic", "group"), head
                assert head == f"arn:aws:kafka:{REGION}:{ACCOUNT}:{kind}/cascata-dev/", head
                assert tail.startswith("/") and "*" not in tail, tail
                granted.setdefault((kind, tail[1:]), set()).update(actions)
    return granted


def test_a_versions_kafka_grants_name_its_own_topics_and_groups_and_the_origins_it_reads(
    v2_msk: Synthesized,
) -> None:
    synth = v2_msk
    granted = _kafka_names(synth)
    mappings = [m["Properties"] for m in synth.of_type("AWS::Lambda::EventSourceMapping").values()]
    # Given the version's own topics (its derived streams, -v2), the consumer groups of its
    # mappings, and the live origin topics its mappings and functions read
    own = {synth.physical(s.name) for s in synth.pipeline.streams if synth.pipeline.owns(s.name)}
    groups = {m["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"] for m in mappings}
    read = {t for m in mappings for t in m["Topics"]} | {
        synth.physical(b.resource)
        for fn in synth.pipeline.functions for b in fn.bindings
        if synth.pipeline.resource(b.resource).kind is ResourceKind.STREAM
    }
    origins = read - own
    assert origins == {f"cascata-dev-{s.name}" for s in synth.pipeline.streams if s.origin}
    assert all(name.endswith("-v2") for name in own) and all("-v2" in g for g in groups)
    # Then its IAM names exactly those topics and groups, on the live cluster
    assert {name for kind, name in granted if kind == "topic"} == own | origins
    assert {name for kind, name in granted if kind == "group"} == groups
    # ... and the live origin topics are only read, never written or administered
    for origin in origins:
        assert granted[("topic", origin)] == {"kafka-cluster:DescribeTopic",
                                              "kafka-cluster:ReadData"}, origin


def test_the_live_stack_publishes_the_cluster_uuid_a_version_reads(
    msk: Synthesized, v2_msk: Synthesized
) -> None:
    assert v2_msk.base is not None
    (cluster_id,) = msk.of_type("AWS::MSK::ServerlessCluster")
    # The uuid is cut from the cluster ARN (`cluster/<name>/<uuid>`) in the live stack itself,
    # present whether or not a version is synthesized next to it
    for base in (msk, v2_msk.base):
        assert base.json["Outputs"][CLUSTER_UUID_OUTPUT]["Value"] == {
            "Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": [cluster_id, "Arn"]}]}]
        }
    # ... the version leaves the live stack's resources as they are
    assert v2_msk.base.resources == msk.resources
    # ... and never splits an imported value (cfn-lint E1022): it joins the uuid whole
    assert "Fn::Split" not in json.dumps(v2_msk.json)
    assert v2_msk.stack.dependencies == [v2_msk.base.stack]


ENDPOINT_SERVICE = {
    "dynamodb": "dynamodb",
    "s3": "s3",
    "sqs": "sqs",
    "sns": "sns",
    "sts": "sts",
    "xray": "xray",
    "lambda": "lambda",
    "kms": "kms",
    "kinesis": "kinesis-streams",
    "firehose": "kinesis-firehose",
    "states": "states",
    "ssm": "ssm",
    "secretsmanager": "secretsmanager",
}
"""IAM service prefix -> the VPC endpoint service that serves it (com.amazonaws.<region>.<x>)."""
POLLER_MSK_ACTIONS = {"kafka:DescribeCluster", "kafka:GetBootstrapBrokers",
                      "kafka:ListScramSecrets"}
"""MSK API actions ManagedKafkaEventSource grants for Lambda's pollers; the functions read
their brokers from KAFKA_BOOTSTRAP_SERVERS and never call the MSK API."""


@pytest.fixture(scope="module")
def msk_endpoints(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("msk-endpoints"), pipeline=MSK_ENDPOINTS,
                      stage="dev", broker="msk")


def _endpoint_services(synth: Synthesized) -> dict[str, str]:
    """The VPC's endpoints: service (`s3`, `sqs`, ...) -> Gateway | Interface."""
    services: dict[str, str] = {}
    for endpoint in synth.of_type("AWS::EC2::VPCEndpoint").values():
        props = endpoint["Properties"]
        name = props["ServiceName"]
        if isinstance(name, dict):
            name = "".join(p for p in name["Fn::Join"][1] if isinstance(p, str))
        services[name.rsplit(".", 1)[1]] = props["VpcEndpointType"]
        if props["VpcEndpointType"] == "Interface":
            # Reachable by the functions' own names for the service, from their group
            assert props["PrivateDnsEnabled"] is True
            assert len(props["SecurityGroupIds"]) == 1
    return services


def _service_of(synth: Synthesized, arn: Any) -> str:
    """The IAM service prefix of a resource of the template named by Ref or GetAtt."""
    logical_id = arn["Ref"] if "Ref" in arn else arn["Fn::GetAtt"][0]
    return {"AWS::S3::Bucket": "s3", "AWS::SQS::Queue": "sqs",
            "AWS::SNS::Topic": "sns"}[synth.resources[logical_id]["Type"]]


@pytest.mark.parametrize("variant", ["msk", "msk_endpoints"])
def test_every_service_a_function_in_the_vpc_is_granted_is_reachable_from_it(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    endpoints = _endpoint_services(synth)
    (cluster,) = synth.of_type("AWS::MSK::ServerlessCluster").values()
    (cluster_groups,) = [c["SecurityGroups"] for c in cluster["Properties"]["VpcConfigs"]]
    # What Lambda sends for a function from its own network: a run's failure to the
    # asynchronous-invocation destination (windows-close's dead-letter queue)
    async_destinations = {
        json.dumps(c["Properties"]["FunctionName"]):
            json.dumps(c["Properties"]["DestinationConfig"]["OnFailure"]["Destination"])
        for c in synth.of_type("AWS::Lambda::EventInvokeConfig").values()
    }
    in_vpc = {k: f for k, f in synth.of_type("AWS::Lambda::Function").items()
              if "VpcConfig" in f["Properties"]}
    # Given every function in the cluster's subnets
    for function_id, function in in_vpc.items():
        fn = function["Properties"]["FunctionName"]
        assert function["Properties"]["VpcConfig"]["SecurityGroupIds"] == cluster_groups, fn
        has_mapping = any(m["Properties"]["FunctionName"] == {"Ref": function_id}
                          for m in synth.of_type("AWS::Lambda::EventSourceMapping").values())
        for statement in synth.policy_statements_of(function_id):
            if [json.dumps(r) for r in _resources(statement)] == [
                async_destinations.get(json.dumps({"Ref": function_id}))
            ]:
                continue  # sent by Lambda, not from the subnets
            for action in _actions(statement):
                prefix = action.split(":", 1)[0]
                if prefix == "logs":
                    continue  # Lambda delivers the function's logs, not its network
                if prefix == "ec2":
                    assert action in VPC_NETWORK_ACTIONS, (fn, action)
                    continue  # Lambda manages the function's interfaces with them
                if prefix == "kafka-cluster":
                    continue  # the brokers: same subnets, same security group (above)
                if prefix == "kafka":
                    assert has_mapping and action in POLLER_MSK_ACTIONS, (fn, action)
                    continue
                if prefix == "kms":
                    # Only through the service that encrypts the data, which calls KMS itself
                    assert "kms:ViaService" in statement["Condition"]["StringEquals"], fn
                    continue
                # Then every other service it may call has an endpoint in its VPC
                assert ENDPOINT_SERVICE[prefix] in endpoints, (fn, action)
    # ... which are the Kafka clients and the topics handler only: notify (SNS) and query
    # (DynamoDB) stay outside, where no endpoint is needed
    names = {f["Properties"]["FunctionName"] for f in in_vpc.values()}
    assert names == {synth.physical(n) for n in kafka_clients(synth.pipeline)} | {
        "cascata-dev-kafka-topics"}
    assert synth.physical("notify") not in names and synth.physical("query") not in names


@pytest.mark.parametrize("variant", ["msk", "msk_endpoints"])
def test_every_kafka_mapping_can_deliver_its_failures_from_the_cluster_vpc(
    variant: str, request: pytest.FixtureRequest
) -> None:
    # Lambda delivers a Kafka mapping's on-failure records from the cluster's VPC, which must
    # have an endpoint for the destination's service (Lambda developer guide, "Capturing
    # discarded batches for an Amazon MSK event source")
    synth: Synthesized = request.getfixturevalue(variant)
    endpoints = _endpoint_services(synth)
    destinations = {
        _service_of(synth, m["Properties"]["DestinationConfig"]["OnFailure"]["Destination"])
        for m in synth.of_type("AWS::Lambda::EventSourceMapping").values()
    }
    assert destinations <= set(endpoints)
    if variant == "msk_endpoints":
        # notify's failures go to SQS; fraud-detect publishes to SNS from the subnets: each
        # needed its interface endpoint, and no other interface endpoint was added
        assert destinations == {"s3", "sqs"}
        assert endpoints == {"s3": "Gateway", "dynamodb": "Gateway", "lambda": "Interface",
                             "sts": "Interface", "xray": "Interface", "sqs": "Interface",
                             "sns": "Interface"}
    else:
        # The reference pipeline needs no interface endpoint beyond the pollers' and X-Ray
        assert endpoints == {"s3": "Gateway", "dynamodb": "Gateway", "lambda": "Interface",
                             "sts": "Interface", "xray": "Interface"}


def test_a_missing_or_stale_kafka_layer_is_one_line_naming_the_make_target(
    tmp_path: Path,
) -> None:
    (tmp_path / LOCK_FILE).write_bytes((ROOT / LOCK_FILE).read_bytes())
    with pytest.raises(ConfigError, match=f"not built: run `{MAKE_TARGET}`") as missing:
        built_layer(tmp_path)
    assert "\n" not in str(missing.value)
    (tmp_path / "build" / "kafka-layer" / "python").mkdir(parents=True)
    stale = {**layer_target(tmp_path).as_json(), "python": "3.11"}
    (tmp_path / STAMP_FILE).write_text(json.dumps(stale))
    with pytest.raises(ConfigError, match=f"another Lambda runtime or lock: run `{MAKE_TARGET}`"):
        built_layer(tmp_path)
    (tmp_path / STAMP_FILE).write_text(json.dumps(layer_target(tmp_path).as_json()))
    assert built_layer(tmp_path) == tmp_path / "build" / "kafka-layer"


def test_the_layer_is_downloaded_as_binaries_for_the_functions_platform(tmp_path: Path) -> None:
    target = layer_target(ROOT)
    assert (target.python, target.architecture) == ("3.12", "arm64")
    command = download_command(target=target, lock=ROOT / LOCK_FILE, into=tmp_path)
    pairs = list(itertools.pairwise(command))
    assert "--only-binary=:all:" in command and "--require-hashes" in command
    assert ("--python-version", "3.12") in pairs and ("--implementation", "cp") in pairs
    assert ("--platform", "manylinux_2_28_aarch64") in pairs
    assert ("-r", str(ROOT / LOCK_FILE)) in pairs
