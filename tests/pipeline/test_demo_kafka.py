"""`cascata demo --broker msk`: the whole pipeline on a Kafka protocol broker on loopback, with
chaos, holding every invariant the Kinesis run holds."""

from __future__ import annotations

import json

import pytest

from cascata.cli import main

pytestmark = pytest.mark.pipeline


def test_demo_on_kafka_with_chaos_keeps_every_invariant(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    # A crash rate above the default, so that crashes happen in the few invocations that
    # Kafka's half-second batching windows leave at this size.
    assert main(["demo", "--broker", "msk", "--events", "800", "--seed", "5", "--chaos",
                 "--crash-rate", "0.2", "--timeout", "1200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True
    assert all(v["ok"] for v in result["invariants"].values()), result["invariants"]
    assert len(result["invariants"]) == 7
    assert "Kafka at 127.0.0.1:" in result["endpoint"]
    injected = result["chaos"]["injected"]
    # The faults really happened, and the pipeline absorbed them.
    assert injected["handler_crashes"] > 0
    assert injected["put_records_entries_failed"] > 0
    assert injected["duplicate_sends"] > 0
    assert sum(s["retried"] for s in result["stages"].values()) > 0
    assert result["sent"] >= 800


def test_an_unknown_broker_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--broker", "kafkaesque"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --broker must be kinesis or msk, not 'kafkaesque'"]


def test_no_kafka_broker_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from cascata.local import kafka_broker

    def unavailable(**_: object) -> None:
        raise kafka_broker.BrokerUnavailableError("librdkafka could not start a mock cluster")

    monkeypatch.setattr(kafka_broker, "KafkaBroker", unavailable)
    assert main(["demo", "--broker", "msk", "--events", "10"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "error: librdkafka could not start a mock cluster"
    assert not any("Traceback" in line for line in lines)
