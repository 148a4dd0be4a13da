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
    return {**connection_config(bootstrap_servers, region=region, iam=iam,
                                token_provider=token_provider), **producer_settings()}


def producer_settings() -> dict[str, Any]:
    """What makes a producer safe here: idempotent, acks from every in-sync replica, the
    Java clients' partitioner, a bounded delivery time."""
    return {
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "message.max.bytes": MAX_MESSAGE_BYTES + 64 * 1024,
        "delivery.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
    }


def connection_config(bootstrap_servers: str, *, region: str, iam: bool = True,
                      token_provider: TokenProvider = msk_iam_token) -> dict[str, Any]:
    """How any client (producer, admin) reaches the brokers: TLS and IAM on MSK, plaintext on
    a local broker."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "log_level": 3}
    if iam:
        config.update({
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "OAUTHBEARER",
            # Called by the client whenever it needs a (fresh) token: (token, expiry in s).
            "oauth_cb": lambda _config: _oauth(token_provider, region),
        })
    return config


def _retriable(error: Any) -> bool:
    """Whether a delivery error may go away if the record is sent again: the client says so
    (`KafkaError.retriable()`); an error that does not tell is taken as transient."""
    check = getattr(error, "retriable", None)
    if callable(check):
        return bool(check())
    return not (hasattr(error, "fatal") and callable(error.fatal) and error.fatal())


def _oauth(provider: TokenProvider, region: str) -> tuple[str, float]:
    token, expiry_ms = provider(region)
    return token, expiry_ms / 1000.0


class KafkaSink:
    """`Sink` over a Kafka producer: `emit(topic, records)`.

    The client retries transient errors itself until `delivery.timeout.ms`; a record whose
    delivery still failed with a retriable error (or that the producer refused to queue) is
    sent again, up to `max_attempts` sends in all, as the Kinesis sink retries the entries
    PutRecords failed. What fails for good, or every time, is that record's failure."""

    def __init__(self, producer: Any, *, timeout_s: float = DELIVERY_TIMEOUT_S,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, max_attempts: int = 4) -> None:
        self._producer = producer
        self._timeout_s = timeout_s
        self._max_bytes = max_message_bytes
        self._max_attempts = max(1, max_attempts)
        self.requests = 0

    def emit(self, stream: str, records: Sequence[OutRecord]) -> list[EmitFailure]:
        failures: list[EmitFailure] = []
        pending: list[tuple[int, OutRecord]] = []
        for index, record in enumerate(records):
            problem = self._check(record)
            if problem:
                failures.append(EmitFailure(record.tag, problem))
            else:
                pending.append((index, record))
        why: dict[int, str] = {}
        for attempt in range(1, self._max_attempts + 1):
            if not pending:
                break
            retry, final, why = self._attempt(stream, pending, attempt)
            failures.extend(EmitFailure(record.tag, why[index]) for index, record in final)
            pending = retry
        failures.extend(EmitFailure(record.tag, why[index]) for index, record in pending)
        return failures

    def _attempt(self, stream: str, pending: Sequence[tuple[int, OutRecord]], attempt: int,
                 ) -> tuple[list[tuple[int, OutRecord]], list[tuple[int, OutRecord]],
                            dict[int, str]]:
        """One send of `pending`: (to send again, failed for good, why each failed)."""
        why: dict[int, str] = {}
        outcome: dict[int, Any] = {}
        sent: list[tuple[int, OutRecord]] = []
        retry: list[tuple[int, OutRecord]] = []
        final: list[tuple[int, OutRecord]] = []
        tries = f" (send {attempt} of {self._max_attempts})"
        for index, record in pending:
            try:
                self._produce(stream, record, index, outcome)
            except Exception as exc:  # noqa: BLE001 - a refused send is that record's failure
                why[index] = f"not sent to {stream}: {exc}{tries}"
                retry.append((index, record))
                continue
            sent.append((index, record))
        if sent:
            self.requests += 1
            left = self._producer.flush(self._timeout_s)
            if left:
                self._producer.poll(0)
        for index, record in sent:
            if index not in outcome:
                why[index] = (f"no acknowledgement from {stream} within "
                                     f"{self._timeout_s:g} s{tries}")
                retry.append((index, record))
            elif outcome[index] is not None:
                error = outcome[index]
                why[index] = f"not written to {stream}: {error}{tries}"
                (retry if _retriable(error) else final).append((index, record))
        return retry, final, why

    def _produce(self, topic: str, record: OutRecord, index: int,
                 outcome: dict[int, Any]) -> None:
        def delivered(error: Any, _message: Any) -> None:
            outcome[index] = error

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
