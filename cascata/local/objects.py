"""Reading a bucket back: its keys and objects, page by page (the local tools' checks)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def list_keys(s3: Any, bucket: str, prefix: str = "") -> Iterable[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def read_objects(s3: Any, bucket: str, prefix: str = "") -> Iterable[bytes]:
    for key in list_keys(s3, bucket, prefix):
        yield s3.get_object(Bucket=bucket, Key=key)["Body"].read()
