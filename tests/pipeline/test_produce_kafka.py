"""`cascata produce --broker msk`: events to a stream's Kafka topic, with every refusal one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cascata.cli import main
from cascata.local.kafka_broker import KafkaBroker
from payments.pipeline import PIPELINE

pytestmark = pytest.mark.pipeline

STAGE = "kafkaproduce"
TOPIC = PIPELINE.physical_name("payments-raw", stage=STAGE)


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    with KafkaBroker(cluster_name="produce") as running:
        running.create_topic(TOPIC, partitions=2)
        yield running


def test_sample_events_reach_the_topic_with_their_keys(
        broker: KafkaBroker, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["produce", "--events", "40", "--stage", STAGE, "--broker", "msk",
                 "--bootstrap-servers", broker.bootstrap_servers, "--kafka-auth", "none",
                 "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    # The sample workload sends some events twice, as producers retrying do.
    assert report["sent"] >= 40 and report["failed"] == 0 and report["topic"] == TOPIC
    messages = [m for p in range(2) for m in broker.read(TOPIC, p, 0, 100)]
    assert len(messages) == report["sent"]
    for message in messages:
        event = json.loads(message.value or b"")
        assert message.key == event["key"].encode()  # the partition key is the Kafka key


def test_a_file_of_events_goes_to_the_topic(broker: KafkaBroker, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = sum(broker.end_offset(TOPIC, p) for p in range(2))
    lines = tmp_path / "events.jsonl"
    lines.write_text("".join(json.dumps({"key": f"k{i}", "n": i}) + "\n" for i in range(3)))
    code = main(["produce", "--file", str(lines), "--stage", STAGE, "--broker", "msk",
                 "--bootstrap-servers", broker.bootstrap_servers, "--kafka-auth", "none"])
    assert code == 0, capsys.readouterr().err
    assert "sent 3 events to topic" in capsys.readouterr().out
    assert sum(broker.end_offset(TOPIC, p) for p in range(2)) == before + 3


@pytest.mark.parametrize(("args", "words"), [
    (["--broker", "msk"], "needs --bootstrap-servers"),
    (["--broker", "msk", "--bootstrap-servers", "no-port"], "host:port"),
    (["--broker", "msk", "--bootstrap-servers", "127.0.0.1:9", "--kafka-auth", "plain"],
     "iam or none"),
    (["--broker", "kafka"], "kinesis or msk"),
    (["--bootstrap-servers", "127.0.0.1:9"], "goes with --broker msk"),
])
def test_bad_kafka_arguments_are_one_line(args: list[str], words: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce", "--events", "1", "--stage", STAGE, *args]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error") and words in error and "\n" not in error



def test_unreachable_brokers_are_one_line_without_the_clients_log(
        capfd: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code = main(["produce", "--events", "1", "--stage", STAGE, "--broker", "msk",
                 "--bootstrap-servers", f"127.0.0.1:{port}", "--kafka-auth", "none"])
    err = capfd.readouterr().err.strip()  # file-descriptor level: librdkafka writes there
    assert code == 2 and err.startswith("error: cannot reach the Kafka brokers")
    assert "\n" not in err
