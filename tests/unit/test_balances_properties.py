"""Property: balances equal the reference whatever the mix of redeliveries and duplicates.

The pipeline runs on in-memory ports, from payments-raw to the balances view: validate (with
the origin gate), postings, balances. Hypothesis draws payments (some sent twice by the
producer), then every processor reads its input in batches of random size, with random
redeliveries of earlier batches (a transform re-emits their outputs: copies at new positions),
records reordered within one emitting invocation, and random write failures followed by
Lambda's retry from the lowest failed sequence number.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from cascata_runtime.envelope import Envelope, parse_envelope
from cascata_runtime.handler import TransformDependencies
from cascata_runtime.origin import OriginPolicy
from cascata_runtime.shell import Origins
from payments.domain.balances import AccountBalance, apply_postings
from payments.domain.postings import postings_for
from payments.domain.schemas import LedgerPosting, PaymentMade, parse_event
from payments.handlers import balances, postings, validate
from tests.support.events import LambdaContext, kinesis_record, msk_event, payment
from tests.support.fakes import MemoryItems, MemoryMarkers, MemoryObjects, MemorySink
from tests.support.streams import FIRST_SEQUENCE, Faults, Kinesis, deliver

ACCOUNTS = ["alice", "bob", "carol", "dave", "erin"]
RAW, VALIDATED, LEDGER = "payments-raw", "payments-validated", "ledger-entries"


@st.composite
def payments(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 30))
    out = []
    for i in range(n):
        payer = draw(st.sampled_from(ACCOUNTS))
        payee = draw(st.sampled_from([a for a in ACCOUNTS if a != payer]))
        out.append(payment(f"p{i}", payer=payer, payee=payee,
                           amount_minor=draw(st.integers(1, 10**6)),
                           currency=draw(st.sampled_from(["USD", "EUR", "JPY"]))))
    dups = draw(st.lists(st.integers(0, n - 1), max_size=8))
    # a producer duplicate is sent again a little later, as producer retries are
    for d in dups:
        out.insert(min(len(out), d + draw(st.integers(1, 5))), out[d])
    return out


def reference(sent: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    seen: set[str] = set()
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for obj in sent:
        if obj["event_id"] in seen:
            continue
        seen.add(obj["event_id"])
        d = obj["data"]
        out[d["payer"]][d["currency"]] -= d["amount_minor"]
        out[d["payee"]][d["currency"]] += d["amount_minor"]
    return {a: {c: v for c, v in b.items()} for a, b in out.items()}


class Pipeline:
    """payments-raw -> validate -> postings -> balances, each on in-memory ports."""

    def __init__(self) -> None:
        self.kinesis = Kinesis()
        self.sink = MemorySink()
        self.items = MemoryItems()
        self.markers = MemoryMarkers()
        gate = Origins({RAW: OriginPolicy()}, self.markers)
        self.validate = validate.make_handler(TransformDependencies(
            VALIDATED, "q", self.sink, MemoryObjects(), gate))
        self.postings = postings.make_handler(TransformDependencies(
            LEDGER, "q", self.sink, MemoryObjects()))
        self.balances = balances.make_handler(balances.Dependencies(
            quarantine_bucket="q", items=self.items, objects=MemoryObjects()))

    def send(self, sent: list[dict[str, Any]]) -> None:
        for obj in sent:
            self.kinesis.put(RAW, obj, obj["key"])

    def run(self, data: st.DataObject | None) -> None:
        emitting = Faults(sink=self.sink, tags=4)
        deliver(self.validate, LambdaContext("validate"), self.kinesis, [RAW], data,
                faults=emitting, sink=self.sink, output=VALIDATED, shuffle=True)
        deliver(self.postings, LambdaContext("postings"), self.kinesis, [VALIDATED], data,
                faults=emitting, sink=self.sink, output=LEDGER, shuffle=True)
        deliver(self.balances, LambdaContext("balances"), self.kinesis, [LEDGER], data,
                faults=Faults(items=self.items, keys=ACCOUNTS))

    def stored(self) -> dict[str, dict[str, int]]:
        return {a: {c: int(v) for c, v in item["balances"].items()}
                for a, item in self.items.items.items()}


@settings(max_examples=60, deadline=None)
@given(sent=payments(), schedule=st.data())
def test_balances_equal_the_reference_under_any_redelivery(
    sent: list[dict[str, Any]], schedule: st.DataObject
) -> None:
    # Given payments sent with producer duplicates
    pipeline = Pipeline()
    pipeline.send(sent)
    # When every processor reads them with failures, retries, redeliveries and re-emits
    pipeline.run(schedule)
    # Then every balance holds each distinct payment once, and money is conserved
    stored = pipeline.stored()
    assert stored == reference(sent)
    totals: dict[str, int] = defaultdict(int)
    for per_currency in stored.values():
        for currency, amount in per_currency.items():
            totals[currency] += amount
    assert all(v == 0 for v in totals.values())


def test_the_property_catches_a_double_apply() -> None:
    # Guard: the pipeline really produces copies (a producer duplicate, a re-emitted postings
    # batch), so the property above depends on the gate and the fences turning them away.
    pipeline = Pipeline()
    first = payment("p1", payer="alice", payee="bob", amount_minor=20_000)
    pipeline.send([first, first])
    ctx = LambdaContext("test")
    # the gate lets one of the two raw records through
    [raw_shard] = pipeline.kinesis.of(RAW).values()
    assert pipeline.validate({"Records": raw_shard}, ctx) == {"batchItemFailures": []}
    pipeline.kinesis.take(pipeline.sink, VALIDATED, list)
    assert pipeline.kinesis.count(VALIDATED) == 1
    # postings crashes after emitting and its batch is delivered again: two copies
    [validated] = pipeline.kinesis.of(VALIDATED).values()
    for _ in range(2):
        pipeline.postings({"Records": validated}, ctx)
        pipeline.kinesis.take(pipeline.sink, LEDGER, list)
    ledger = [r for rs in pipeline.kinesis.of(LEDGER).values() for r in rs]
    assert len(ledger) == 4
    naive: dict[str, int] = defaultdict(int)
    for record in ledger:
        posting = decode_posting(record)
        naive[posting.account] += posting.signed_minor
    assert naive["bob"] == 40_000
    # while balances applies each posting once
    for records in pipeline.kinesis.of(LEDGER).values():
        assert pipeline.balances({"Records": records}, ctx) == {"batchItemFailures": []}
    assert pipeline.stored() == {"alice": {"USD": -20_000}, "bob": {"USD": 20_000}}


def decode_posting(record: dict[str, Any]) -> LedgerPosting:
    import base64

    env = parse_envelope(json.loads(base64.b64decode(record["kinesis"]["data"])))
    assert isinstance(env, Envelope)
    posting = parse_event(env)
    assert isinstance(posting, LedgerPosting)
    return posting


def bob_posting() -> Envelope:
    env = parse_envelope(payment("p1"))
    assert isinstance(env, Envelope)
    event = parse_event(env)
    assert isinstance(event, PaymentMade)
    _, credit = postings_for(event)
    return credit


def test_apply_postings_adds_signed_amounts_per_currency() -> None:
    env = parse_envelope(payment("p1", amount_minor=250, currency="EUR"))
    assert isinstance(env, Envelope)
    event = parse_event(env)
    assert isinstance(event, PaymentMade)
    debit, credit = (parse_event(e) for e in postings_for(event))
    assert isinstance(debit, LedgerPosting) and isinstance(credit, LedgerPosting)
    state = apply_postings(AccountBalance("alice", postings=3), [debit, debit])
    assert state.balances == {"EUR": -500} and state.postings == 5
    assert AccountBalance.from_item("alice", state.to_item()) == state


def test_real_kinesis_sequence_numbers_survive_the_item_round_trip() -> None:
    # Given a posting read at a 56-digit sequence number (DynamoDB numbers hold 38 digits)
    items = MemoryItems()
    handle = balances.make_handler(balances.Dependencies(
        quarantine_bucket="q", items=items, objects=MemoryObjects()))
    record = kinesis_record(bob_posting().to_bytes(), sequence=FIRST_SEQUENCE,
                            partition_key="bob", stream=LEDGER)
    assert handle({"Records": [record]}, LambdaContext("balances")) == {"batchItemFailures": []}
    # When the item goes through DynamoDB's serializer and back
    wire = {k: TypeSerializer().serialize(v) for k, v in items.items["bob"].items()}
    items.items["bob"] = {k: TypeDeserializer().deserialize(v) for k, v in wire.items()}
    assert str(FIRST_SEQUENCE) in json.dumps(wire["fences"])
    # Then the fences it carries still turn the same record away
    assert handle({"Records": [record]}, LambdaContext("balances")) == {"batchItemFailures": []}
    assert items.items["bob"]["balances"] == {"USD": 20_000}
    assert items.items["bob"]["postings"] == 1


def test_kafka_offset_zero_is_applied_not_taken_for_a_redelivery() -> None:
    items = MemoryItems()
    handle = balances.make_handler(balances.Dependencies(
        quarantine_bucket="q", items=items, objects=MemoryObjects()))
    event = msk_event([bob_posting().to_json()], topic=LEDGER, start=0)
    assert handle(event, LambdaContext("balances")) == {"batchItemFailures": []}
    assert items.items["bob"]["balances"] == {"USD": 20_000}
    assert handle(event, LambdaContext("balances")) == {"batchItemFailures": []}
    assert items.items["bob"]["balances"] == {"USD": 20_000}
