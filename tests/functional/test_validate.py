"""validate on moto: valid events flow on, every invalid one is quarantined with its reason."""

from __future__ import annotations

import base64
import json
from typing import Any

from cascata_runtime.adapters import S3ObjectStore
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.handler import TransformDependencies
from payments.handlers import validate
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
