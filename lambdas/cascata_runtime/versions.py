"""Versions of the views and the live pointer readers follow.

Every view (and every processor's state) exists in named versions. `v1` is what the deployed
pipeline writes, under the declared table names; a version built by replay, `v2` say, has its
own tables named `<declared physical name>-v2`. Readers never hard-code a version: they read
the live pointer, one item of the version registry table, and use the tables of the version it
names. `promote` switches the pointer with one conditional write, so every reader moves from
one complete version to another at once and never sees a mixture.

The registry table (partition key `version`) holds the pointer item `@live` and one record
per version built by replay: how it was built (source, time range, configuration), its state
and its replay checkpoint. No pointer item means v1 is live.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FIRST_VERSION = "v1"
LIVE_POINTER = "@live"
KEY = "version"
_VERSION = re.compile(r"^v[1-9][0-9]{0,4}$")


def is_version(value: object) -> bool:
    return isinstance(value, str) and bool(_VERSION.match(value))


def versioned_name(physical: str, version: str) -> str:
    """The physical name of a versioned table or stream in `version` (v1 keeps the declared
    name). The declaration (`cascata.pipeline.Pipeline.physical_name`) follows the same rule;
    a test holds the two together."""
    if not is_version(version):
        raise ValueError(f"{version!r} is not a version name")
    return physical if version == FIRST_VERSION else f"{physical}-{version}"


def live_version(item: Mapping[str, Any] | None) -> str:
    """The version the pointer item names; v1 when there is no pointer yet."""
    if not item:
        return FIRST_VERSION
    live = item.get("live")
    if not is_version(live):
        raise ValueError(f"the live pointer names {live!r}, which is not a version")
    return str(live)


def read_live(dynamodb: Any, table: str) -> str:
    """The live version, read strongly consistent (a reader right after a promote sees it)."""
    response = dynamodb.get_item(
        TableName=table, Key={KEY: {"S": LIVE_POINTER}}, ConsistentRead=True,
        ProjectionExpression="live",
    )
    item = response.get("Item")
    return live_version({"live": item["live"]["S"]} if item and "live" in item else None)
