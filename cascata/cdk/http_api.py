"""The serving layer: one API Gateway HTTP API in front of every declared `ApiFunction`.

Each `ApiFunction` is an `ApiHandler` (a `PipelineFunction` with error and throttle alarms);
`PipelineHttpApi` gives each declared route a Lambda proxy integration (payload format 2.0) to
its function, with IAM authorization on every route (callers sign requests with SigV4; there
is no anonymous route). The one `$default` stage throttles each route at its function's
declared rate and burst, writes JSON access logs (who called which route, the status, the
integration's error) to an encrypted log group with the stage's retention, and is alarmed on
server errors. The API's logical id is pinned: a replaced HTTP API gets a new URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import jsii
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_logs as logs
from constructs import Construct

from cascata.cdk.bindings import BoundResource
from cascata.cdk.config import AlarmThresholds
from cascata.cdk.function import FunctionRuntime, PipelineFunction, VpcPlacement
from cascata.cdk.naming import pascal, pin, stable_id
from cascata.pipeline import ApiFunction

STAGE_NAME = "$default"
"""The stage served at the API's root URL (no stage segment in the path)."""

# HTTP API access-log variables; `requestId` is required, the identity fields are what IAM
# authorization knows about the caller.
ACCESS_LOG_FORMAT: Mapping[str, str] = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "caller": "$context.identity.caller",
    "userArn": "$context.identity.userArn",
    "accountId": "$context.identity.accountId",
    "integrationStatus": "$context.integrationStatus",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "error": "$context.error.message",
}


class ApiHandler(PipelineFunction):
    """A declared API function: the function behind its routes, with its alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: ApiFunction,
        function_name: str,
        environment: Mapping[str, str],
        bindings: Mapping[str, BoundResource],
        runtime: FunctionRuntime,
        thresholds: AlarmThresholds,
        reserved_concurrency: int | None = None,
        placement: VpcPlacement | None = None,
    ) -> None:
        """`placement`: the broker's VPC, for a function that reaches Kafka (broker=msk)."""
        super().__init__(
            scope,
            construct_id,
            declared=api,
            function_name=function_name,
            environment=environment,
            bindings=bindings,
            runtime=runtime,
            reserved_concurrency=reserved_concurrency,
            placement=placement,
        )
        self.api = api
        self.acknowledge_checks(
            {
                "CKV_AWS_116": "Invoked only by API Gateway, synchronously: the caller gets "
                "the error as the HTTP response and retries; a dead-letter queue applies to "
                "asynchronous invocations and would never receive anything."
            }
        )
        if self.reserved_concurrency is None:
            self.acknowledge_checks(
                {
                    "CKV_AWS_115": "The stage reserves no concurrency for it (cdk.json "
                    "reserved_concurrency, set where the account's limit allows it): a new "
                    "or development account's limit is often too low to reserve from. Its "
                    "callers are still bounded "
                    f"by the route throttle ({api.throttle_rps} requests/s, burst "
                    f"{api.throttle_burst})."
                }
            )
        self.acknowledge_policy_findings()
        self.handler_alarms = self.create_alarms(
            self.function_alarms(
                errors=thresholds.errors,
                throttles=thresholds.throttles,
                period=Duration.minutes(thresholds.period_minutes),
                throttled_means="callers get 429/5xx responses",
            )
        )


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigateway.AccessLogFormat:
        return apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT))


class PipelineHttpApi(Construct):
    """One HTTP API: every declared route, IAM-authorized, throttled per route, logged."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_name: str,
        handlers: Sequence[ApiHandler],
        runtime: FunctionRuntime,
        thresholds: AlarmThresholds,
    ) -> None:
        super().__init__(scope, construct_id)
        if not handlers:
            raise ValueError("an HTTP API needs at least one API function")
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=api_name,
            description=f"{api_name}: " + ", ".join(h.api.name for h in handlers),
            # Every route requires a SigV4-signed request from an IAM principal allowed
            # execute-api:Invoke on it.
            default_authorizer=authorizers.HttpIamAuthorizer(),
            create_default_stage=False,
        )
        pin(self.http_api, stable_id("HttpApi"))

        self.access_log_group = logs.LogGroup(
            self,
            "AccessLogs",
            log_group_name=f"/aws/apigateway/{api_name}/access",
            retention=runtime.log_retention,
            encryption_key=runtime.encryption_key,
            removal_policy=runtime.removal_policy,
        )
        pin(self.access_log_group, stable_id("LogGroup", "http-api-access"))

        self.http_routes: dict[str, apigwv2.HttpRoute] = {}
        route_settings: dict[str, dict[str, object]] = {}
        for handler in handlers:
            integration = integrations.HttpLambdaIntegration(
                f"{pascal(handler.api.name)}Integration",
                handler.pipeline_function,
                payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            )
            for route in handler.api.routes:
                (rendered,) = self.http_api.add_routes(
                    path=route.path,
                    methods=[apigwv2.HttpMethod(route.method)],
                    integration=integration,
                )
                self.http_routes[route.key] = rendered
                route_settings[route.key] = {
                    "ThrottlingRateLimit": handler.api.throttle_rps,
                    "ThrottlingBurstLimit": handler.api.throttle_burst,
                    "DetailedMetricsEnabled": True,
                }

        self.http_stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.http_api,
            stage_name=STAGE_NAME,
            auto_deploy=True,
            access_log_settings=_AccessLogSettings(self.access_log_group),
            # Requests matching no declared route get the tightest declared limit.
            throttle=apigwv2.ThrottleSettings(
                rate_limit=min(h.api.throttle_rps for h in handlers),
                burst_limit=min(h.api.throttle_burst for h in handlers),
            ),
            detailed_metrics_enabled=True,
        )
        cfn_stage = self.http_stage.node.default_child
        if not isinstance(cfn_stage, apigwv2.CfnStage):
            raise TypeError("HttpStage no longer renders an AWS::ApiGatewayV2::Stage")
        cfn_stage.route_settings = route_settings
        # API Gateway refuses route settings for a route key that does not exist yet.
        for rendered in self.http_routes.values():
            self.http_stage.node.add_dependency(rendered)

        period = Duration.minutes(thresholds.period_minutes)
        self.api_alarms: dict[str, cloudwatch.Alarm] = {}
        action = cloudwatch_actions.SnsAction(runtime.alarm_topic)
        alarm = self.http_stage.metric_server_error(period=period, statistic="Sum").create_alarm(
            self,
            "ServerErrorsAlarm",
            threshold=thresholds.errors,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{api_name} answers 5xx: a function failed, timed out or was "
            "throttled (see the access log's integrationError)",
        )
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.api_alarms["ServerErrorsAlarm"] = alarm

    @property
    def url(self) -> str:
        url = self.http_stage.url
        if url is None:
            raise RuntimeError("the $default stage has no URL")
        return url
