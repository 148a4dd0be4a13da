"""CDK rendering of the declared pipeline (`cascata.pipeline`) for AWS.

`build(app, config=...)` is the single composition used by `app.py` and by the
infrastructure tests, so the tests check exactly what `cdk synth` produces: the stage's
`PipelineStack` with the AwsSolutions (cdk-nag) checks attached as a validation plugin, plus,
when the context asks for one (`-c version=v2`), the version stack that rebuilds that version
of the views next to it (`build_version`).
"""

from __future__ import annotations

from aws_cdk import App, Environment, Fn, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from cascata.cdk.config import ConfigError, ReplayConfig, StageConfig, replay_config, stage_config
from cascata.cdk.pipeline_stack import PipelineStack, SharedResources
from cascata.cdk.replay import replay_pipeline
from cascata.pipeline import Broker, Pipeline
from cascata.project import current_pipeline

__all__ = [
    "ConfigError",
    "PipelineStack",
    "ReplayConfig",
    "SharedResources",
    "StageConfig",
    "build",
    "build_version",
    "replay_config",
    "stage_config",
]


def build(
    app: App, *, config: StageConfig, pipeline: Pipeline | None = None, nag: bool = True
) -> PipelineStack:
    """Add the stage's stack to `app`; with `nag`, findings fail the synthesis.

    `pipeline` defaults to the declared one; tests pass variants to cover declaration
    features the reference pipeline does not use (filters, tumbling windows, queues).
    """
    pipeline = pipeline or current_pipeline()
    if config.broker is Broker.MSK:
        # Answer the VPC's availability-zone lookup with `Fn::GetAZs` selections: a real
        # lookup needs credentials at synth time, and literal zone names would pin the
        # template to zones that may not exist in another account.
        lookup = f"availability-zones:account={config.account}:region={config.region}"
        if app.node.try_get_context(lookup) is None:
            zones = [Fn.select(i, Fn.get_azs()) for i in range(config.kafka.zone_count)]
            app.node.set_context(lookup, zones)
    stack = PipelineStack(
        app,
        config.stack_name,
        config=config,
        pipeline=pipeline,
        env=Environment(account=config.account, region=config.region),
        description=f"cascata pipeline, stage {config.stage}, broker {config.broker.value}",
        termination_protection=config.retain_data,
    )
    for name, value in config.tags.items():
        Tags.of(stack).add(name, value)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack


def build_version(app: App, *, base: PipelineStack, replay: ReplayConfig) -> PipelineStack:
    """Add the stack `cascata-<stage>-<version>` that rebuilds one version of the views.

    It renders `replay_pipeline(base.pipeline, replay)`, takes the key and the alarm topic from
    `base` (cross-stack references, so CDK deploys `base` first) and the other shared
    resources by their declared names.
    """
    config = base.config
    name = config.version_stack_name(replay.version)
    stack = PipelineStack(
        app,
        name,
        config=config,
        pipeline=replay_pipeline(base.pipeline, replay),
        shared=base.shared_resources,
        replay=replay,
        env=Environment(account=config.account, region=config.region),
        description=f"cascata {replay.version} of the views, stage {config.stage}, replayed "
        f"from the {replay.replay_from}",
        termination_protection=config.retain_data,
    )
    for tag, value in {**config.tags, "version": replay.version}.items():
        Tags.of(stack).add(tag, value)
    return stack
