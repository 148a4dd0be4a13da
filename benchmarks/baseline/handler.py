"""Lambda entry of the baseline, written the way the Powertools documentation writes it:
clients, persistence layer and processor are created at import, once per execution
environment (the cold-start bench measures exactly this module)."""

from __future__ import annotations

import os

import boto3

from benchmarks.baseline.app import Settings, build

handler = build(Settings.from_env(os.environ), dynamodb=boto3.client("dynamodb"),
                s3=boto3.client("s3"))
