"""profiles, pure: last-writer-wins by event time, activity, counterparties, and the property
that the profile depends only on the set of distinct events.

The property runs the real handlers on in-memory ports. Hypothesis draws customer events and
payments for a few customers (event times drawn from a handful of instants, so ties between
events are common and the event-id tie-breaker matters), sends them in a random arrival order
with producer duplicates: customer events to the customers stream (an origin stream of
profiles, which gates it), payments to payments-raw, which validate gates and re-emits to
payments-validated with random redeliveries (copies at new positions). profiles then reads the
four shards of its two streams interleaved, in batches of random size, with random write
failures followed by Lambda's retry from the lowest failed sequence number and random
redeliveries of earlier batches. Every profile must equal a reference computed directly from
the distinct events. Turning copies away is the state engine's and the origin gate's job
(`tests/unit/test_state_engine.py`); `apply_facts` applies what it is given.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from cascata_runtime.envelope import Envelope, Rejection, SourcePosition, parse_envelope
from cascata_runtime.handler import TransformDependencies
from cascata_runtime.lineage import input_lineages
from cascata_runtime.origin import OriginPolicy
from cascata_runtime.shell import Origins
from payments.domain.profiles import Fact, Profile, apply_facts, keyed_facts, time_text
from payments.handlers import profiles, validate
from tests.support.events import (
    LambdaContext,
    customer_registered,
    customer_updated,
    payment,
)
from tests.support.fakes import MemoryItems, MemoryMarkers, MemoryObjects, MemorySink
from tests.support.streams import Faults, Kinesis, deliver

CUSTOMERS_STREAM = "cascata-test-customers"
PAYMENTS_STREAM = "cascata-test-payments-validated"
RAW_STREAM = "cascata-test-payments-raw"
SHARD0 = "shardId-000000000000"
CTX = LambdaContext("profiles")


def at(stream: str, shard: str, sequence: int, *objs: dict[str, Any]) -> list[Fact]:
    """The facts of events read at consecutive positions of one shard, one record each."""
    positions = [SourcePosition(stream, shard, str(sequence + n)) for n in range(len(objs))]
    envelopes: list[Envelope | Rejection | None] = [
        parse_envelope(obj, pos) for obj, pos in zip(objs, positions, strict=True)
    ]
    keyed, rejected = keyed_facts(envelopes, input_lineages(positions, [None] * len(objs)))
    assert rejected == []
    return [k.value for k in keyed]


def only(customer: str, facts: list[Fact]) -> list[Fact]:
    return [f for f in facts if f.customer_id == customer]


def apply_all(state: Profile, *batches: list[Fact], **kwargs: Any) -> Profile:
    for batch in batches:
        state = apply_facts(state, only(state.customer_id, batch), **kwargs)
    return state


def fields(state: Profile) -> dict[str, str]:
    return {name: v.value for name, v in state.fields.items()}


def test_an_update_that_arrives_before_its_registration_is_kept() -> None:
    # Given a tier upgrade at 15:00 and the registration it amends at 14:00
    update = customer_updated("u1", tier="premium", occurred_at="2020-06-25T15:00:00Z")
    registration = customer_registered("r1", tier="basic", occurred_at="2020-06-25T14:00:00Z")
    # When the update arrives first, or second
    update_first = apply_all(Profile("alice"), at(CUSTOMERS_STREAM, SHARD0, 1, update),
                             at(CUSTOMERS_STREAM, SHARD0, 2, registration))
    registration_first = apply_all(Profile("alice"), at(CUSTOMERS_STREAM, SHARD0, 1, registration),
                                   at(CUSTOMERS_STREAM, SHARD0, 2, update))
    # Then the later event wins the tier and the registration fills in the rest, either way
    expected = {"name": "Alice Liddell", "email": "alice@example.com", "country": "GB",
                "tier": "premium"}
    assert fields(update_first) == fields(registration_first) == expected
    assert update_first.tier == "premium"
    assert update_first.fields["tier"].stamp.event_id == "u1"
    assert update_first.fields["name"].stamp.at == datetime(2020, 6, 25, 14, tzinfo=UTC)
    assert update_first.registered_at == datetime(2020, 6, 25, 14, tzinfo=UTC)


def test_events_of_the_same_instant_are_ordered_by_event_id() -> None:
    same = "2020-06-25T15:00:00Z"
    a = customer_updated("evt-a", tier="plus", occurred_at=same)
    b = customer_updated("evt-b", tier="basic", occurred_at=same)
    for first, second in ((a, b), (b, a)):
        state = apply_all(Profile("alice"), at(CUSTOMERS_STREAM, SHARD0, 1, first),
                          at(CUSTOMERS_STREAM, SHARD0, 2, second))
        assert state.tier == "basic" and state.fields["tier"].stamp.event_id == "evt-b"


def test_a_payment_before_the_registration_creates_a_profile_with_activity_only() -> None:
    # Given a payment from alice to bob, neither registered yet
    paid = at(PAYMENTS_STREAM, SHARD0, 1,
              payment("p1", payer="alice", payee="bob", amount_minor=20000, currency="USD"))
    alice = apply_all(Profile("alice"), paid)
    bob = apply_all(Profile("bob"), paid)
    # Then both profiles exist with activity and no registration data
    assert alice.fields == {} and alice.tier is None and alice.registered_at is None
    assert alice.as_payer["USD"].count == 1 and alice.as_payer["USD"].volume_minor == 20000
    assert alice.as_payee == {} and bob.as_payer == {}
    assert bob.as_payee["USD"].volume_minor == 20000
    assert set(alice.counterparties) == {"bob"} and set(bob.counterparties) == {"alice"}
    assert alice.first_seen_at == alice.last_seen_at == datetime(2020, 6, 25, 14, 6, tzinfo=UTC)
    assert "tier" not in alice.to_item()
    # When the registration arrives afterwards
    registered = apply_all(alice, at(CUSTOMERS_STREAM, SHARD0, 1, customer_registered("r1")))
    # Then it fills in the fields and keeps the activity
    assert registered.tier == "plus" and registered.to_item()["tier"] == "plus"
    assert registered.as_payer == alice.as_payer
    assert registered.first_seen_at == alice.first_seen_at


def test_activity_counts_and_sums_per_currency_and_direction() -> None:
    batch = at(PAYMENTS_STREAM, SHARD0, 1,
               payment("p1", payer="alice", payee="bob", amount_minor=100, currency="USD",
                       occurred_at="2020-06-25T14:00:00Z"),
               payment("p2", payer="alice", payee="carol", amount_minor=250, currency="USD",
                       occurred_at="2020-06-25T12:00:00Z"),
               payment("p3", payer="bob", payee="alice", amount_minor=7, currency="JPY",
                       occurred_at="2020-06-25T16:30:00.000250Z"))
    alice = apply_all(Profile("alice"), batch)
    assert {c: (f.count, f.volume_minor) for c, f in alice.as_payer.items()} == {"USD": (2, 350)}
    assert {c: (f.count, f.volume_minor) for c, f in alice.as_payee.items()} == {"JPY": (1, 7)}
    assert alice.first_seen_at == datetime(2020, 6, 25, 12, tzinfo=UTC)
    assert alice.last_seen_at == datetime(2020, 6, 25, 16, 30, 0, 250, tzinfo=UTC)
    assert alice.counterparties == {"bob": alice.last_seen_at,
                                    "carol": datetime(2020, 6, 25, 12, tzinfo=UTC)}


def test_counterparties_keep_the_n_most_recent_and_say_when_some_were_dropped() -> None:
    # Given alice paid four people at 10:00, 11:00, 12:00 and 13:00, bob again at 09:00
    times = {"bob": 10, "carol": 11, "dave": 12, "erin": 13}
    batch = at(PAYMENTS_STREAM, SHARD0, 1,
               *[payment(f"p-{who}", payee=who, occurred_at=f"2020-06-25T{h}:00:00Z")
                 for who, h in times.items()],
               payment("p-bob-early", payee="bob", occurred_at="2020-06-25T09:00:00Z"))
    # When at most 3 are kept
    alice = apply_all(Profile("alice"), batch, counterparties=3)
    # Then the 3 most recent by their latest payment stay, and the profile says it dropped one
    assert set(alice.counterparties) == {"carol", "dave", "erin"}
    assert alice.counterparties_truncated
    # and with room for all of them, none is dropped and the map is the exact distinct set
    roomy = apply_all(Profile("alice"), batch, counterparties=20)
    assert set(roomy.counterparties) == set(times) and not roomy.counterparties_truncated
    assert roomy.counterparties["bob"] == datetime(2020, 6, 25, 10, tzinfo=UTC)


def test_the_item_round_trips_and_is_storable_in_dynamodb() -> None:
    # Given a profile with every part set
    batch = at(PAYMENTS_STREAM, SHARD0, 1,
               payment("p1", occurred_at="2020-06-25T14:06:00.123456Z"),
               payment("p2", payer="bob", payee="alice", currency="EUR"))
    state = apply_all(Profile("alice"),
                      at(CUSTOMERS_STREAM, SHARD0, 3, customer_registered("r1")), batch)
    item = state.to_item()
    # Then DynamoDB's own serializer accepts it (no float, no number over 38 digits)
    serialized = {k: TypeSerializer().serialize(v) for k, v in item.items()}
    assert serialized["tier"] == {"S": "plus"}
    assert item["last_seen_at"] == "2020-06-25T14:06:00.123456Z"
    assert item["as_payer"] == {"USD": {"count": 1, "volume_minor": 20000}}
    assert item["as_payee"] == {"EUR": {"count": 1, "volume_minor": 20000}}
    # the engine adds the key, version and fences; the profile's own item has neither
    assert "fences" not in item and "version" not in item
    # And reading it back as boto3 returns it gives the same profile
    stored = {k: plain(TypeDeserializer().deserialize(v)) for k, v in serialized.items()}
    assert Profile.from_item("alice", stored) == state


def plain(value: Any) -> Any:
    """boto3 reads numbers as Decimal; the item store hands the domain ints."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def test_time_text_is_exact_and_short() -> None:
    assert time_text(datetime(2020, 6, 25, 14, 6, tzinfo=UTC)) == "2020-06-25T14:06:00Z"
    assert time_text(datetime(2020, 6, 25, 14, 6, 0, 5000, tzinfo=UTC)).endswith("00.005Z")
    assert time_text(datetime(2020, 6, 25, 14, 6, 0, 5, tzinfo=UTC)).endswith("00.000005Z")


