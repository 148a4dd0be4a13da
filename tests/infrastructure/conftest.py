"""Synthesis shared by the infrastructure tests.

Every variant is synthesized once per session through `cascata.cdk.build` (and `build_version` when
the context names a version), the same composition `app.py` uses, with the context from
`cdk.json` plus the test's overrides, cdk-nag attached (a finding fails the synthesis, hence
the fixture) and a fixed, non-default account and region so nothing hard-codes the
placeholders. The first synthesis pays for starting jsii (~3 s).

A version variant (`v2_stream`, `v2_since`, `v2_archive`, `v2_msk`) is the version stack
`cascata-<stage>-v2`, synthesized in the same app as its base stack (`.base`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before aws_cdk starts jsii: Node 20 is end of life for jsii, which says so at length.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from cascata.cdk import (
    PipelineStack,
    ReplayConfig,
    StageConfig,
    build,
    build_version,
    replay_config,
    stage_config,
)
from cascata.pipeline import Pipeline
from payments.pipeline import PIPELINE

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "111122223333"
REGION = "eu-west-1"
CDK_CONTEXT: Mapping[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]


@dataclass(frozen=True)
class Synthesized:
    """One synthesized stage: its config, template (as assertions and as JSON), assembly."""

    config: StageConfig
    stack: PipelineStack
    template: Template
    json: dict[str, Any]
    outdir: Path
    pipeline: Pipeline
    base: Synthesized | None = None
    """For a version stack: its base stack, synthesized in the same app."""

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.json["Resources"]
        return resources

    @property
    def template_file(self) -> Path:
        return self.outdir / f"{self.stack.stack_name}.template.json"

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == resource_type}

    def logical_id(self, resource_type: str, prop: str, value: object) -> str:
        """The one resource of a type whose property equals `value`."""
        found = [
            k
            for k, r in self.of_type(resource_type).items()
            if r.get("Properties", {}).get(prop) == value
        ]
        assert len(found) == 1, f"expected one {resource_type} with {prop}={value!r}: {found}"
        return found[0]

    def function(self, name: str) -> tuple[str, dict[str, Any]]:
        """The Lambda function of a declared function of any kind, by its physical name."""
        physical = self.pipeline.physical_name(
            name, stage=self.config.stage, account=ACCOUNT, region=REGION
        )
        logical_id = self.logical_id("AWS::Lambda::Function", "FunctionName", physical)
        return logical_id, self.resources[logical_id]

    def function_by_name(self, physical: str) -> tuple[str, dict[str, Any]]:
        """Any Lambda function of the stack (declared or not) by its physical name."""
        logical_id = self.logical_id("AWS::Lambda::Function", "FunctionName", physical)
        return logical_id, self.resources[logical_id]

    def policy_statements_of(self, function_id: str) -> list[dict[str, Any]]:
        """Every statement of the identity policies of a function's role, by function id."""
        return self.role_statements(
            self.resources[function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
        )

    def mappings(self, processor: str) -> dict[str, dict[str, Any]]:
        """The processor's event source mappings (properties), by logical id."""
        function_id, _ = self.function(processor)
        return {
            k: r["Properties"]
            for k, r in self.of_type("AWS::Lambda::EventSourceMapping").items()
            if r["Properties"]["FunctionName"] == {"Ref": function_id}
        }

    def mapping(self, processor: str, stream: str | None = None) -> dict[str, Any]:
        """The one mapping of `processor` reading `stream` (default: its first source)."""
        declared = self.pipeline.processor(processor)
        stream = stream or declared.sources[0].stream
        found = [m for m in self.mappings(processor).values() if self.reads(m) == stream]
        assert len(found) == 1, f"{processor}: expected one mapping of {stream}, got {found}"
        return found[0]

    def reads(self, mapping: dict[str, Any]) -> str:
        """The declared stream a mapping reads: its Kafka topic or its Kinesis stream (in this
        stack, or a shared one named by its ARN)."""
        names = {self.physical(s.name): s.name for s in self.pipeline.streams}
        if "Topics" in mapping:
            (topic,) = mapping["Topics"]
            return names[topic]
        arn = mapping["EventSourceArn"]
        if isinstance(arn, str):
            return names[arn.rsplit("/", 1)[1]]
        stream_id = arn["Fn::GetAtt"][0]
        return names[self.resources[stream_id]["Properties"]["Name"]]

    def arn(self, service: str, resource: str) -> str:
        """The literal ARN a version stack uses for a shared resource of the base stack."""
        name = self.physical(resource)
        if service == "s3":
            return f"arn:aws:s3:::{name}"
        prefix = f"arn:aws:{service}:{self.config.region}:{self.config.account}"
        kind = {"kinesis": "stream/", "dynamodb": "table/"}.get(service, "")
        return f"{prefix}:{kind}{name}"

    def role_statements(self, role_id: str) -> list[dict[str, Any]]:
        """Every statement of the identity policies attached to a role."""
        return [
            statement
            for policy in self.of_type("AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]

    def policy_statements(self, function: str) -> list[dict[str, Any]]:
        """Every statement of the identity policies attached to the function's role."""
        _, rendered = self.function(function)
        return self.role_statements(rendered["Properties"]["Role"]["Fn::GetAtt"][0])

    def physical(self, name: str) -> str:
        return self.pipeline.physical_name(
            name, stage=self.config.stage, account=ACCOUNT, region=REGION
        )


def synthesize(
    outdir: Path,
    *,
    pipeline: Pipeline = PIPELINE,
    nag: bool = True,
    replay: ReplayConfig | None = None,
    **context: Any,
) -> Synthesized:
    """Synthesize one variant the way `app.py` does; cdk-nag findings raise here. `replay`:
    a version stack the context cannot ask for (yet), built the same way."""
    app = App(
        context={**CDK_CONTEXT, "account": ACCOUNT, "region": REGION, **context},
        outdir=str(outdir),
    )
    config = stage_config(app.node.try_get_context, pipeline=pipeline, environ={})
    replay = replay or replay_config(app.node.try_get_context, config=config, pipeline=pipeline)
    base = build(app, config=config, pipeline=pipeline, nag=nag)
    version = build_version(app, base=base, replay=replay) if replay is not None else None
    assembly = app.synth()

    def synthesized(stack: PipelineStack, of: Synthesized | None = None) -> Synthesized:
        template_json = assembly.get_stack_by_name(stack.stack_name).template
        return Synthesized(
            config=config,
            stack=stack,
            template=Template.from_json(template_json),
            json=template_json,
            outdir=outdir,
            pipeline=stack.pipeline,
            base=of,
        )

    rendered = synthesized(base)
    return synthesized(version, rendered) if version is not None else rendered


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("dev"), stage="dev")


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("prod"), stage="prod")


@pytest.fixture(scope="session")
def msk(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("msk"), stage="dev", broker="msk")


@pytest.fixture(scope="session", params=["dev", "prod", "msk"])
def every_stage(request: pytest.FixtureRequest) -> Iterator[Synthesized]:
    yield request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def v2_stream(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Version v2 replayed from the shared origin streams, from their trim horizon."""
    return synthesize(tmp_path_factory.mktemp("v2-stream"), stage="dev", version="v2")


REPLAY_SINCE = "2026-11-25T00:00:00Z"
REPLAY_SINCE_EPOCH = 1795564800
REPLAY_UNTIL = "2026-11-26T12:00:00+01:00"


@pytest.fixture(scope="session")
def v2_since(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Version v2 replayed from the shared origin streams from a point in time."""
    return synthesize(
        tmp_path_factory.mktemp("v2-since"),
        stage="dev",
        version="v2",
        replayFrom="stream",
        replaySince=REPLAY_SINCE,
    )


@pytest.fixture(scope="session")
def v2_archive(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Version v2 of prod rebuilt from the archive, between two instants."""
    return synthesize(
        tmp_path_factory.mktemp("v2-archive"),
        stage="prod",
        version="v2",
        replayFrom="archive",
        replaySince=REPLAY_SINCE,
        replayUntil=REPLAY_UNTIL,
    )


@pytest.fixture(scope="session")
def v2_msk(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Version v2 on MSK, from the live origin topics since an instant (`cdk synth -c
    broker=msk -c version=v2 -c replayFrom=stream -c replaySince=...`)."""
    return synthesize(
        tmp_path_factory.mktemp("v2-msk"),
        stage="dev",
        broker="msk",
        version="v2",
        replayFrom="stream",
        replaySince=REPLAY_SINCE,
    )


@pytest.fixture(scope="session", params=["v2_stream", "v2_since", "v2_archive"])
def every_version(request: pytest.FixtureRequest) -> Iterator[Synthesized]:
    yield request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def features(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The variant pipeline of `variants.py` (filters, windows, queues, TTL, rates...)."""
    from .variants import FEATURES

    return synthesize(tmp_path_factory.mktemp("features"), pipeline=FEATURES, stage="dev")
