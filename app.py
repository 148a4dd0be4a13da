"""CDK entry point of the payments pipeline: `npx cdk synth` runs this file.

    npx cdk synth -c stage=prod                 # defaults from cdk.json context.stages.prod
    npx cdk synth -c stage=dev -c broker=msk    # the MSK Serverless variant
    npx cdk synth -c stage=dev -c version=v2    # plus cascata-dev-v2, rebuilding v2 of the views
    python app.py -c stage=prod                 # the same synthesis without the CLI (cdk.out/)

A version stack also takes `-c replayFrom=stream|archive`, `-c replaySince=<RFC 3339>` and,
from the archive, `-c replayUntil=<RFC 3339>`. See docs/deploy.md for every context knob.
The pipeline is pyproject.toml's `[tool.cascata] pipeline` (`-c pipeline=module:attr` for
another); the stacks are cascata's (`stacks/` re-exports them for this project).
"""

from __future__ import annotations

from pathlib import Path

from stacks import synth

if __name__ == "__main__":
    synth(cdk_json=Path(__file__).resolve().parent / "cdk.json")