def test_invalid_and_unexpected_records_are_rejected_with_their_reason() -> None:
    posting = {"event_id": "l1", "type": "ledger.posting", "version": 1, "key": "alice",
               "occurred_at": "2020-06-25T14:06:00Z",
               "data": {"account": "alice", "counterparty": "bob", "direction": "credit",
                        "amount_minor": 5, "currency": "USD", "payment_event_id": "x"}}
    objs = [customer_registered("r1", email="not-an-email"), posting,
            customer_registered("r2", version=2), customer_updated("u1"),
            customer_registered("r3", customer_id="bob", key="alice"), payment("p1")]
    positions = [SourcePosition(CUSTOMERS_STREAM, SHARD0, str(n + 1)) for n in range(len(objs))]
    envelopes: list[Envelope | Rejection | None] = [
        parse_envelope(o, pos) for o, pos in zip(objs, positions, strict=True)
    ]
    envelopes.append(None)  # a copy the origin gate suppressed: neither a fact nor a rejection
    lineages = input_lineages([*positions, SourcePosition(CUSTOMERS_STREAM, SHARD0, "9")],
                              [None] * len(envelopes))
    keyed, rejected = keyed_facts(envelopes, lineages)
    codes = {index: r.code for index, r in rejected}
    assert codes == {0: "invalid_email", 1: "unexpected_type", 2: "unknown_schema",
                     3: "no_changes", 4: "key_mismatch"}
    # a payment is accepted even from the customers stream: the type decides, not the stream;
    # it is one fact per side, both carrying its record's index and lineage
    assert [(k.key, k.index) for k in keyed] == [("alice", 5), ("bob", 5)]
    assert all(k.lineage == lineages[5] for k in keyed)


