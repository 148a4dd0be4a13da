"""CDK entry point: context -> stage config -> stack -> synth.

    npx cdk synth -c stage=prod                 # defaults from cdk.json context.stages.prod
    npx cdk synth -c stage=dev -c broker=msk    # the MSK Serverless variant
    python app.py -c stage=prod                 # the same synthesis without the CLI (cdk.out/)

See docs/deploy.md for every context knob.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from aws_cdk import App

from stacks import build, stage_config

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
    build(app, config=stage_config(app.node.try_get_context))
    app.synth()


if __name__ == "__main__":
    main()
