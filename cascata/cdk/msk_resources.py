"""The MSK variant's deploy-time resources: the bootstrap brokers and the topics, as code.

MSK Serverless has no CloudFormation attribute for its bootstrap brokers and no topic API (the
MSK topic APIs are for provisioned clusters), so two Python custom resources on the CDK Provider
framework do it at deploy time (`cascata_runtime.msk_resources` holds their handlers):

- `KafkaBootstrap` (base stack only) calls `GetBootstrapBrokers` on the cluster; its
  `bootstrap_brokers` token is what the functions' `KAFKA_BOOTSTRAP_SERVERS` holds. Its
  function runs outside the VPC: it only needs the MSK API, which the isolated subnets do not
  reach.
- `KafkaTopics` creates the stack's topics (a version stack: its own) with their partitions and
  retention through Kafka's admin protocol, IAM-authenticated, from inside the cluster's VPC
  and security group, with the Kafka client layer. Its grants name exactly those topics.

Each custom-resource function is a `PipelineFunction` (own encrypted log group, least-privilege
role, X-Ray), and the Provider framework's own function and log group are pinned like every
other function of the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aws_cdk import Acknowledgment, CustomResource, Duration, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from cascata.cdk.access import nag_resource
from cascata.cdk.function import FunctionRuntime, HelperFunction, PipelineFunction, VpcPlacement
from cascata.cdk.naming import pin, stable_id
from cascata.cdk.scanners import acknowledge_checks

BOOTSTRAP_HANDLER = "cascata_runtime.msk_resources.bootstrap_handler"
TOPICS_HANDLER = "cascata_runtime.msk_resources.topics_handler"
TOPICS_TIMEOUT = Duration.minutes(5)

TopicArn = Callable[[str], str]
"""topic name -> its kafka-cluster IAM resource ARN (`KafkaCluster.topic_arn`)."""

TOPIC_ADMIN_ACTIONS = (
    "kafka-cluster:AlterTopic",
    "kafka-cluster:AlterTopicDynamicConfiguration",
    "kafka-cluster:CreateTopic",
    "kafka-cluster:DescribeTopic",
    "kafka-cluster:DescribeTopicDynamicConfiguration",
)
"""Create, grow (AlterTopic), read and set retention: what `ConfluentTopicAdmin` does."""

_INVOKED_BY_CLOUDFORMATION = (
    "Invoked only by the CDK Provider framework, synchronously, during a deployment: a failure "
    "fails the custom resource and CloudFormation rolls back, so a dead-letter queue (for "
    "asynchronous invocations) would never receive anything."
)
_ONCE_PER_DEPLOYMENT = (
    "Runs once per deployment that changes its custom resource; a reservation would only take "
    "concurrency from the account's unreserved pool."
)


@dataclass(frozen=True, slots=True)
class DeclaredTopic:
    """A topic the stack creates: its name, partition count and retention."""

    name: str
    partitions: int
    retention_ms: int

    def as_property(self) -> dict[str, object]:
        return {"Name": self.name, "Partitions": self.partitions,
                "RetentionMs": self.retention_ms}


def _provider(scope: Construct, *, handler: PipelineFunction, name: str,
              runtime: FunctionRuntime) -> cr.Provider:
    """A Provider framework around `handler`, its function and log group pinned."""
    log_group = logs.LogGroup(
        scope,
        "ProviderLogGroup",
        retention=runtime.log_retention,
        encryption_key=runtime.encryption_key,
        removal_policy=runtime.removal_policy,
    )
    pin(log_group, stable_id("LogGroup", f"{name}-provider"))
    provider = cr.Provider(
        scope,
        "Provider",
        on_event_handler=handler.pipeline_function,
        log_group=log_group,
        provider_function_env_encryption=runtime.encryption_key,
        provider_function_name=f"{handler.function_name}-provider",
    )
    framework = provider.node.find_child("framework-onEvent")
    assert isinstance(framework, lambda_.Function)
    pin(framework, stable_id("Function", f"{name}-provider"))
    acknowledge_checks(framework, {
        "CKV_AWS_115": _ONCE_PER_DEPLOYMENT,
        "CKV_AWS_116": _INVOKED_BY_CLOUDFORMATION,
        "CKV_AWS_117": "The Provider framework only invokes the handler function and answers "
        "CloudFormation's pre-signed S3 URL; it reaches no resource in the VPC.",
    })
    Validations.of(provider).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            reason="The CDK Provider framework's own role: CloudWatch Logs writes of its "
            "framework function, which only relays CloudFormation requests to the handler.",
        ),
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::"
            f"{nag_resource(scope, handler.pipeline_function.function_arn)}:*]",
            reason="The Provider framework invokes the handler function by ARN; CDK's "
            "grantInvoke adds its versions and aliases (`:*`), all of that one function.",
        ),
    )
    return provider


class KafkaBootstrap(Construct):
    """The cluster's SASL/IAM bootstrap string, read from the MSK API at deploy time."""

    def __init__(self, scope: Construct, construct_id: str, *, cluster_arn: str,
                 function_name: str, runtime: FunctionRuntime) -> None:
        super().__init__(scope, construct_id)
        self.handler = PipelineFunction(
            self,
            "Handler",
            declared=HelperFunction(
                name="kafka-bootstrap",
                handler=BOOTSTRAP_HANDLER,
                description="Custom resource: the MSK Serverless cluster's bootstrap brokers "
                "(GetBootstrapBrokers), for the functions' Kafka producers.",
                memory_mb=256,
                timeout_s=60,
            ),
            function_name=function_name,
            environment={},
            bindings={},
            runtime=runtime,
        )
        self.handler.pipeline_function.add_to_role_policy(
            iam.PolicyStatement(actions=["kafka:GetBootstrapBrokers"], resources=[cluster_arn])
        )
        self.handler.acknowledge_policy_findings()
        self.handler.acknowledge_checks({
            "CKV_AWS_115": _ONCE_PER_DEPLOYMENT,
            "CKV_AWS_116": _INVOKED_BY_CLOUDFORMATION,
        })
        provider = _provider(self, handler=self.handler, name="kafka-bootstrap",
                             runtime=runtime)
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type="Custom::KafkaBootstrapBrokers",
            properties={"ClusterArn": cluster_arn},
        )
        pin(self.resource, stable_id("KafkaBootstrapBrokers"))

    @property
    def bootstrap_brokers(self) -> str:
        return self.resource.get_att_string("BootstrapBrokers")