def test_at_least_one_counterparty_is_kept() -> None:
    with pytest.raises(ValueError, match="counterparties"):
        apply_facts(Profile("alice"), [], counterparties=0)


# --- the property -----------------------------------------------------------------------------

CUSTOMERS = ["alice", "bob", "carol", "dave"]
PARTIES = [*CUSTOMERS, "erin"]  # erin pays and is paid but never registers
INSTANTS = ["2026-11-02T09:00:00Z", "2026-11-02T09:00:00.000250Z", "2026-11-02T09:00:01Z",
            "2026-11-02T09:00:02Z", "2026-11-02T09:00:03Z"]
VALUES = {"name": ["Ann Lee", "Bea Ruiz"], "email": ["a@x.io", "b@y.io"],
          "country": ["GB", "FR"], "tier": ["basic", "plus", "premium"]}
WINDOW = 3
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Distinct events, each id unique; ids are drawn so that their order is not their index."""
    events: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 10))):
        customer = draw(st.sampled_from(CUSTOMERS))
        when = draw(st.sampled_from(INSTANTS))
        event_id = f"c{draw(st.integers(0, 99))}-{i}"
        if draw(st.booleans()):
            values = {k: draw(st.sampled_from(v)) for k, v in VALUES.items()}
            events.append(customer_registered(event_id, customer_id=customer,
                                              occurred_at=when, **values))
        else:
            names = draw(st.sets(st.sampled_from(sorted(VALUES)), min_size=1))
            changes = {k: draw(st.sampled_from(VALUES[k])) for k in sorted(names)}
            events.append(customer_updated(event_id, customer_id=customer, occurred_at=when,
                                           **changes))
    for i in range(draw(st.integers(0, 25))):
        payer = draw(st.sampled_from(PARTIES))
        payee = draw(st.sampled_from([p for p in PARTIES if p != payer]))
        events.append(payment(f"p{draw(st.integers(0, 99))}-{i}", payer=payer, payee=payee,
                              amount_minor=draw(st.integers(1, 10**6)),
                              currency=draw(st.sampled_from(["USD", "EUR"])),
                              occurred_at=draw(st.sampled_from(INSTANTS))))
    return events


def arrivals(data: st.DataObject, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Any arrival order, with producer duplicates sent again a little later."""
    sent = list(data.draw(st.permutations(events)))
    for _ in range(data.draw(st.integers(0, 6)) if sent else 0):
        original = data.draw(st.integers(0, len(sent) - 1))
        sent.insert(min(len(sent), original + data.draw(st.integers(1, 5))), sent[original])
    return sent


