"""validate on moto: valid events flow on, every invalid one is quarantined with its reason."""

from __future__ import annotations

import base64
import json
from typing import Any

from cascata_runtime.adapters import S3ObjectStore
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.handler import TransformDependencies
from payments.handlers import validate
from payments.pipeline import PIPELINE
from tests.functional.conftest import BUCKET, VALIDATED, Aws
from tests.support.events import LambdaContext, kinesis_event, msk_event, payment


def handler_for(aws: Aws, kinesis: Any = None) -> Any:
    deps = TransformDependencies(
        output_stream=VALIDATED,
        quarantine_bucket=BUCKET,
        sink=KinesisSink(kinesis or aws.kinesis, sleep=lambda _s: None),
        objects=S3ObjectStore(aws.s3),
    )
    return validate.make_handler(deps)


CTX = LambdaContext("cascata-test-validate")


def test_valid_payments_are_emitted_normalised_and_keyed_by_payer(aws: Aws) -> None:
    # Given two valid payments, one with a lower-case currency
    event = kinesis_event([payment("e1"), payment("e2", payer="carol", currency="eur")])
    # When validate runs
    response = handler_for(aws)(event, CTX)
    # Then nothing failed and both are on the validated stream, normalised, with lineage
    assert response == {"batchItemFailures": []}
    out = {r["event"]["event_id"]: r for r in aws.stream_records(VALIDATED)}
    assert set(out) == {"e1", "e2"}
    assert out["e2"]["key"] == "carol"
    assert out["e2"]["event"]["data"]["currency"] == "EUR"
    assert out["e1"]["event"]["causation"] == {
        "stream": "cascata-test-payments-raw", "shard": "shardId-000000000000", "sequence": "1"}
    assert aws.quarantined() == []


def test_every_invalid_event_is_quarantined_with_reason_and_position(aws: Aws) -> None:
    bad_amount = payment("bad1", amount_minor=12.5)
    same_party = payment("bad2", payee="alice")
    unknown = payment("bad3", type="order.placed")
    customer = {"event_id": "c1", "type": "customer.registered", "version": 1, "key": "alice",
                "occurred_at": "2020-06-25T14:00:00Z",
                "data": {"customer_id": "alice", "name": "A", "email": "a@example.com",
                         "country": "GB", "tier": "basic"}}
    event = kinesis_event([bad_amount, b"not json", same_party, payment("ok"), unknown, customer])
    response = handler_for(aws)(event, CTX)
    assert response == {"batchItemFailures": []}
    assert [r["event"]["event_id"] for r in aws.stream_records(VALIDATED)] == ["ok"]
    reasons = {q["source"]["sequence"]: q["reason"]["code"] for q in aws.quarantined()}
    assert reasons == {"1": "amount_not_integer", "2": "not_json", "3": "same_party",
                       "5": "unknown_schema", "6": "unexpected_type"}
    not_json = next(q for q in aws.quarantined() if q["source"]["sequence"] == "2")
    assert base64.b64decode(not_json["data_base64"]) == b"not json"
    assert not_json["source"]["stream"] == "cascata-test-payments-raw"


def test_an_oversized_record_is_quarantined_not_retried(aws: Aws) -> None:
    huge = payment("huge")
    huge["data"]["note"] = "x" * 1_100_000
    response = handler_for(aws)(kinesis_event([huge]), CTX)
    assert response == {"batchItemFailures": []}
    [entry] = aws.quarantined()
    assert entry["reason"]["code"] == "too_large"


def test_redelivering_the_same_batch_writes_the_same_quarantine_objects(aws: Aws) -> None:
    event = kinesis_event([payment("bad", currency="ZZZ"), payment("ok")])
    handle = handler_for(aws)
    handle(event, CTX)
    first = sorted(q["_key"] for q in aws.quarantined())
    handle(event, CTX)
    assert sorted(q["_key"] for q in aws.quarantined()) == first
    # validate is stateless: the re-emitted payment carries the same id, which the views use
    ids = [r["event"]["event_id"] for r in aws.stream_records(VALIDATED)]
    assert ids == ["ok", "ok"]


class FailingEntries:
    """A Kinesis client whose PutRecords fails every entry for the given partition keys."""

    def __init__(self, real: Any, keys: set[str]) -> None:
        self.real = real
        self.keys = keys

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        ok = [r for r in kwargs["Records"] if r["PartitionKey"] not in self.keys]
        response = self.real.put_records(StreamName=kwargs["StreamName"], Records=ok) if ok else {
            "Records": []}
        results = iter(response["Records"])
        merged = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
            if r["PartitionKey"] in self.keys else next(results)
            for r in kwargs["Records"]
        ]
        return {"FailedRecordCount": len(kwargs["Records"]) - len(ok), "Records": merged}


