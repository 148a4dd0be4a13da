"""checkov, the open-source IaC scanner platform teams run in CI, on every synthesized template.

Each variant's template is scanned as a platform team's pipeline would scan it (checkov's
CloudFormation checks, no external checks, no API key): every finding must be fixed or
acknowledged in the template itself (`checkov: skip` metadata, `cascata.cdk.scanners`) with a
reason. checkov pins dependencies (boto3) that clash with ours, so it lives in a tool
environment of its own that `make setup` installs from `requirements-scan.lock`.

The scan runs offline: `BC_SKIP_MAPPING` and `--skip-download` keep checkov from fetching
guidelines or external checks, and no API key is passed to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import Synthesized

VARIANTS = ["dev", "prod", "msk", "features", "v2_stream", "v2_since", "v2_archive", "v2_msk"]
CHECKOV_VARIABLE = "CASCATA_CHECKOV"
OFFLINE = {
    "BC_SKIP_MAPPING": "TRUE",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    "LOG_LEVEL": "WARNING",
}
ASYNC_INVOKERS = frozenset(
    {"events.amazonaws.com", "s3.amazonaws.com", "sns.amazonaws.com", "iot.amazonaws.com"}
)


def checkov() -> Path:
    """The checkov of the tool environment `make setup` installs beside the project's."""
    given = os.environ.get(CHECKOV_VARIABLE)
    path = Path(given) if given else Path(sys.prefix) / "tools" / "checkov" / "bin" / "checkov"
    if not path.exists():
        pytest.fail(f"no checkov at {path}: run `make setup` (or set {CHECKOV_VARIABLE})")
    return path


CARELESS = {
    "Resources": {
        "Careless": {"Type": "AWS::S3::Bucket"},
        "Excused": {
            "Type": "AWS::S3::Bucket",
            "Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_18", "comment": "a reason"}]}},
        },
    }
}
"""A bare bucket, neither versioned nor logged, and one acknowledgment of logging: proof that
the scan as run here does report findings and does honour acknowledgments."""


def scan(*templates: Path) -> dict[Path, dict[str, list[dict[str, Any]]]]:
    """checkov's results per template (failed and skipped checks), from one run: checkov's
    start-up (loading its checks) is paid once, not per template."""
    # Only what checkov needs from the environment: no credentials, no API key.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
    files = [arg for template in templates for arg in ("--file", str(template))]
    completed = subprocess.run(
        [str(checkov()), *files, "--framework", "cloudformation", "--output", "json",
         "--skip-download"],
        env={**env, **OFFLINE},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # 0: no finding, 1: findings; anything else is checkov failing to run.
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    report = json.loads(completed.stdout)
    (cloudformation,) = report if isinstance(report, list) else [report]
    assert cloudformation["check_type"] == "cloudformation"
    assert cloudformation["summary"]["parsing_errors"] == 0
    results: dict[Path, dict[str, list[dict[str, Any]]]] = {
        t.resolve(): {"failed": [], "skipped": [], "passed": []} for t in templates
    }
    for outcome in ("failed", "skipped", "passed"):
        for check in cloudformation["results"].get(f"{outcome}_checks", []):
            results[Path(check["file_abs_path"]).resolve()][outcome].append(check)
    return results


@pytest.fixture(scope="module")
def scanned(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every variant's template, and the careless one, scanned in one checkov run."""
    careless = tmp_path_factory.mktemp("careless") / "careless.template.json"
    careless.write_text(json.dumps(CARELESS))
    templates = {
        variant: request.getfixturevalue(variant).template_file.resolve() for variant in VARIANTS
    }
    results = scan(careless, *templates.values())
    return {"careless": results[careless.resolve()]} | {
        variant: results[path] for variant, path in templates.items()
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkov_finds_nothing_unacknowledged(
    variant: str,
    scanned: dict[str, dict[str, list[dict[str, Any]]]],
    request: pytest.FixtureRequest,
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    report = scanned[variant]
    # The template was really scanned: every function and bucket in it was checked...
    checked = {c["resource"].split(".", 1)[1] for outcome in report.values() for c in outcome}
    expected = {*synth.of_type("AWS::Lambda::Function"), *synth.of_type("AWS::S3::Bucket")}
    assert expected and expected <= checked, expected - checked
    # ... and nothing was found that is not fixed or acknowledged
    findings = sorted(
        f"{c['check_id']} {c['resource']} ({c['check_name']})" for c in report["failed"]
    )
    assert findings == [], "\n".join(findings)
    # Every check it skipped, it skipped on an acknowledgment in the template, with its reason
    for skipped in report["skipped"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) >= 60, skipped


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_acknowledgment_names_a_check_and_says_why(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    acknowledged = {
        (logical_id, entry["id"]): entry.get("comment", "")
        for logical_id, resource in synth.resources.items()
        for entry in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    assert acknowledged, "expected the documented acknowledgments (VPC, DLQ, log bucket...)"
    for (logical_id, check_id), reason in acknowledged.items():
        assert check_id.startswith("CKV_AWS_"), (logical_id, check_id)
        assert len(reason) >= 60, f"{logical_id} {check_id}: {reason!r}"
    # Fixed, never acknowledged: environment encryption, versioning, and logging of every
    # bucket but the one that receives the logs
    never = {"CKV_AWS_173", "CKV_AWS_21"}
    assert not [k for k in acknowledged if k[1] in never]
    logging = [k for k in acknowledged if k[1] == "CKV_AWS_18"]
    assert logging in ([], [("BucketAccessLogs", "CKV_AWS_18")]), logging


@pytest.mark.parametrize("variant", ["dev", "features", "v2_archive"])
def test_every_asynchronously_invoked_function_has_dead_letter_handling(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    # Given who may invoke the functions: no asynchronous invoker has a permission...
    principals = {
        p["Properties"]["Principal"] for p in synth.of_type("AWS::Lambda::Permission").values()
    }
    assert not principals & ASYNC_INVOKERS, principals
    # ... and every function a schedule invokes (asynchronously) sends failed runs to a queue
    targets = [
        s["Properties"]["Target"] for s in synth.of_type("AWS::Scheduler::Schedule").values()
    ]
    assert len(targets) == len(synth.pipeline.scheduled)
    configs = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
        for c in synth.of_type("AWS::Lambda::EventInvokeConfig").values()
    }
    for target in targets:
        function_id = target["Arn"]["Fn::GetAtt"][0]
        assert "Arn" in target["DeadLetterConfig"]
        on_failure = configs[function_id]["DestinationConfig"]["OnFailure"]["Destination"]
        assert on_failure == target["DeadLetterConfig"]["Arn"]


def test_checkov_reports_a_finding_it_is_not_told_about(
    scanned: dict[str, dict[str, list[dict[str, Any]]]],
) -> None:
    report = scanned["careless"]
    failed = {(c["check_id"], c["resource"]) for c in report["failed"]}
    skipped = {(c["check_id"], c["resource"]) for c in report["skipped"]}
    # Then both misses are findings, except the one acknowledged in the template
    assert {
        ("CKV_AWS_21", "AWS::S3::Bucket.Careless"),
        ("CKV_AWS_18", "AWS::S3::Bucket.Careless"),
        ("CKV_AWS_21", "AWS::S3::Bucket.Excused"),
    } <= failed
    assert skipped == {("CKV_AWS_18", "AWS::S3::Bucket.Excused")}
