"""The CDK app of a cascata project: context -> stage config -> stacks -> synth.

A project's `app.py` calls `main(cdk_json=...)`; `npx cdk synth` runs that file. Which pipeline
it renders is the project's setting (`cascata.project`); `-c pipeline=module:attr` overrides it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from aws_cdk import App

from cascata.cdk import ConfigError, build, build_version, replay_config, stage_config
from cascata.project import ProjectError, current_pipeline, use_pipeline


def main(argv: list[str] | None = None, *, cdk_json: Path) -> None:
    parser = argparse.ArgumentParser(description="Synthesize the project's pipeline.")
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="context value, as with `cdk synth -c` (repeatable)",
    )
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.context if "=" in item)
    # The CLI passes cdk.json's context itself; alone, read it so both runs agree.
    defaults = json.loads(cdk_json.read_text())["context"]
    # Under the CLI, CDK_OUTDIR names the assembly directory; alone, write where the CLI would.
    outdir = None if os.environ.get("CDK_OUTDIR") else str(cdk_json.parent / "cdk.out")
    app = App(context=defaults, post_cli_context=overrides, outdir=outdir)
    try:
        use_pipeline(app.node.try_get_context("pipeline"))
        pipeline = current_pipeline()
        config = stage_config(app.node.try_get_context, pipeline=pipeline)
        replay = replay_config(app.node.try_get_context, config=config, pipeline=pipeline)
        base = build(app, config=config, pipeline=pipeline)
        if replay is not None:
            build_version(app, base=base, replay=replay)
    except (ConfigError, ProjectError) as exc:
        # A context or setting mistake, or a build step not run (the Kafka layer), is the
        # caller's to fix: say what, without a traceback.
        sys.exit(f"cascata: {exc}")
    app.synth()
