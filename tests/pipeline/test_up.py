"""`cascata up` end to end: the pipeline as a local service, its APIs, `status`, a clean stop."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cascata.local.emulator import external
from cascata.local.serve import UpOptions, status
from cascata.producer import Outgoing, produce
from payments.pipeline import PIPELINE
from tests.support.events import payment
from tests.support.http import http
from tests.support.up import running_up

pytestmark = pytest.mark.pipeline


def test_up_serves_the_pipeline_its_apis_and_status_then_stops_cleanly() -> None:
    with running_up(UpOptions(port=0, api_port=0, stage="uptest", tick_s=0.5),
                    timeout_s=60) as endpoints:
        deadline = time.time() + 60
        api = endpoints["api_url"]
        assert endpoints["aws_endpoint_url"].startswith("http://127.0.0.1:")
        assert api.startswith("http://127.0.0.1:")
        assert sorted(endpoints["routes"]) == sorted(
            r.key for a in PIPELINE.apis for r in a.routes)
        # When events arrive through the producer and through the ingest API
        aws = external(endpoints["aws_endpoint_url"])
        raw = PIPELINE.physical_name("payments-raw", stage="uptest")
        sent = produce(aws.client("kinesis"), raw, [
            Outgoing("alice", json.dumps(payment(f"u{i}", amount_minor=100)).encode())
            for i in range(20)])
        assert sent.sent == 20
        code, answer = http("POST", f"{api}/events", [payment("via-api", amount_minor=5),
                                                      {"not": "an envelope"}])
        assert code == 207
        assert [e["status"] for e in answer["results"]] == ["accepted", "rejected"]
        # Then the views fill in and the query API serves them
        balance: dict[str, Any] = {}
        while time.time() < deadline + 60:
            code, balance = http("GET", f"{api}/accounts/bob")
            # balances and profiles are separate processors: wait for both views
            if code == 200 and balance.get("balance", {}).get("balances") == [
                    {"currency": "USD", "amount_minor": 2005}] and (
                    balance.get("profile") or {}).get("as_payee", {}).get("USD", {}).get(
                    "count") == 21:
                break
            time.sleep(0.5)
        assert balance["balance"]["balances"] == [{"currency": "USD", "amount_minor": 2005}]
        assert balance["profile"]["as_payee"] == {"USD": {"count": 21, "volume_minor": 2005}}
        assert http("GET", f"{api}/accounts/nobody")[0] == 404
        assert http("GET", f"{api}/accounts/bad%20id!")[0] == 400
        assert http("GET", f"{api}/nowhere")[0] == 404
        # And status reports the backlog (draining to zero) and the views
        report = status(endpoints["aws_endpoint_url"], stage="uptest")
        while report["lag_records"] and time.time() < deadline + 120:
            time.sleep(1)
            report = status(endpoints["aws_endpoint_url"], stage="uptest")
        assert report["lag_records"] == 0
        assert report["views"]["balances"] == 2
        # Every processor, and the archiver copying the origin streams to S3.
        assert {p["processor"] for p in report["processors"]} == {
            p.name for p in PIPELINE.processors} | {"archive"}
