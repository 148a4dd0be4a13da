"""AWS list prices in us-east-1, in one table, with the date they were taken and their sources.

`cascata bench` and `cascata plan` price usage with these figures only. They are on-demand list
prices without free tiers, savings plans or volume tiers (the first tier applies). They were
compiled on `AS_OF` from the pricing pages in `SOURCES`; the pages render their figures with
scripts, so check them there before you rely on a number, and update this table (and `AS_OF`)
when AWS changes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

AS_OF = "2026-11-25"
REGION = "us-east-1"
HOURS_PER_MONTH = 730
"""AWS's own convention for monthly figures (its calculator uses 730 hours)."""

SOURCES = MappingProxyType(
    {
        "kinesis": "https://aws.amazon.com/kinesis/data-streams/pricing/",
        "lambda": "https://aws.amazon.com/lambda/pricing/",
        "dynamodb": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        "dynamodb_provisioned": "https://aws.amazon.com/dynamodb/pricing/provisioned/",
        "s3": "https://aws.amazon.com/s3/pricing/",
        "sns": "https://aws.amazon.com/sns/pricing/",
        "sqs": "https://aws.amazon.com/sqs/pricing/",
        "kms": "https://aws.amazon.com/kms/pricing/",
        "firehose": "https://aws.amazon.com/firehose/pricing/",
        "cloudwatch": "https://aws.amazon.com/cloudwatch/pricing/",
        "msk": "https://aws.amazon.com/msk/pricing/",
        "lambda_kafka_pollers": "https://docs.aws.amazon.com/lambda/latest/dg/"
                                "kafka-scaling-modes.html",
        "privatelink": "https://aws.amazon.com/privatelink/pricing/",
    }
)


@dataclass(frozen=True, slots=True)
class Price:
    usd: float
    per: str
    source: str
    note: str = ""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"usd": self.usd, "per": self.per, "source": SOURCES[self.source]}
        if self.note:
            out["note"] = self.note
        return out


