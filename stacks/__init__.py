"""This project's stacks: cascata's rendering (`cascata.cdk`) of the declared pipeline.

The payments pipeline needs no construct of its own; one that did (a dashboard, a peering
connection) would be added to the stack `build` returns, here, and `synth` would call it.
"""

from cascata.cdk import build, build_version
from cascata.cdk.app import main as synth

__all__ = ["build", "build_version", "synth"]
