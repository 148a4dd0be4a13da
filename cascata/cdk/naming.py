"""Stable CloudFormation logical ids derived from declared names.

CloudFormation identifies a resource by its logical id; CDK derives that id from the construct
path plus a hash, so moving a construct in a refactor silently replaces the resource. For a
stream that means losing its records, for a table its items, for an event source mapping its
read position. Every stateful or fixed-name resource therefore gets an id computed from the
declaration alone (`StreamPaymentsRaw`, `EventSourceMappingValidate`), pinned with
`override_logical_id`, and recorded in `tests/infrastructure/stable_ids.json`.
"""

from __future__ import annotations

import re

from aws_cdk import CfnResource
from constructs import IConstruct

_WORD = re.compile(r"[^A-Za-z0-9]+")


def pascal(name: str) -> str:
    """`payments-raw` -> `PaymentsRaw` (the mechanical naming rule of STYLE.md)."""
    return "".join(part[:1].upper() + part[1:] for part in _WORD.split(name) if part)


def stable_id(prefix: str, name: str = "") -> str:
    """The logical id of a pinned resource: a kind prefix plus the declared name."""
    return f"{prefix}{pascal(name)}"


def pin(construct: IConstruct, logical_id: str) -> CfnResource:
    """Give a construct's CloudFormation resource a logical id that refactors cannot change."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to pin")
    resource.override_logical_id(logical_id)
    return resource