PRICES = MappingProxyType(
    {
        # Kinesis Data Streams, provisioned mode.
        "kinesis_shard_hour": Price(0.015, "shard-hour", "kinesis"),
        "kinesis_put_payload_unit": Price(
            0.014 / 1e6, "PUT payload unit (each 25 KB chunk of a record)", "kinesis"
        ),
        # Kinesis Data Streams, on-demand (standard) mode.
        "kinesis_on_demand_stream_hour": Price(0.04, "stream-hour", "kinesis"),
        "kinesis_on_demand_ingest_gb": Price(
            0.08, "GB written (each record rounded up to 1 KB)", "kinesis"
        ),
        "kinesis_on_demand_retrieval_gb": Price(
            0.04, "GB read by shared-throughput consumers", "kinesis",
            note="rounded up to 1 KB per record here too (conservative)",
        ),
        # Lambda (the stacks deploy arm64).
        "lambda_request": Price(0.20 / 1e6, "invocation", "lambda"),
        "lambda_gb_second_arm": Price(0.0000133334, "GB-second (arm64)", "lambda"),
        "lambda_gb_second_x86": Price(0.0000166667, "GB-second (x86_64)", "lambda"),
        # DynamoDB, on-demand (prices since the 1 November 2024 reduction) and provisioned.
        "dynamodb_write_request_unit": Price(0.625 / 1e6, "write request unit", "dynamodb"),
        "dynamodb_read_request_unit": Price(0.125 / 1e6, "read request unit", "dynamodb"),
        "dynamodb_storage_gb_month": Price(
            0.25, "GB-month stored (Standard table class; items and index entries, 100 bytes "
            "overhead each)", "dynamodb", note="the first 25 GB a month are free (not applied)"),
        "dynamodb_pitr_gb_month": Price(
            0.20, "GB-month of continuous backups (point-in-time recovery), by table size",
            "dynamodb", note="every view and state table has it on, in every stage"),
        "dynamodb_wcu_hour": Price(0.00065, "provisioned WCU-hour", "dynamodb_provisioned"),
        "dynamodb_rcu_hour": Price(0.00013, "provisioned RCU-hour", "dynamodb_provisioned"),
        # S3 Standard requests (quarantine and on-failure objects).
        "s3_put": Price(0.005 / 1000, "PUT, COPY, POST or LIST request", "s3"),
        "s3_get": Price(0.0004 / 1000, "GET or other request", "s3"),
        "s3_storage_gb_month": Price(0.023, "GB-month (Standard, first 50 TB)", "s3"),
        # Data Firehose (the archive of the origin streams), Kinesis Data Streams as source.
        "firehose_ingest_gb": Price(
            0.029, "GB ingested, each record rounded up to the next 5 KB (first 500 TB)",
            "firehose"),
        "firehose_dynamic_partitioning_gb": Price(
            0.020, "GB processed by dynamic partitioning", "firehose"),
        "firehose_dynamic_partitioning_objects": Price(
            0.005 / 1000, "S3 object delivered by dynamic partitioning", "firehose"),
        # CloudWatch Logs (every function's log group).
        "cloudwatch_logs_ingest_gb": Price(0.50, "GB ingested (standard log class)",
                                           "cloudwatch"),
        "cloudwatch_logs_storage_gb_month": Price(0.03, "GB-month archived (compressed)",
                                                  "cloudwatch"),
        # SNS (notify) and SQS.
        "sns_publish": Price(0.50 / 1e6, "publish (each 64 KB chunk)", "sns"),
        "sqs_request": Price(0.40 / 1e6, "standard queue request", "sqs"),
        # KMS: streams and tables use a customer-managed key.
        "kms_key_month": Price(1.0, "customer-managed key per month", "kms"),
        "kms_request": Price(0.03 / 10_000, "request", "kms"),
        # MSK Serverless (compiled 2026-12-04; the same table is reproduced by several
        # independent pages, and the figures below agree with all of them).
        "msk_serverless_cluster_hour": Price(0.75, "cluster-hour", "msk"),
        "msk_serverless_partition_hour": Price(0.0015, "partition-hour", "msk"),
        "msk_serverless_storage_gib_month": Price(0.10, "GiB-month stored", "msk"),
        "msk_serverless_data_in_gib": Price(0.10, "GiB written by producers", "msk"),
        "msk_serverless_data_out_gib": Price(0.05, "GiB read by consumers", "msk"),
        # MSK provisioned, Standard brokers (compiled 2026-12-04 from AWS's own MSK sizing
        # tool, whose us-east-1 constants cite the pricing page, and matching published
        # reproductions). Only the Graviton broker is listed: the kafka.t3.small price could
        # not be confirmed, and that size cannot run in KRaft mode anyway.
        "msk_broker_hour_m7g_large": Price(0.204, "kafka.m7g.large broker-hour", "msk"),
        "msk_broker_storage_gb_month": Price(0.10, "GB-month of broker storage (EBS)", "msk"),
        # Lambda provisioned Kafka pollers: each event source mapping outside a poller group
        # holds at least one Event Poller Unit (the developer guide's worked example).
        "lambda_event_poller_unit_hour": Price(
            0.185, "Event Poller Unit-hour (provisioned Kafka pollers)", "lambda_kafka_pollers"),
        # Interface VPC endpoints (AWS PrivateLink).
        "vpc_interface_endpoint_az_hour": Price(
            0.01, "interface endpoint-hour in one Availability Zone", "privatelink"),
        "vpc_interface_endpoint_gb": Price(
            0.01, "GB processed by interface endpoints (first 1 PB)", "privatelink"),
    }
)


def usd(name: str) -> float:
    return PRICES[name].usd


def amount(name: str) -> Decimal:
    """The price as written in the table, for money arithmetic: twelve significant digits
    undo the binary error of the table's floats and divisions, so 0.204 is Decimal('0.204')
    and 0.20 / 1e6 is Decimal('2E-7'), not their binary neighbours."""
    return Decimal(format(PRICES[name].usd, ".12g"))


REQUEST_PRICES = MappingProxyType(
    {
        "s3.PutObject": "s3_put",
        "s3.CopyObject": "s3_put",
        "s3.ListObjectsV2": "s3_put",
        "s3.GetObject": "s3_get",
        "s3.HeadObject": "s3_get",
        "sns.Publish": "sns_publish",
        "sqs.SendMessage": "sqs_request",
        "sqs.SendMessageBatch": "sqs_request",
        "sqs.ReceiveMessage": "sqs_request",
        "sqs.DeleteMessage": "sqs_request",
    }
)
"""Operations billed per request. DynamoDB is billed by capacity units, Kinesis by payload
units or bytes, and the remaining operations the functions call are free."""


def to_json() -> dict[str, object]:
    return {
        "as_of": AS_OF,
        "region": REGION,
        "hours_per_month": HOURS_PER_MONTH,
        "prices": {name: price.to_json() for name, price in PRICES.items()},
    }
