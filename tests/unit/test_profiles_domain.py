"""profiles, pure: last-writer-wins by event time, activity, counterparties, fences, and the
property that the profile depends only on the set of distinct events.

The property runs the real handler on in-memory ports. Hypothesis draws customer events and
payments for a few customers (event times drawn from a handful of instants, so ties between
events are common and the event-id tie-breaker matters), lays them on the two source streams in
a random arrival order with producer duplicates, then delivers the four shards interleaved, in
batches of random size, with random write failures followed by Lambda's retry from the lowest
failed sequence number and random redeliveries of earlier batches. Every profile must equal a
reference computed directly from the distinct events.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from cascata_runtime.envelope import Envelope, Rejection, SourcePosition, parse_envelope
from payments.domain.profiles import (
    FactAt,
    Profile,
    apply_facts,
    group_facts,
    payment_key,
    source_key,
    time_text,
)
from payments.handlers import profiles
from tests.support.events import (
    LambdaContext,
    customer_registered,
    customer_updated,
    kinesis_record,
    payment,
)
from tests.support.fakes import MemoryItems, MemoryObjects

CUSTOMERS_STREAM = "cascata-test-customers"
PAYMENTS_STREAM = "cascata-test-payments-validated"
SHARD0 = "shardId-000000000000"
CTX = LambdaContext("profiles")
# 56 digits, as real Kinesis sequence numbers are: more than a DynamoDB number can hold.
BIG_SEQUENCE = 49590338271490256608559692538361571095921575989136588898


def at(stream: str, shard: str, sequence: int, *objs: dict[str, Any]) -> list[FactAt]:
    """The facts of events read at consecutive positions of one shard, one record each."""
    envelopes: list[Envelope | Rejection] = [
        parse_envelope(obj, SourcePosition(stream, shard, str(sequence + n)))
        for n, obj in enumerate(objs)
    ]
    grouped, rejected = group_facts(envelopes)
    assert rejected == []
    return [f for facts in grouped.values() for f in facts]


def only(customer: str, facts: list[FactAt]) -> list[FactAt]:
    return [f for f in facts if f.fact.customer_id == customer]


def apply_all(state: Profile, *batches: list[FactAt], **kwargs: Any) -> Profile:
    for batch in batches:
        state = apply_facts(state, only(state.customer_id, batch), **kwargs).state
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
    assert registered.version == alice.version + 1


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


def test_a_redelivery_is_fenced_but_the_same_position_on_the_other_stream_is_not() -> None:
    # Given a registration read at shard 0, sequence 1 of the customers stream
    registration = at(CUSTOMERS_STREAM, SHARD0, 1, customer_registered("r1"))
    alice = apply_all(Profile("alice"), registration)
    # When the same record is delivered again
    again = apply_facts(alice, registration)
    # Then nothing moves (and the caller has nothing to write)
    assert again.state is alice and again.redelivered == (0,)
    # But a payment at shard 0, sequence 1 of the payments stream is another position
    paid = apply_facts(alice, only("alice", at(PAYMENTS_STREAM, SHARD0, 1, payment("p1"))))
    assert paid.applied == (0,) and paid.state.as_payer["USD"].count == 1
    assert source_key(CUSTOMERS_STREAM, SHARD0) != source_key(PAYMENTS_STREAM, SHARD0)


def test_the_fence_turns_away_a_redelivery_the_id_window_has_forgotten() -> None:
    # Given two payments applied with room for one recent id only
    first = at(PAYMENTS_STREAM, SHARD0, 1, payment("p1"))
    second = at(PAYMENTS_STREAM, SHARD0, 2, payment("p2"))
    alice = apply_all(Profile("alice"), first, second, window=1)
    assert payment_key("p1") not in alice.recent
    # When the first is delivered again at its old position
    again = apply_facts(alice, only("alice", first), window=1)
    # Then the fence alone keeps it from being counted twice
    assert again.redelivered == (0,) and again.state is alice
    assert alice.as_payer["USD"].count == 2


def test_kafka_offset_zero_is_applied() -> None:
    facts = at("cascata-test-customers", "0", 0, customer_registered("r1"))
    result = apply_facts(Profile("alice"), facts)
    assert result.applied == (0,) and result.state.tier == "plus"


def test_the_same_payment_at_a_new_position_is_counted_once() -> None:
    first = at(PAYMENTS_STREAM, SHARD0, 1, payment("p1"))
    resent = at(PAYMENTS_STREAM, SHARD0, 2, payment("p1"))
    alice = apply_all(Profile("alice"), first)
    result = apply_facts(alice, only("alice", resent))
    assert result.duplicates == (0,) and result.applied == ()
    assert result.state.as_payer["USD"].count == 1
    # the fence still moves, so a redelivery of the copy costs no further look-up
    assert result.state.fences[source_key(PAYMENTS_STREAM, SHARD0)] == 2


def test_the_item_round_trips_and_is_storable_in_dynamodb() -> None:
    # Given a profile with every part set and a real 56-digit Kinesis sequence number
    batch = at(PAYMENTS_STREAM, SHARD0, BIG_SEQUENCE,
               payment("p1", occurred_at="2020-06-25T14:06:00.123456Z"),
               payment("p2", payer="bob", payee="alice", currency="EUR"))
    state = apply_all(Profile("alice"),
                      at(CUSTOMERS_STREAM, SHARD0, 3, customer_registered("r1")), batch)
    item = state.to_item()
    # Then DynamoDB's own serializer accepts it (no float, no number over 38 digits)
    serialized = {k: TypeSerializer().serialize(v) for k, v in item.items()}
    assert serialized["tier"] == {"S": "plus"}
    assert item["fences"][source_key(PAYMENTS_STREAM, SHARD0)] == str(BIG_SEQUENCE + 1)
    assert item["last_seen_at"] == "2020-06-25T14:06:00.123456Z"
    assert item["recent"] == payment_key("p1") + payment_key("p2")
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
    envelopes: list[Envelope | Rejection] = [
        parse_envelope(o, SourcePosition(CUSTOMERS_STREAM, SHARD0, str(n + 1)))
        for n, o in enumerate(objs)
    ]
    grouped, rejected = group_facts(envelopes)
    codes = {index: r.code for index, r in rejected}
    assert codes == {0: "invalid_email", 1: "unexpected_type", 2: "unknown_schema",
                     3: "no_changes", 4: "key_mismatch"}
    # a payment is accepted even from the customers stream: the type decides, not the stream
    assert sorted(grouped) == ["alice", "bob"]


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


def shards(sent: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Records on two shards of each stream. Both streams have a shard 0 and a shard 1 whose
    sequence numbers start at 1: fences keyed by shard alone would mix them up."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for obj in sent:
        stream = PAYMENTS_STREAM if obj["type"] == "payment.made" else CUSTOMERS_STREAM
        shard = f"shardId-00000000000{zlib.crc32(obj['key'].encode()) % 2}"
        records = out[(stream, shard)]
        records.append(kinesis_record(obj, sequence=len(records) + 1, partition_key=obj["key"],
                                      stream=stream, shard=shard))
    return out


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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
        d, t = obj["data"], when(obj["occurred_at"])
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


def deliver(
    handle: Any, items: MemoryItems, records: dict[tuple[str, str], list[dict[str, Any]]],
    schedule: st.DataObject,
) -> None:
    """Lambda's delivery: shards interleaved, each in order from its checkpoint, retried from
    the lowest failed sequence number, and earlier batches sometimes delivered again."""
    position = dict.fromkeys(records, 0)
    delivered: list[list[dict[str, Any]]] = []
    while pending := sorted(k for k, rs in records.items() if position[k] < len(rs)):
        shard = schedule.draw(st.sampled_from(pending))
        batch = records[shard][position[shard] : position[shard] + schedule.draw(
            st.integers(1, 6))]
        items.fail_accounts = schedule.draw(st.sets(st.sampled_from(PARTIES), max_size=2))
        response = handle({"Records": batch}, CTX)
        items.fail_accounts = set()
        failed = [int(f["itemIdentifier"]) for f in response["batchItemFailures"]]
        if failed:
            lowest = min(failed)
            position[shard] = next(i for i, r in enumerate(records[shard])
                                   if int(r["kinesis"]["sequenceNumber"]) == lowest)
        else:
            position[shard] += len(batch)
        delivered.append(batch)
        if schedule.draw(st.booleans()):
            again = schedule.draw(st.sampled_from(delivered))
            assert handle({"Records": again}, CTX) == {"batchItemFailures": []}


@settings(max_examples=80, deadline=None)
@given(events=histories(), schedule=st.data())
def test_the_profile_depends_only_on_the_distinct_events(
    events: list[dict[str, Any]], schedule: st.DataObject
) -> None:
    # Given any arrival order of the events, with duplicates
    sent = arrivals(schedule, events)
    items = MemoryItems(key="customer_id")
    handle = profiles.make_handler(profiles.Dependencies(
        quarantine_bucket="q", items=items, objects=MemoryObjects(), counterparties=WINDOW))
    # When they are delivered with failures, retries and redeliveries
    deliver(handle, items, shards(sent), schedule)
    # Then every profile equals the one computed from the distinct events
    stored = {customer: view(item) for customer, item in items.items.items()}
    assert stored == reference(sent, WINDOW)


def test_the_property_catches_a_double_count() -> None:
    # Guard: without the recent-id window a payment sent twice is counted twice, and the
    # reference the property compares with sees the difference.
    sent = [payment("p1"), payment("p1")]
    state = Profile("alice")
    for n, obj in enumerate(sent):
        state = apply_all(state, at(PAYMENTS_STREAM, SHARD0, n + 1, obj), window=0)
    assert view(state.to_item())["as_payer"] != reference(sent, WINDOW)["alice"]["as_payer"]
    kept = apply_all(Profile("alice"), at(PAYMENTS_STREAM, SHARD0, 1, *sent))
    assert view(kept.to_item())["as_payer"] == reference(sent, WINDOW)["alice"]["as_payer"]
