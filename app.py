"""CDK entry point: context -> stage config -> stacks -> synth.

    npx cdk synth -c stage=prod                 # defaults from cdk.json context.stages.prod
    npx cdk synth -c stage=dev -c broker=msk    # the MSK Serverless variant
    npx cdk synth -c stage=dev -c version=v2    # plus cascata-dev-v2, rebuilding v2 of the views
    python app.py -c stage=prod                 # the same synthesis without the CLI (cdk.out/)

A version stack also takes `-c replayFrom=stream|archive`, `-c replaySince=<RFC 3339>` and,
from the archive, `-c replayUntil=<RFC 3339>`. See docs/deploy.md for every context knob.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from aws_cdk import App

from stacks import ConfigError, build, build_version, replay_config, stage_config

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Synthesize the cascata pipeline.")
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="context value, as with `cdk synth -c` (repeatable)",
    )
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.context)
    # The CLI passes cdk.json's context itself; alone, read it so both runs agree.
    defaults = json.loads(CDK_JSON.read_text())["context"]
    # Under the CLI, CDK_OUTDIR names the assembly directory; alone, write where the CLI would.
    outdir = None if os.environ.get("CDK_OUTDIR") else str(CDK_JSON.parent / "cdk.out")
    app = App(context=defaults, post_cli_context=overrides, outdir=outdir)
    try:
        config = stage_config(app.node.try_get_context)
        replay = replay_config(app.node.try_get_context, config=config)
    except ConfigError as exc:
        # A context mistake is the caller's to fix: say what, without a traceback.
        sys.exit(f"cascata: {exc}")
    base = build(app, config=config)
    if replay is not None:
        build_version(app, base=base, replay=replay)
    app.synth()


if __name__ == "__main__":
    main()
