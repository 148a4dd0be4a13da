"""Which AWS profile, region and partition a command works in, resolved as the AWS CLI does.

- profile: `--profile`, else botocore's own chain (`AWS_PROFILE`, else the default profile);
- region: `--region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`; when none of
  them names one, the local runtime's default (`LOCAL_REGION`), and an error for AWS itself;
- partition (the `aws` of `arn:aws:...`): the region's, from botocore's partition data
  (`aws-cn` for cn-north-1, `aws-us-gov` for us-gov-west-1, ...).

Endpoints are not resolved here: a client created without `endpoint_url` gets botocore's own
(`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url` and `services`
section); `cascata.local.emulator.Aws` builds every client from the session resolved here.

The command line's global `--profile` and `--region` are kept for the process by
`use_settings`, as `--pipeline` is by `cascata.project.use_pipeline`.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from typing import Any

from cascata.pipeline import LOCAL_REGION


class AwsSettingsError(ValueError):
    """The profile or region named cannot be used; the message says which and why."""


@dataclass(frozen=True)
class AwsSettings:
    """A boto3 session (profile, credentials, endpoints) and the region chosen for it."""

    session: Any
    """boto3.Session of the chosen profile, with `region` as its region."""
    region: str
    region_source: str
    """What named the region (`--region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, `profile P`),
    or "" when nothing did and `region` is the local default."""
    partition: str


_lock = threading.Lock()
_profile: str | None = None
_region: str | None = None


def use_settings(*, profile: str | None, region: str | None) -> None:
    """Make the command line's `--profile` and `--region` this process's; each is checked now
    (an unknown profile or region is a one-line error before the command starts)."""
    global _profile, _region
    if region is not None:
        partition_for(region)
    with _lock:
        _profile, _region = profile or None, region or None
    if profile:
        resolve()


def resolve(*, default_region: str | None = LOCAL_REGION) -> AwsSettings:
    """The session and region of this process, by the order the module docstring gives.

    `default_region`: the region when nothing names one (None: that is an error, as for AWS
    itself)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    with _lock:
        profile, flag = _profile, _region
    named = [("--region", flag), ("AWS_REGION", os.environ.get("AWS_REGION")),
             ("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION"))]
    source, region = next(((s, r) for s, r in named if r), ("", None))
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
        if region is None and session.region_name:
            region, source = session.region_name, f"profile {session.profile_name}"
    except ProfileNotFound:
        where = " or ".join((os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config",
                             os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
                             or "~/.aws/credentials"))
        name = profile or os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
        raise AwsSettingsError(f"no AWS profile {name!r} in {where}") from None
    except BotoCoreError as exc:  # an unreadable config file, ...
        raise AwsSettingsError(f"the AWS configuration: {_one_line(exc)}") from None
    if region is None:
        if default_region is None:
            raise AwsSettingsError("no AWS region: give --region, or set AWS_REGION or the "
                                   "profile's region")
        region = default_region
        session = boto3.Session(profile_name=profile, region_name=region)
    partition = partition_for(region)
    return AwsSettings(session=session, region=region, region_source=source,
                       partition=partition)


def partition_for(region: str) -> str:
    """The partition a region belongs to, or AwsSettingsError for a string that is no region."""
    partition = _partition(region)
    if partition is None:
        raise AwsSettingsError(f"unknown AWS region {region!r} (regions look like eu-west-1)")
    return partition


def arn(service: str, resource: str, *, region: str, account: str) -> str:
    """`arn:<partition>:<service>:<region>:<account>:<resource>`, the partition the region's."""
    return f"arn:{partition_for(region)}:{service}:{region}:{account}:{resource}"


@functools.lru_cache(maxsize=64)
def _partition(region: str) -> str | None:
    from botocore.exceptions import UnknownRegionError

    try:
        return str(_endpoint_resolver().get_partition_for_region(region))
    except UnknownRegionError:
        return None


@functools.lru_cache(maxsize=1)
def _endpoint_resolver() -> Any:
    # botocore's partition data, read without a session: a session would read the profile,
    # and a partition does not depend on one.
    from botocore.loaders import create_loader
    from botocore.regions import EndpointResolver

    return EndpointResolver(create_loader().load_data("endpoints"))


def regions(service: str) -> list[str]:
    """Every region botocore knows `service` in, across partitions."""
    resolver = _endpoint_resolver()
    return [region for partition in resolver.get_available_partitions()
            for region in resolver.get_available_endpoints(service, partition)]


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
