"""What `validate` accepts, everything downstream accepts.

Arbitrary payments (any instant a origin stream admits, from year 0001 on when declared so, any
amount and currency the schema takes, unknown fields with arbitrary text) go through the input
policy and `validate`; every event it emits is written as bytes and read back by the next hop,
as on a stream, and must be accepted there, and so must what `postings` derives from it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cascata_runtime.envelope import (
    Envelope,
    Rejection,
    SourcePosition,
    decode_json,
    parse_envelope,
)
from payments.domain.postings import postings_batch
from payments.domain.schemas import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR, parse_event
from payments.domain.validate import validate_batch

accounts = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
text = st.text(st.characters(codec="utf-8"), max_size=30)


@st.composite
def payments(draw: st.DrawFn) -> dict[str, Any]:
    when = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                             timezones=st.just(UTC)))
    payer = draw(accounts)
    payee = draw(accounts.filter(lambda a: a != payer))
    data: dict[str, Any] = {
        "payer": payer, "payee": payee,
        "amount_minor": draw(st.integers(1, MAX_AMOUNT_MINOR)),
        "currency": draw(st.sampled_from(sorted(CURRENCY_EXPONENTS))),
    }
    # Fields the schema does not know, with any text: validate drops them.
    data.update(draw(st.dictionaries(st.text(max_size=8).map(lambda k: f"x-{k}"), text,
                                     max_size=3)))
    stamp = when.strftime("%H:%M:%S")
    return {
        "event_id": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,40}", fullmatch=True)),
        "type": "payment.made", "version": 1, "key": payer,
        "occurred_at": f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{stamp}"
                       + (f".{when.microsecond // 1000:03d}Z" if when.microsecond else "Z"),
        "data": data,
    }


def read_back(envelope: Envelope, stream: str, sequence: int) -> Envelope:
    """An emitted event as the next hop reads it off the stream: bytes, policy, envelope."""
    obj = decode_json(envelope.to_bytes())
    assert not isinstance(obj, Rejection), obj
    parsed = parse_envelope(obj, causation=SourcePosition(stream, "shard-0", str(sequence)))
    assert not isinstance(parsed, Rejection), parsed
    assert not isinstance(parse_event(parsed), Rejection), parse_event(parsed)
    return parsed


@given(payments())
@settings(max_examples=200, deadline=None)
def test_every_payment_validate_accepts_is_accepted_by_every_later_hop(raw: dict[str, Any]) -> None:
    obj = decode_json(json.dumps(raw, ensure_ascii=False).encode())
    assert not isinstance(obj, Rejection), obj
    envelope = parse_envelope(obj, causation=SourcePosition("raw", "shard-0", "1"))
    assert not isinstance(envelope, Rejection), envelope
    validated = validate_batch([envelope], output_stream="validated")
    assert validated.quarantined == (), validated.quarantined
    [emission] = validated.emissions
    assert emission.envelope.occurred_at == envelope.occurred_at.replace(
        microsecond=envelope.occurred_at.microsecond // 1000 * 1000)
    hop = read_back(emission.envelope, "validated", 2)
    postings = postings_batch([hop], output_stream="ledger")
    assert postings.quarantined == ()
    assert len(postings.emissions) == 2
    for number, posting in enumerate(postings.emissions, start=3):
        read_back(posting.envelope, "ledger", number)