def test_only_records_whose_output_failed_are_reported(aws: Aws) -> None:
    # Given PutRecords keeps failing for carol's payments
    kinesis = FailingEntries(aws.kinesis, {"carol"})
    event = kinesis_event([payment("a1"), payment("c1", payer="carol"), payment("a2")])
    # When validate runs
    response = handler_for(aws, kinesis)(event, CTX)
    # Then only carol's record is reported, so Lambda retries from it
    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert sorted(r["event"]["event_id"] for r in aws.stream_records(VALIDATED)) == ["a1", "a2"]


def test_a_kafka_batch_goes_through_the_same_decoder(aws: Aws) -> None:
    event = msk_event([payment("k1"), json.dumps({"event_id": "x"})], start=41)
    response = handler_for(aws)(event, CTX)
    assert response == {"batchItemFailures": []}
    [out] = aws.stream_records(VALIDATED)
    assert out["event"]["event_id"] == "k1"
    assert out["event"]["causation"] == {"stream": "cascata-test-payments-raw", "shard": "0",
                                         "sequence": "41"}
    [bad] = aws.quarantined()
    assert bad["reason"]["field"] == "type" and bad["source"]["sequence"] == "42"


def test_kafka_partial_failures_use_the_partition_and_offset_identifier(aws: Aws) -> None:
    kinesis = FailingEntries(aws.kinesis, {"alice"})
    response = handler_for(aws, kinesis)(msk_event([payment("k1")], start=7), CTX)
    assert response == {"batchItemFailures": [
        {"itemIdentifier": {"partition": "cascata-test-payments-raw-0", "offset": 7}}]}


def gated_handler(aws: Aws) -> Any:
    """validate built from the declared environment: the origin gate on, as deployed."""
    env = PIPELINE.environment("validate", stage="test")
    aws.s3.create_bucket(Bucket=env["QUARANTINE_BUCKET"])
    settings = validate.SETTINGS.from_env(env)
    return validate.make_handler(validate.dependencies(
        settings, client=lambda service: {"kinesis": aws.kinesis, "s3": aws.s3,
                                          "dynamodb": aws.dynamodb}[service]))


def test_a_producer_retry_is_suppressed_within_the_dedupe_horizon(aws: Aws) -> None:
    handle = gated_handler(aws)
    # Given e1 and a copy of it in the same batch, then another copy 59 minutes later
    handle(kinesis_event([payment("e1"), payment("e1"), payment("e2")]), CTX)
    later = kinesis_event([payment("e1"), payment("e3")], start=10)
    for record in later["Records"]:
        record["kinesis"]["approximateArrivalTimestamp"] += 59 * 60
    assert handle(later, CTX) == {"batchItemFailures": []}
    # Then each event is on the validated stream once, the first arrival's copy
    out = aws.stream_records(VALIDATED)
    assert sorted(r["event"]["event_id"] for r in out) == ["e1", "e2", "e3"]
    [e1] = [r["event"] for r in out if r["event"]["event_id"] == "e1"]
    assert e1["lineage"]["origin"]["sequence"] == "1" and e1["lineage"]["low_water"] == "1"
    # And a copy arriving after the horizon is a new event again
    much_later = kinesis_event([payment("e1")], start=20)
    much_later["Records"][0]["kinesis"]["approximateArrivalTimestamp"] += 3601
    handle(much_later, CTX)
    assert sum(r["event"]["event_id"] == "e1" for r in aws.stream_records(VALIDATED)) == 2


def test_a_redelivered_batch_passes_the_gate_again(aws: Aws) -> None:
    # Given validate claimed e1 and then failed to emit it (the batch is retried)
    handle = gated_handler(aws)
    event = kinesis_event([payment("e1")])
    handle(event, CTX)
    # When the same record is delivered again
    assert handle(event, CTX) == {"batchItemFailures": []}
    # Then it is not taken for a copy: the marker holds its own position
    assert [r["event"]["event_id"] for r in aws.stream_records(VALIDATED)] == ["e1", "e1"]


def test_event_times_outside_the_declared_bounds_are_quarantined(aws: Aws) -> None:
    # Given payments dated 2099, year 1 and a plausible time (arrival: 2020-06-25T14:06:40Z)
    event = kinesis_event([payment("f", occurred_at="2099-01-01T00:00:00Z"),
                           payment("o", occurred_at="0001-01-01T00:00:00Z"),
                           payment("ok", occurred_at="2020-06-25T14:07:00Z")])
    assert gated_handler(aws)(event, CTX) == {"batchItemFailures": []}
    bucket = PIPELINE.environment("validate", stage="test")["QUARANTINE_BUCKET"]
    codes = sorted(
        json.loads(aws.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())["reason"]["code"]
        for o in aws.s3.list_objects_v2(Bucket=bucket)["Contents"]
    )
    assert codes == ["event_time_in_future", "event_time_too_early"]
    assert [r["event"]["event_id"] for r in aws.stream_records(VALIDATED)] == ["ok"]