class KafkaTopics(Construct):
    """The stack's topics on the cluster, created and kept as declared at every deployment."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topics: Sequence[DeclaredTopic],
        owner: str,
        cluster_arn: str,
        topic_arn: TopicArn,
        bootstrap_brokers: str,
        function_name: str,
        runtime: FunctionRuntime,
        placement: VpcPlacement,
        delete_on_removal: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topics = tuple(topics)
        self.handler = PipelineFunction(
            self,
            "Handler",
            declared=HelperFunction(
                name="kafka-topics",
                handler=TOPICS_HANDLER,
                description="Custom resource: creates the stack's Kafka topics with their "
                "partitions and retention (Kafka admin protocol, IAM auth).",
                memory_mb=256,
                timeout_s=int(TOPICS_TIMEOUT.to_seconds()),
            ),
            function_name=function_name,
            environment={},
            bindings={},
            runtime=runtime,
            placement=placement,
        )
        fn = self.handler.pipeline_function
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=["kafka-cluster:Connect"], resources=[cluster_arn])
        )
        actions = list(TOPIC_ADMIN_ACTIONS)
        if delete_on_removal:
            actions.append("kafka-cluster:DeleteTopic")
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=sorted(actions),
                                resources=[topic_arn(t.name) for t in self.topics])
        )
        self.handler.acknowledge_policy_findings()
        self.handler.acknowledge_checks({
            "CKV_AWS_115": _ONCE_PER_DEPLOYMENT,
            "CKV_AWS_116": _INVOKED_BY_CLOUDFORMATION,
        })
        provider = _provider(self, handler=self.handler, name="kafka-topics", runtime=runtime)
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type="Custom::KafkaTopics",
            properties={
                "Owner": owner,
                "BootstrapServers": bootstrap_brokers,
                "Topics": [t.as_property() for t in self.topics],
                "DeleteTopicsOnRemoval": "true" if delete_on_removal else "false",
            },
        )
        # A new logical id would create the resource again and delete the old one, and with
        # it (removal policy destroy) the very topics the new one just adopted.
        pin(self.resource, stable_id("KafkaTopics"))
