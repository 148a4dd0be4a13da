"""`cascata up --broker msk`: the pipeline as a local service on a Kafka protocol broker that
any Kafka client reaches at the address `up` prints; `produce --broker msk`, the APIs, `status`
and the console work on it as they do on Kinesis."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from cascata.cli import main
from cascata.local.serve import UpOptions, status
from payments.pipeline import PIPELINE
from tests.support.events import payment
from tests.support.http import http
from tests.support.up import running_up

pytestmark = pytest.mark.pipeline
STAGE = "upkafka"


def test_up_on_kafka_serves_any_kafka_client_the_apis_status_and_console(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from confluent_kafka import Consumer, Producer

    with running_up(UpOptions(port=0, api_port=0, stage=STAGE, tick_s=0.5, broker="msk"),
                    timeout_s=60) as endpoints:
        servers = endpoints["kafka_bootstrap_servers"]
        assert endpoints["broker"] == "msk" and servers.startswith("127.0.0.1:")
        raw = PIPELINE.physical_name("payments-raw", stage=STAGE)
        # Given payments from a plain Kafka client, from `produce --broker msk`, and the API
        producer = Producer({"bootstrap.servers": servers, "log_level": 0})
        for i in range(10):
            producer.produce(raw, key=b"alice",
                             value=json.dumps(payment(f"k{i}", amount_minor=100)).encode())
        assert producer.flush(30) == 0
        events = tmp_path / "events.jsonl"
        events.write_text("".join(json.dumps({**payment(f"p{i}", amount_minor=10),
                                              "key": "alice"}) + "\n" for i in range(5)))
        assert main(["produce", "--stream", "payments-raw", "--file", str(events),
                     "--stage", STAGE,
                     "--broker", "msk", "--bootstrap-servers", servers, "--kafka-auth",
                     "none", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["sent"] == 5
        code, answer = http("POST", f"{endpoints['api_url']}/events",
                            [payment("via-api", amount_minor=5)])
        assert code == 200 and answer["results"][0]["status"] == "accepted"
        # Then the views fill in, served by the query API
        deadline = time.monotonic() + 120
        balance: dict[str, Any] = {}
        while time.monotonic() < deadline:
            code, balance = http("GET", f"{endpoints['api_url']}/accounts/bob")
            if code == 200 and (balance.get("balance") or {}).get("balances") == [
                    {"currency": "USD", "amount_minor": 1055}]:
                break
            time.sleep(0.5)
        assert balance["balance"]["balances"] == [{"currency": "USD", "amount_minor": 1055}]
        # And status reports every processor's mapping drained, read off the broker
        # (on Kafka the backlog comes with up's report, refreshed every second: wait for one
        # written after the views filled in)
        def validate_mapping(report: dict[str, Any]) -> dict[str, Any]:
            return next(p for p in report["processors"] if p["processor"] == "validate")

        report = status(endpoints["aws_endpoint_url"], stage=STAGE)
        while (report["lag_records"] or validate_mapping(report)["records_in"] < 16) and \
                time.monotonic() < deadline:
            time.sleep(1)
            report = status(endpoints["aws_endpoint_url"], stage=STAGE)
        assert report["lag_records"] == 0
        validate = validate_mapping(report)
        assert validate["records_in"] == 16 and validate["records_behind"] == 0
        # The topology's edges count what the functions' producers delivered to each topic
        edges = {e["id"]: e["records"] for e in report["edges"]}
        assert edges["processor:validate->stream:payments-validated"] == 16
        assert edges["processor:postings->stream:ledger-entries"] == 32
        # No archiver on Kafka (Firehose reads Kinesis), every processor otherwise.
        assert {p["processor"] for p in report["processors"]} == {
            p.name for p in PIPELINE.processors}
        # And the console browses the topics: partitions, and the last records, keys decoded
        console = endpoints["console_url"]
        with urllib.request.urlopen(f"{console}/api/streams", timeout=30) as answer:
            streams = {s["name"]: s for s in json.loads(answer.read())["streams"]}
        shards = streams["payments-raw"]["shards"]
        assert sum(s["records"] for s in shards) == 16
        busy = next(s for s in shards if s["records"])
        assert busy["id"].startswith(f"{raw}-")
        with urllib.request.urlopen(f"{console}/api/streams/payments-raw/records?shard="
                                    f"{busy['id']}&limit=3", timeout=30) as answer:
            tail = json.loads(answer.read())["records"]
        assert len(tail) == 3 and {r["partition_key"] for r in tail} <= {"alice", "via-api"}
        # And any Kafka client can read what the functions wrote
        consumer = Consumer({"bootstrap.servers": servers, "group.id": "reader",
                             "auto.offset.reset": "earliest", "log_level": 0})
        consumer.subscribe([PIPELINE.physical_name("payments-validated", stage=STAGE)])
        validated: set[str] = set()
        while len(validated) < 16 and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=100, timeout=1.0):
                if message.error() is None:
                    validated.add(json.loads(message.value() or b"{}")["event_id"])
        consumer.close()
        assert len(validated) == 16
        # And a replay rebuilds the views into v2 on the same brokers (a consumer group of its
        # own from the earliest offsets, v2's own derived topics), which diff finds equal
        where = ["--endpoint-url", endpoints["aws_endpoint_url"], "--stage", STAGE]
        assert main(["replay", "--to-version", "v2", *where, "--json"]) == 0
        replayed = json.loads(capsys.readouterr().out)
        assert replayed["state"] == "ready" and replayed["records_total"] == 16
        assert main(["diff", "v1", "v2", *where, "--json"]) == 0, capsys.readouterr().err
        differences = json.loads(capsys.readouterr().out)
        assert differences["total_differences"] == 0
        assert main(["promote", "v2", *where]) == 0
        capsys.readouterr()
        code, balance = http("GET", f"{endpoints['api_url']}/accounts/bob")
        assert balance["balance"]["balances"] == [{"currency": "USD", "amount_minor": 1055}]
        # What needs the archive is refused in one line: nothing is archived on Kafka
        for args in (["replay", "--to-version", "v3", "--from", "archive"], ["audit"]):
            assert main([*args, *where]) == 2
            [line] = capsys.readouterr().err.strip().splitlines()
            assert line.startswith("error: ") and "Kafka" in line
