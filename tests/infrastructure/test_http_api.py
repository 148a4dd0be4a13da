"""The HTTP API: exactly the declared routes, each IAM-authorized, integrated, throttled, logged."""

from __future__ import annotations

import json
from typing import Any

from cascata.pipeline import ApiFunction

from .conftest import Synthesized


def _one(synth: Synthesized, resource_type: str) -> tuple[str, dict[str, Any]]:
    (found,) = synth.of_type(resource_type).items()
    return found[0], found[1]["Properties"]


def _route_owner(synth: Synthesized) -> dict[str, ApiFunction]:
    return {route.key: api for api in synth.pipeline.apis for route in api.routes}


def test_one_http_api_with_exactly_the_declared_routes(every_stage: Synthesized) -> None:
    # Given the declared API functions
    declared = _route_owner(every_stage)
    assert declared, "the reference pipeline declares API routes"
    # Then there is one HTTP API...
    api_id, api = _one(every_stage, "AWS::ApiGatewayV2::Api")
    assert api["ProtocolType"] == "HTTP"
    assert api["Name"] == every_stage.config.stack_name
    # ... whose routes are exactly the declared ones, on that API
    routes = every_stage.of_type("AWS::ApiGatewayV2::Route")
    assert sorted(r["Properties"]["RouteKey"] for r in routes.values()) == sorted(declared)
    assert all(r["Properties"]["ApiId"] == {"Ref": api_id} for r in routes.values())


def test_every_route_requires_iam_and_reaches_its_own_function(every_stage: Synthesized) -> None:
    declared = _route_owner(every_stage)
    integrations = every_stage.of_type("AWS::ApiGatewayV2::Integration")
    for route in every_stage.of_type("AWS::ApiGatewayV2::Route").values():
        props = route["Properties"]
        owner = declared[props["RouteKey"]]
        # Given a route, Then only SigV4-signed requests of allowed IAM principals reach it
        assert props["AuthorizationType"] == "AWS_IAM", props["RouteKey"]
        assert "AuthorizerId" not in props
        # ... and it is a Lambda proxy integration, payload 2.0, with the declaring function
        target = props["Target"]["Fn::Join"][1]
        assert target[0] == "integrations/"
        integration = integrations[target[1]["Ref"]]["Properties"]
        function_id, _ = every_stage.function(owner.name)
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert integration["PayloadFormatVersion"] == "2.0"
        assert integration["IntegrationUri"] == {"Fn::GetAtt": [function_id, "Arn"]}


def test_api_gateway_may_invoke_each_function_only_on_its_routes(dev: Synthesized) -> None:
    api_id, _ = _one(dev, "AWS::ApiGatewayV2::Api")
    permissions = [
        p["Properties"]
        for p in dev.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    for api in dev.pipeline.apis:
        function_id, _ = dev.function(api.name)
        mine = [p for p in permissions if p["FunctionName"] == {"Fn::GetAtt": [function_id, "Arn"]}]
        # One permission per route, each scoped to this API and to that route's path
        assert len(mine) == len(api.routes), api.name
        paths = []
        for permission in mine:
            assert permission["Action"] == "lambda:InvokeFunction"
            # arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/<method>/<path>
            prefix, api_ref, rest = permission["SourceArn"]["Fn::Join"][1]
            assert prefix == f"arn:aws:execute-api:{dev.config.region}:{dev.config.account}:"
            assert api_ref == {"Ref": api_id}
            assert rest.startswith("/*/*/")
            paths.append(rest.removeprefix("/*/*"))
        assert sorted(paths) == sorted(r.path for r in api.routes), api.name


def test_default_stage_throttles_each_route_as_declared(every_stage: Synthesized) -> None:
    api_id, _ = _one(every_stage, "AWS::ApiGatewayV2::Api")
    stage_id, stage = _one(every_stage, "AWS::ApiGatewayV2::Stage")
    assert stage["ApiId"] == {"Ref": api_id}
    assert stage["StageName"] == "$default"
    assert stage["AutoDeploy"] is True
    # Given each declared route, Then its stage settings carry its function's limits
    declared = _route_owner(every_stage)
    assert set(stage["RouteSettings"]) == set(declared)
    for key, owner in declared.items():
        settings = stage["RouteSettings"][key]
        assert settings["ThrottlingRateLimit"] == owner.throttle_rps, key
        assert settings["ThrottlingBurstLimit"] == owner.throttle_burst, key
    # ... the ingest route is throttled tighter than the query routes, as declared
    assert stage["RouteSettings"]["POST /events"]["ThrottlingRateLimit"] == 50
    assert stage["RouteSettings"]["GET /alerts"]["ThrottlingRateLimit"] == 100
    # ... anything else gets the tightest declared limit
    apis = every_stage.pipeline.apis
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == min(a.throttle_rps for a in apis)
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == min(
        a.throttle_burst for a in apis
    )
    # ... and the stage is created after the routes its settings name (else CloudFormation fails)
    routes = set(every_stage.of_type("AWS::ApiGatewayV2::Route"))
    assert routes <= set(every_stage.resources[stage_id]["DependsOn"])


def test_access_logs_are_json_in_an_encrypted_log_group_with_bounded_retention(
    every_stage: Synthesized,
) -> None:
    _, stage = _one(every_stage, "AWS::ApiGatewayV2::Stage")
    destination = stage["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"]
    log_group = every_stage.resources[destination[0]]
    assert (log_group["Type"], destination[1]) == ("AWS::Logs::LogGroup", "Arn")
    assert log_group["Properties"]["RetentionInDays"] == every_stage.config.log_retention_days
    assert "KmsKeyId" in log_group["Properties"]
    fields = json.loads(stage["AccessLogSettings"]["Format"])
    # The request id is required; the caller's IAM identity is what IAM authorization knows
    assert fields["requestId"] == "$context.requestId"
    assert fields["routeKey"] == "$context.routeKey"
    assert fields["status"] == "$context.status"
    assert fields["userArn"] == "$context.identity.userArn"
    assert fields["integrationError"] == "$context.integrationErrorMessage"
