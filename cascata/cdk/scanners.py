"""Acknowledgments for the infrastructure-as-code scanners platform teams run on templates.

cdk-nag findings are acknowledged on constructs (`Validations.of(...).acknowledge`); checkov
reads its acknowledgments from the template itself, as resource metadata:

    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_117
            comment: <why the check does not apply here>

so a reviewer reading the synthesized template sees each one next to the resource it concerns.
An acknowledgment is for a check that is wrong about this resource, never for a fix not made;
`tests/infrastructure/test_scanners.py` runs checkov on every variant and checks that every
acknowledgment carries a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnResource
from constructs import IConstruct

CHECKOV_METADATA = "checkov"

VPC_NOT_NEEDED = (
    "The function reaches only AWS service endpoints (Kinesis, DynamoDB, S3, SNS, SQS) over "
    "TLS with IAM-signed requests and no private network resource; attaching it to a VPC would "
    "add NAT or interface endpoints and cold-start cost without narrowing what it can reach "
    "(its role does that)."
)
"""CKV_AWS_117 for functions outside a VPC. In the MSK variant the stream processors are in
the cluster's VPC, because that is where their source is."""


def _resource(construct: IConstruct) -> CfnResource:
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to annotate")
    return resource


def acknowledge_checks(construct: IConstruct, reasons: Mapping[str, str]) -> None:
    """Record in the template that checkov checks `reasons` (id -> why) do not apply to this
    construct's resource. Repeated calls add to the list; an id given again keeps its first
    reason."""
    resource = _resource(construct)
    current: Any = resource.get_metadata(CHECKOV_METADATA) or {}
    skips: list[dict[str, str]] = list(current.get("skip", []))
    known = {entry["id"] for entry in skips}
    for check_id, reason in reasons.items():
        if not reason.strip():
            raise ValueError(f"{resource.node.path}: acknowledging {check_id} needs a reason")
        if check_id not in known:
            skips.append({"id": check_id, "comment": reason})
            known.add(check_id)
    resource.add_metadata(CHECKOV_METADATA, {"skip": skips})