ARRIVAL = datetime(2026, 11, 2, 9, 5, tzinfo=UTC).timestamp()


class Pipeline:
    """customers -> profiles, and payments-raw -> validate -> payments-validated -> profiles.

    Both streams of profiles have a shard 0 and a shard 1 with the same sequence numbers: a
    fence that told positions apart by shard alone would mix them up."""

    def __init__(self, counterparties: int = 3) -> None:
        self.kinesis = Kinesis(arrival=ARRIVAL)
        self.sink = MemorySink()
        self.items = MemoryItems(key="customer_id")
        self.validate = validate.make_handler(TransformDependencies(
            PAYMENTS_STREAM, "q", self.sink, MemoryObjects(),
            Origins({RAW_STREAM: OriginPolicy()}, MemoryMarkers())))
        self.profiles = profiles.make_handler(profiles.Dependencies(
            quarantine_bucket="q", items=self.items, objects=MemoryObjects(),
            origins=Origins({CUSTOMERS_STREAM: OriginPolicy()}, MemoryMarkers()),
            counterparties=counterparties))

    def send(self, sent: list[dict[str, Any]]) -> None:
        for obj in sent:
            stream = RAW_STREAM if obj["type"] == "payment.made" else CUSTOMERS_STREAM
            self.kinesis.put(stream, obj, obj["key"])

    def run(self, data: st.DataObject | None) -> None:
        deliver(self.validate, LambdaContext("validate"), self.kinesis, [RAW_STREAM], data,
                sink=self.sink, output=PAYMENTS_STREAM, faults=Faults(sink=self.sink, tags=3))
        deliver(self.profiles, CTX, self.kinesis, [CUSTOMERS_STREAM, PAYMENTS_STREAM], data,
                faults=Faults(items=self.items, keys=PARTIES))

    def stored(self) -> dict[str, dict[str, Any]]:
        return {customer: view(item) for customer, item in self.items.items.items()}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def reference(sent: list[dict[str, Any]], window: int) -> dict[str, dict[str, Any]]:
    """Each profile computed directly from the distinct events, with no notion of order."""
    distinct = list({obj["event_id"]: obj for obj in sent}.values())
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for obj in distinct:
        if obj["type"] == "payment.made":
            continue
        d, stamp = obj["data"], (when(obj["occurred_at"]), obj["event_id"])
        profile = out[d["customer_id"]]
        for name in VALUES:
            if name in d and (name not in profile.get("fields", {})
                              or stamp > profile["fields"][name][1:]):
                profile.setdefault("fields", {})[name] = (d[name], *stamp)
        if obj["type"] == "customer.registered":
            profile["registered_at"] = min(profile.get("registered_at", stamp[0]), stamp[0])
    latest: dict[str, dict[str, datetime]] = defaultdict(dict)
    for obj in distinct:
        if obj["type"] != "payment.made":
            continue
        # validate re-emits a payment with its event time to the millisecond (format_time)
        d, t = obj["data"], millis(when(obj["occurred_at"]))
        for me, other, side in ((d["payer"], d["payee"], "as_payer"),
                                (d["payee"], d["payer"], "as_payee")):
            profile = out[me]
            count, volume = profile.setdefault(side, {}).get(d["currency"], (0, 0))
            profile[side][d["currency"]] = (count + 1, volume + d["amount_minor"])
            profile["first_seen_at"] = min(profile.get("first_seen_at", t), t)
            profile["last_seen_at"] = max(profile.get("last_seen_at", t), t)
            latest[me][other] = max(latest[me].get(other, t), t)
    for me, parties in latest.items():
        ranked = sorted(parties, key=lambda k: (parties[k], k), reverse=True)
        out[me]["counterparties"] = {k: parties[k] for k in ranked[:window]}
        out[me]["counterparties_truncated"] = len(parties) > window
    return dict(out)


