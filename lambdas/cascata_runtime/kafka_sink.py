"""Writes records to Kafka topics (Amazon MSK), behind the same `Sink` port as Kinesis.

- the producer is idempotent with `acks=all`: a retried send never duplicates a message and a
  message counts as written only once every in-sync replica has it;
- a record's partition key is its Kafka key, so one key keeps its order on one partition (the
  murmur2 partitioner of the Java clients: a key lands where any other client puts it);
- a record over the topic's message limit (1 MiB by default on MSK) is refused up front;
- every record's delivery report is checked: the ones that failed, or were not acknowledged
  within the timeout, are reported per record, so the handler fails only the input records
  whose outputs were not written (a partial batch failure), exactly as with Kinesis.

The producer is injected (`confluent_kafka.Producer`, or anything with its `produce`, `poll`
and `flush`); `producer_config` builds its settings for MSK: TLS, and IAM authentication with
SASL/OAUTHBEARER tokens from the MSK IAM SASL signer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cascata_runtime.ports import EmitFailure, OutRecord

MAX_MESSAGE_BYTES = 1024 * 1024
"""MSK's default `message.max.bytes` (key, value and overhead)."""
DELIVERY_TIMEOUT_S = 30.0

TokenProvider = Callable[[str], tuple[str, int]]
"""region -> (token, expiry in epoch milliseconds)."""


def msk_iam_token(region: str) -> tuple[str, int]:
    """A SASL/OAUTHBEARER token for MSK IAM authentication, signed with the function's role."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
    return str(token), int(expiry_ms)


def producer_config(bootstrap_servers: str, *, region: str, iam: bool = True,
                    token_provider: TokenProvider = msk_iam_token) -> dict[str, Any]:
    """Producer settings for MSK (`iam=True`: TLS and IAM over SASL/OAUTHBEARER on port
    9098) or for a plaintext broker such as the local one (`iam=False`)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "message.max.bytes": MAX_MESSAGE_BYTES + 64 * 1024,
        "delivery.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
    }
    if iam:
        config.update({
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "OAUTHBEARER",
            # Called by the client whenever it needs a (fresh) token: (token, expiry in s).
            "oauth_cb": lambda _config: _oauth(token_provider, region),
        })
    return config


def _oauth(provider: TokenProvider, region: str) -> tuple[str, float]:
    token, expiry_ms = provider(region)
    return token, expiry_ms / 1000.0


class KafkaSink:
    """`Sink` over a Kafka producer: `emit(topic, records)`."""

    def __init__(self, producer: Any, *, timeout_s: float = DELIVERY_TIMEOUT_S,
                 max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._producer = producer
        self._timeout_s = timeout_s
        self._max_bytes = max_message_bytes
        self.requests = 0

    def emit(self, stream: str, records: Sequence[OutRecord]) -> list[EmitFailure]:
        failures: list[EmitFailure] = []
        outcome: dict[int, str | None] = {}
        sent: set[int] = set()
        for index, record in enumerate(records):
            problem = self._check(record)
            if problem:
                failures.append(EmitFailure(record.tag, problem))
                continue
            try:
                self._produce(stream, record, index, outcome)
            except Exception as exc:  # noqa: BLE001 - a refused send is that record's failure
                failures.append(EmitFailure(record.tag, f"not sent to {stream}: {exc}"))
                continue
            sent.add(index)
        if sent:
            self.requests += 1
            left = self._producer.flush(self._timeout_s)
            if left:
                self._producer.poll(0)
        for index, record in enumerate(records):
            if index not in sent:
                continue
            if index not in outcome:
                failures.append(EmitFailure(record.tag, f"no acknowledgement from {stream} "
                                                        f"within {self._timeout_s:g} s"))
            elif outcome[index] is not None:
                failures.append(EmitFailure(record.tag, f"not written to {stream}: "
                                                        f"{outcome[index]}"))
        return failures

    def _produce(self, topic: str, record: OutRecord, index: int,
                 outcome: dict[int, str | None]) -> None:
        def delivered(error: Any, _message: Any) -> None:
            outcome[index] = None if error is None else str(error)

        for _ in range(3):
            try:
                self._producer.produce(topic, key=record.partition_key.encode("utf-8"),
                                       value=record.data, on_delivery=delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain, then retry
                self._producer.poll(1.0)
        raise BufferError("the producer's queue stayed full")

    def _check(self, record: OutRecord) -> str | None:
        if not record.partition_key:
            return "a Kafka record needs a key (its partition key)"
        size = len(record.data) + len(record.partition_key.encode("utf-8"))
        if size > self._max_bytes:
            return (f"record is {size} bytes (value plus key); the topic accepts at most "
                    f"{self._max_bytes}")
        return None
