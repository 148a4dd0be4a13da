"""cdk-nag (AwsSolutions) and cfn-lint on every synthesized template.

cdk-nag runs as a CDK validation plugin: the fixtures' synthesis raises `ValidationFailed` on
any unacknowledged finding, so reaching these tests already means zero findings; the tests
then read the validation report and check that every acknowledgment says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import ManualArgs, lint_file

from .conftest import Synthesized

_ACKNOWLEDGED = Validations.ACKNOWLEDGED_RULES_METADATA_KEY


def test_cdk_nag_reports_no_unacknowledged_finding(every_stage: Synthesized) -> None:
    report = json.loads((every_stage.outdir / "validation-report.json").read_text())
    violations = [
        (v["ruleName"], [c["constructPath"] for c in v["violatingConstructs"]])
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
    ]
    assert violations == []


def test_cdk_nag_features_variant_is_clean_too(features: Synthesized) -> None:
    report = json.loads((features.outdir / "validation-report.json").read_text())
    assert [v for p in report["pluginReports"] for v in p["violations"]] == []


@pytest.mark.parametrize("variant", ["v2_stream", "v2_since", "v2_archive", "v2_msk"])
def test_cdk_nag_reports_no_finding_on_version_stacks(
    variant: str, request: pytest.FixtureRequest
) -> None:
    version: Synthesized = request.getfixturevalue(variant)
    # The report covers the whole app: the version stack and its base stack
    report = json.loads((version.outdir / "validation-report.json").read_text())
    assert [v for p in report["pluginReports"] for v in p["violations"]] == []
    assert version.base is not None


@pytest.mark.parametrize(
    "variant", ["dev", "prod", "msk", "v2_stream", "v2_since", "v2_archive", "v2_msk"]
)
def test_every_acknowledgment_is_specific_and_justified(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    acknowledged: dict[str, str] = {}
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == _ACKNOWLEDGED:
                for rule, reason in entry.data.items():
                    # CDK records its own CloudFormation-Validate acknowledgments here too.
                    if "AwsSolutions-" in rule:
                        acknowledged[f"{construct.node.path} {rule}"] = reason
    assert acknowledged, "expected the documented acknowledgments (L1, IAM5, KDS3...)"
    for where, reason in acknowledged.items():
        # A rule id, not a blanket: granular IAM findings name the exact resource or policy
        assert "IAM5]" not in where and not where.endswith("AwsSolutions-IAM5"), where
        # ... and a reason a reviewer can check, not a placeholder
        assert len(reason) >= 60, f"{where}: {reason!r}"


def test_cdk_nag_fails_the_synthesis_on_a_finding(tmp_path: Path) -> None:
    # Given the same plugin wiring and a bucket without TLS-only policy or access logs
    app = App(outdir=str(tmp_path))
    s3.Bucket(Stack(app, "Scratch"), "Careless")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    # Then synthesis refuses it
    with pytest.raises(RuntimeError, match=r"(?s)ValidationFailed.*AwsSolutions-S10"):
        app.synth()


def _lint(template: Path, region: str) -> list[str]:
    # W3005 (a redundant DependsOn CDK itself emits) is the one rule ignored, by id.
    matches = lint_file(template, config=ManualArgs(ignore_checks=["W3005"], regions=[region]))
    return [str(m) for m in matches]


@pytest.mark.parametrize(
    "variant",
    ["dev", "prod", "msk", "features", "v2_stream", "v2_since", "v2_archive", "v2_msk"],
)
def test_cfn_lint_passes(variant: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    assert _lint(synth.template_file, synth.config.region) == []
    if synth.base is not None:
        # ... and the base stack's template, with the outputs a version reads
        assert _lint(synth.base.template_file, synth.config.region) == []
