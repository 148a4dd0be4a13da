"""The MSK Serverless alternative to Kinesis (`cdk synth -c broker=msk`).

A small but complete network: a VPC with isolated private subnets only (no NAT, no internet),
gateway endpoints for S3 and DynamoDB (free; the functions write quarantine objects and views,
the Kafka mappings their on-failure records), interface endpoints for Lambda and STS (Lambda's
Kafka pollers run in these subnets and must reach both) and X-Ray (the functions trace), flow
logs, and one security group shared by the cluster, the pollers and the functions, open to
itself on the IAM-auth port only. An interface endpoint for SQS or SNS is added only when
something in the subnets needs it (`KafkaCluster.reach`).

Only the functions that talk to the brokers themselves run in these subnets
(`kafka_clients`): a processor that only consumes is fed by Lambda's pollers, which reach the
cluster through the mapping's own network configuration whatever the function's placement.
CloudWatch Logs needs no endpoint: Lambda, not the function's network, delivers the logs.

Topics are named after the declared streams' physical names, so the environment variables the
functions read (`VALIDATED_STREAM`, ...) name the topic in either broker.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_msk as msk
from constructs import Construct, IConstruct

from cascata.cdk.naming import pin, stable_id
from cascata.pipeline import Pipeline, ResourceKind

CLUSTER_UUID_OUTPUT = "KafkaClusterUuid"
"""The base stack's output holding the cluster's uuid, which version stacks read."""

KAFKA_IAM_PORT = 9098
"""MSK Serverless only speaks SASL/IAM over TLS, on this port."""

_GATEWAY_ENDPOINTS = {
    ResourceKind.BUCKET: ("S3", ec2.GatewayVpcEndpointAwsService.S3),
    ResourceKind.TABLE: ("DynamoDb", ec2.GatewayVpcEndpointAwsService.DYNAMODB),
}
"""Always created: gateway endpoints cost nothing."""
_INTERFACE_ENDPOINTS = {
    ResourceKind.QUEUE: ("Sqs", ec2.InterfaceVpcEndpointAwsService.SQS),
    ResourceKind.TOPIC: ("Sns", ec2.InterfaceVpcEndpointAwsService.SNS),
}
"""Created on demand (`KafkaCluster.reach`): an interface endpoint is billed per zone and hour."""


def kafka_clients(pipeline: Pipeline) -> frozenset[str]:
    """The declared functions that talk to the Kafka brokers themselves: those that bind a
    stream, to produce to it (`write`) or to ask the cluster about it (`read`: partitions, end
    offsets). A processor's sources do not make it one: Lambda's pollers read them."""
    streams = {stream.name for stream in pipeline.streams}
    return frozenset(
        fn.name for fn in pipeline.functions if any(b.resource in streams for b in fn.bindings)
    )


class KafkaCluster(Construct):
    """An MSK Serverless cluster with IAM authentication in a private VPC."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster_name: str,
        vpc_cidr: str,
        zone_count: int,
        encryption_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster_name = cluster_name
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=log_retention,
            encryption_key=encryption_key,
            removal_policy=removal_policy,
        )
        pin(flow_log_group, stable_id("LogGroupKafkaFlowLogs"))
        self.kafka_vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(vpc_cidr),
            max_azs=zone_count,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22
                )
            ],
            # Nothing is ever attached to the default security group; restricting it would
            # add a Node.js custom-resource Lambda outside the pipeline's IAM model.
            restrict_default_security_group=False,
            flow_logs={
                "all": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )
        # The cluster is replaced if its subnets or security group are, so they are pinned too.
        pin(self.kafka_vpc, stable_id("KafkaVpc"))
        for index, subnet in enumerate(self.kafka_vpc.isolated_subnets, start=1):
            pin(subnet, stable_id("KafkaSubnet", str(index)))
        self.private_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.kafka_security_group = ec2.SecurityGroup(
            self,
            "ClientSecurityGroup",
            vpc=self.kafka_vpc,
            description="MSK Serverless brokers, Lambda Kafka pollers and the pipeline functions",
            allow_all_outbound=True,
        )
        pin(self.kafka_security_group, stable_id("KafkaSecurityGroup"))
        self.kafka_security_group.add_ingress_rule(
            self.kafka_security_group,
            ec2.Port.tcp(KAFKA_IAM_PORT),
            "Kafka over SASL/IAM between members of this group",
        )
        self.kafka_security_group.add_ingress_rule(
            self.kafka_security_group, ec2.Port.tcp(443), "VPC interface endpoints"
        )
        for name, service in _GATEWAY_ENDPOINTS.values():
            self.kafka_vpc.add_gateway_endpoint(f"{name}Endpoint", service=service)
        for name, interface in (
            ("Lambda", ec2.InterfaceVpcEndpointAwsService.LAMBDA_),
            ("Sts", ec2.InterfaceVpcEndpointAwsService.STS),
            ("XRay", ec2.InterfaceVpcEndpointAwsService.XRAY),
        ):
            self._interface_endpoint(name, interface)
        self.kafka_cluster = msk.CfnServerlessCluster(
            self,
            "Cluster",
            cluster_name=cluster_name,
            client_authentication=msk.CfnServerlessCluster.ClientAuthenticationProperty(
                sasl=msk.CfnServerlessCluster.SaslProperty(
                    iam=msk.CfnServerlessCluster.IamProperty(enabled=True)
                )
            ),
            vpc_configs=[
                msk.CfnServerlessCluster.VpcConfigProperty(
                    subnet_ids=self.kafka_vpc.select_subnets(
                        subnet_type=ec2.SubnetType.PRIVATE_ISOLATED
                    ).subnet_ids,
                    security_groups=[self.kafka_security_group.security_group_id],
                )
            ],
        )
        self.kafka_cluster.apply_removal_policy(removal_policy)
        pin(self.kafka_cluster, stable_id("KafkaCluster"))
        self.cluster_uuid = Fn.select(2, Fn.split("/", self.cluster_arn))
        """The cluster ARN's last segment (`cluster/<name>/<uuid>`), in this stack."""
        uuid_output = CfnOutput(
            self,
            "ClusterUuid",
            value=self.cluster_uuid,
            description="Segment of the kafka-cluster topic and group IAM ARNs; version "
            "stacks read it",
        )
        # A fixed name: version stacks name it in Fn::GetStackOutput.
        uuid_output.override_logical_id(CLUSTER_UUID_OUTPUT)

    def _interface_endpoint(
        self, name: str, service: ec2.InterfaceVpcEndpointAwsService
    ) -> ec2.InterfaceVpcEndpoint:
        return self.kafka_vpc.add_interface_endpoint(
            f"{name}Endpoint",
            service=service,
            subnets=self.private_subnets,
            security_groups=[self.kafka_security_group],
            private_dns_enabled=True,
            # Reachable from the shared group only (rule above), not the whole VPC CIDR.
            open=False,
        )

    def reach(self, kind: ResourceKind) -> None:
        """Make a declared resource of this kind reachable from the private subnets, for a
        function that runs there or a Kafka mapping's on-failure destination (Lambda delivers
        those from the cluster's VPC). Idempotent; streams are the brokers themselves."""
        if kind is ResourceKind.STREAM or kind in _GATEWAY_ENDPOINTS:
            return
        name, service = _INTERFACE_ENDPOINTS[kind]
        if self.kafka_vpc.node.try_find_child(f"{name}Endpoint") is None:
            self._interface_endpoint(name, service)

    @property
    def cluster_arn(self) -> str:
        return self.kafka_cluster.attr_arn

    def _resource_arn(self, kind: str, name: str, consumer: IConstruct) -> str:
        """A kafka-cluster IAM resource ARN, `<kind>/<cluster-name>/<cluster-uuid>/<name>`, as
        the template of `consumer`'s stack can render it.

        The uuid is the last segment of the cluster ARN, known only at deploy time. In the
        cluster's own stack it is cut from the ARN. Another stack (a version stack) cannot cut
        it from the imported ARN: cfn-lint rejects `Fn::GetStackOutput` as the source of
        `Fn::Split` (E1022). It reads the uuid whole from the `KafkaClusterUuid` output
        instead, and `Fn::GetStackOutput` inside `Fn::Join` is accepted by cfn-lint and by
        CloudFormation (aws-cloudformation/cfn-lint#4495 checked it with create-stack), so the
        ARN stays exact: no wildcard in the uuid segment.
        """
        stack, consumer_stack = Stack.of(self), Stack.of(consumer)
        uuid = self.cluster_uuid
        if consumer_stack is not stack:
            uuid = Fn.get_stack_output(
                stack_name=stack.stack_name,
                output_name=CLUSTER_UUID_OUTPUT,
                region=stack.region,
            )
            # Already implied by the cross-stack references to the cluster ARN; said here
            # because this reference is one CDK does not see.
            consumer_stack.add_stack_dependency(stack, "reads the Kafka cluster's uuid output")
        return (
            f"arn:{consumer_stack.partition}:kafka:{consumer_stack.region}:"
            f"{consumer_stack.account}:{kind}/{self.cluster_name}/{uuid}/{name}"
        )

    def topic_arn(self, topic: str, *, consumer: IConstruct) -> str:
        """The IAM resource of `topic`, for a grant made in `consumer`'s stack."""
        return self._resource_arn("topic", topic, consumer)

    def group_arn(self, group: str, *, consumer: IConstruct) -> str:
        """The IAM resource of a consumer group, for a grant made in `consumer`'s stack."""
        return self._resource_arn("group", group, consumer)
