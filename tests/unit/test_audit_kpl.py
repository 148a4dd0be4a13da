"""The audit counts every user record of a KPL aggregate: the archive holds them at one
sequence number, each with its subsequence number, and each is a record of its own."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cascata_runtime.archive import RawRecord
from payments.domain.fraud import DEFAULT_RULES
from payments.tooling.audit import BALANCES, archive_objects, checked_records, recompute

SHARD = "shardId-000000000000"
SEQUENCE = "49546986683135544286507457936321625675700192471156785154"


def payment(event_id: str, payer: str, payee: str, amount: int) -> dict[str, Any]:
    return {"event_id": event_id, "type": "payment.made", "version": 1, "key": payer,
            "occurred_at": "2026-11-02T09:00:00Z",
            "data": {"payer": payer, "payee": payee, "amount_minor": amount,
                     "currency": "USD"}}


AGGREGATED = [payment("k1", "alice", "bob", 1000), payment("k2", "bob", "carol", 300),
              payment("k3", "carol", "alice", 50)]


def user_records() -> list[RawRecord]:
    return [RawRecord("payments-raw", SHARD, SEQUENCE, str(p["key"]), 1_000,
                      json.dumps(p).encode(), index)
            for index, p in enumerate(AGGREGATED)]


def write(tmp: Path, records: Iterable[RawRecord], *, suffix: str = "") -> Path:
    for key, body in archive_objects(records).items():
        path = tmp / (key + suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return tmp


def balances(tmp: Path) -> dict[str, dict[str, int]]:
    return {item["account_id"]: item["balances"]
            for item in recompute(tmp, DEFAULT_RULES)[BALANCES]}


def test_every_user_record_of_an_aggregate_is_a_record_and_counts_once(tmp_path: Path) -> None:
    # Given an aggregate of three payments archived as three user records, the whole batch
    # archived twice (a retried delivery), and a plain record after it
    later = RawRecord("payments-raw", SHARD, str(int(SEQUENCE) + 1), "dan", 1_001,
                      json.dumps(payment("p4", "dan", "alice", 7)).encode())
    write(tmp_path, [*user_records(), later])
    write(tmp_path, user_records(), suffix=".retried")
    # Then each user record is one record, in shard order, the plain one subsequence 0
    checked = checked_records(tmp_path)
    assert [(r["sequence_number"], r["subsequence"], r["event_id"]) for r in checked] == [
        (SEQUENCE, 0, "k1"), (SEQUENCE, 1, "k2"), (SEQUENCE, 2, "k3"),
        (str(int(SEQUENCE) + 1), 0, "p4")]
    assert all(r["accepted"] for r in checked)
    # ... and the balances hold all three payments, once
    assert balances(tmp_path) == {
        "alice": {"USD": -1000 + 50 + 7}, "bob": {"USD": 1000 - 300},
        "carol": {"USD": 300 - 50}, "dan": {"USD": -7}}


def test_lines_without_a_subsequence_are_read_as_before(tmp_path: Path) -> None:
    # Given records archived before lines carried a subsequence, one of them twice
    plain = [RawRecord("payments-raw", SHARD, str(n), "alice", 1_000 + n,
                       json.dumps(payment(f"p{n}", "alice", "bob", n)).encode())
             for n in (1, 2)]
    write(tmp_path, plain)
    write(tmp_path, plain[:1], suffix=".retried")
    # Then each counts once
    assert [(r["sequence_number"], r["subsequence"]) for r in checked_records(tmp_path)] == [
        ("1", 0), ("2", 0)]
    assert balances(tmp_path)["bob"] == {"USD": 3}