def view(item: dict[str, Any]) -> dict[str, Any]:
    """What a stored item says, read from its raw attributes (not through the domain)."""
    out: dict[str, Any] = {}
    if "field_times" in item:
        out["fields"] = {name: (item[name], when(t["at"]), t["event_id"])
                         for name, t in item["field_times"].items()}
    # fraud-detect reads the top-level tier: present exactly when the tier is known
    assert item.get("tier") == out.get("fields", {}).get("tier", (None,))[0]
    for name in ("registered_at", "first_seen_at", "last_seen_at"):
        if name in item:
            out[name] = when(item[name])
    for side in ("as_payer", "as_payee"):
        if side in item:
            out[side] = {c: (v["count"], v["volume_minor"]) for c, v in item[side].items()}
    if "counterparties" in item:
        out["counterparties"] = {k: EPOCH + timedelta(microseconds=v)
                                 for k, v in item["counterparties"].items()}
        out["counterparties_truncated"] = item["counterparties_truncated"]
    return out


@settings(max_examples=80, deadline=None)
@given(events=histories(), schedule=st.data())
def test_the_profile_depends_only_on_the_distinct_events(
    events: list[dict[str, Any]], schedule: st.DataObject
) -> None:
    # Given any arrival order of the events, with duplicates
    sent = arrivals(schedule, events)
    pipeline = Pipeline(counterparties=WINDOW)
    pipeline.send(sent)
    # When they are delivered with failures, retries, redeliveries and re-emitted copies
    pipeline.run(schedule)
    # Then every profile equals the one computed from the distinct events
    assert pipeline.stored() == reference(sent, WINDOW)


def test_the_property_catches_a_double_count() -> None:
    # Guard: apply_facts counts what it is given, so a payment applied twice is counted twice
    # and the reference the property compares with sees the difference; the pipeline, given
    # the same payment twice from the producer and the same customer event twice, with every
    # batch delivered twice (validate re-emitting its outputs), counts it once.
    sent = [payment("p1"), payment("p1"), customer_registered("r1"), customer_registered("r1")]
    twice = apply_all(Profile("alice"), at(PAYMENTS_STREAM, SHARD0, 1, *sent[:2]))
    assert view(twice.to_item())["as_payer"] != reference(sent, WINDOW)["alice"]["as_payer"]
    pipeline = Pipeline(counterparties=WINDOW)
    pipeline.kinesis.arrival = datetime(2020, 6, 25, 14, 10, tzinfo=UTC).timestamp()
    pipeline.send(sent)
    for _ in range(2):
        pipeline.run(None)
    assert pipeline.kinesis.count(PAYMENTS_STREAM) == 2  # the original and its re-emitted copy
    assert pipeline.stored() == reference(sent, WINDOW)
    assert pipeline.stored()["alice"]["as_payer"] == {"USD": (1, 20000)}
