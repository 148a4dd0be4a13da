"""The sink of the broker a pipeline runs on, chosen by the function's injected clients.

Handlers never name a broker: they ask `stream_sink(client)` for the sink their outputs go to.
The client factory answers `client(KAFKA_PRODUCER)` with a Kafka producer when the pipeline
runs on Kafka (on Lambda, `cascata_runtime.adapters.client` builds one from
`CASCATA_BROKER=msk` and `KAFKA_BOOTSTRAP_SERVERS`; the local runtime hands its loopback
broker's), and with None on Kinesis, where the sink writes with PutRecords. A declared stream's
physical name is its Kinesis stream and its Kafka topic alike, so the handler's settings do not
change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cascata_runtime.errors import ConfigurationError
from cascata_runtime.ports import Sink

KAFKA_PRODUCER = "kafka-producer"
"""The client name under which a factory gives a Kafka producer (or None: no Kafka)."""
KAFKA_ADMIN = "kafka-admin"
"""The client name under which a factory gives a Kafka admin client (or None: no Kafka)."""
BROKER_VARIABLE = "CASCATA_BROKER"
BOOTSTRAP_VARIABLE = "KAFKA_BOOTSTRAP_SERVERS"
AUTH_VARIABLE = "KAFKA_AUTH"
"""`iam` (MSK: TLS and IAM, the default) or `none` (a plaintext broker, such as the local one)."""


def kafka_client(client: Callable[[str], Any], name: str, *methods: str) -> Any:
    """The factory's Kafka client `name` if it has one with `methods`, else None (the
    pipeline is on Kinesis). A factory that knows no such client (a mapping of test clients,
    a boto3-only factory) means Kinesis; a misconfigured Kafka environment raises
    `ConfigurationError`."""
    try:
        found = client(name)
    except ConfigurationError:
        raise
    except Exception:  # noqa: BLE001 - any factory without Kafka: the pipeline is on Kinesis
        return None
    if found is None or not all(callable(getattr(found, m, None)) for m in methods):
        return None
    return found


def stream_sink(client: Callable[[str], Any]) -> Sink:
    """A `KafkaSink` when the factory has a Kafka producer, else a `KinesisSink`."""
    producer = kafka_client(client, KAFKA_PRODUCER, "produce", "flush")
    if producer is not None:
        from cascata_runtime.kafka_sink import KafkaSink

        return KafkaSink(producer)
    from cascata_runtime.emitter import KinesisSink

    return KinesisSink(client("kinesis"))


def kafka_producer(environ: Mapping[str, str]) -> Any:
    """The function's Kafka producer as its environment describes it, or None on Kinesis."""
    config = _kafka_config(environ)
    if config is None:
        return None
    from confluent_kafka import Producer

    from cascata_runtime.kafka_sink import producer_settings

    return Producer({**config, **producer_settings()})


def kafka_admin(environ: Mapping[str, str]) -> Any:
    """A Kafka admin client (topic metadata, offsets) as the environment describes the
    brokers, or None on Kinesis."""
    config = _kafka_config(environ)
    if config is None:
        return None
    from confluent_kafka.admin import AdminClient

    return AdminClient(config)


def _kafka_config(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The connection settings (brokers, TLS, IAM) of the environment's Kafka cluster."""
    broker = environ.get(BROKER_VARIABLE) or "kinesis"
    if broker == "kinesis":
        return None
    if broker != "msk":
        raise ConfigurationError(f"{BROKER_VARIABLE} must be kinesis or msk, not {broker!r}")
    servers = environ.get(BOOTSTRAP_VARIABLE)
    if not servers:
        raise ConfigurationError(f"{BROKER_VARIABLE}=msk needs {BOOTSTRAP_VARIABLE}")
    auth = environ.get(AUTH_VARIABLE) or "iam"
    if auth not in ("iam", "none"):
        raise ConfigurationError(f"{AUTH_VARIABLE} must be iam or none, not {auth!r}")
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if auth == "iam" and not region:
        raise ConfigurationError("IAM authentication to MSK needs AWS_REGION")
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        raise ConfigurationError("the pipeline runs on Kafka but confluent-kafka is not in "
                                 "the function's package") from None
    from cascata_runtime.kafka_sink import connection_config

    return connection_config(servers, region=region or "", iam=auth == "iam")
