"""Lambda handler of `fraud-detect`: payments-validated -> fraud alerts, effectively once.

Per batch: one strongly consistent BatchGetItem for the rule state of every payer in it, one
eventually consistent BatchGetItem for the tiers of the payers with a payment above the lowest
tier limit (the others cannot raise `tier_limit`), then the pure evaluation per payer
(`payments.domain.fraud`), then the effects in this order:

1. each alert's item in `alerts-view` (an UpdateItem that sets the alert's attributes and
   leaves `notified_at`, notify's mark, alone: idempotent, and it completes an item notify
   created first);
2. the alerts on the `alerts` stream (PutRecords, failed entries retried);
3. each changed payer's state in `fraud-state`: one conditional put on its version.

The state is written last on purpose. A crash or a failure anywhere before leaves the state as
it was, so the retry evaluates the same payments against the same state and raises the same
alerts with the same ids, which the view and notify recognise. Writing the state first would
lose the alerts of a crash for good. A payer whose view write or emission failed has all its
records failed (Lambda retries from the lowest) and its state unwritten. A lost race on the
version (a concurrent writer: only around resharding or a replay) re-reads the payer,
re-evaluates, writes and emits the alerts of the new evaluation, and tries again.

Cost per payer per batch: one strongly consistent read, one write of about 1 KB (more for a
payer with hundreds of known payees), and per alert one view write and one stream record.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from cascata_runtime import adapters
from cascata_runtime.emitter import KinesisSink
from cascata_runtime.handler import BatchFunction, ClientFactory, Handler, lambda_handler, lazy
from cascata_runtime.ports import ItemStore, ObjectStore, OutRecord, Sink
from cascata_runtime.quarantine import QuarantineWriter
from cascata_runtime.records import decode_event
from cascata_runtime.shell import BatchReport, Effects, Emission, apply_effects, parse_records
from payments.domain.fraud import (
    DEFAULT_RULES,
    STATE_KEY,
    VIEW_PARTITION_KEY,
    VIEW_SORT_KEY,
    Evaluated,
    FraudRules,
    PayerState,
    PaymentAt,
    RaisedAlert,
    alert_view_item,
    evaluate,
    group_payments,
    needs_tier,
    rules_from_json,
)
from payments.settings import FraudDetectSettings

PROCESSOR = "fraud-detect"
SETTINGS = FraudDetectSettings
PROFILE_KEY = "customer_id"
WRITE_ATTEMPTS = 4


class TierSource(Protocol):
    def tiers(self, customers: Sequence[str]) -> Mapping[str, str]:
        """The `tier` attribute of each customer's profile that has one."""
        ...


class AlertsView(Protocol):
    def upsert(self, item: Mapping[str, Any]) -> None:
        """Create the alert's item or set its attributes, leaving any other attribute alone."""
        ...


class DynamoProfileTiers:
    """Tiers from the `profiles` table (written by the profiles processor).

    Eventually consistent and projected on the tier: a tier changed a second ago may not be
    seen yet, which is acceptable for a limit check and halves the read cost.
    """

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        key: str = PROFILE_KEY,
        attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ddb = dynamodb
        self._table = table
        self._key = key
        self._attempts = attempts
        self._sleep = sleep

    def tiers(self, customers: Sequence[str]) -> Mapping[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(customers))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{self._key: {"S": c}} for c in unique[start : start + 100]],
                    "ProjectionExpression": "#k, #t",
                    "ExpressionAttributeNames": {"#k": self._key, "#t": "tier"},
                }
            }
            for attempt in range(self._attempts):
                if attempt:
                    # Unprocessed keys mean throttling: back off before asking again.
                    self._sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
                response = self._ddb.batch_get_item(RequestItems=request)
                for raw in response["Responses"].get(self._table, []):
                    tier = raw.get("tier", {}).get("S")
                    if isinstance(tier, str):
                        found[raw[self._key]["S"]] = tier
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            if request:
                raise RuntimeError(f"profiles still unprocessed after {self._attempts} reads")
        return found


class DynamoAlertsView:
    """The `alerts-view` table: one item per alert, keyed by account and alert key."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self._table = table
        self.write_requests = 0

    def upsert(self, item: Mapping[str, Any]) -> None:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        keys = (VIEW_PARTITION_KEY, VIEW_SORT_KEY)
        fields = [k for k in item if k not in keys]
        self.write_requests += 1
        self._ddb.update_item(
            TableName=self._table,
            Key={k: ser.serialize(item[k]) for k in keys},
            UpdateExpression="SET " + ", ".join(f"#a{n} = :v{n}" for n in range(len(fields))),
            ExpressionAttributeNames={f"#a{n}": f for n, f in enumerate(fields)},
            ExpressionAttributeValues={
                f":v{n}": ser.serialize(item[f]) for n, f in enumerate(fields)
            },
        )


@dataclass(frozen=True, slots=True)
class Dependencies:
    alerts_stream: str
    quarantine_bucket: str
    state: ItemStore
    tiers: TierSource
    view: AlertsView
    sink: Sink
    objects: ObjectStore
    rules: FraudRules = DEFAULT_RULES
    writers: int = 8


def dependencies(
    settings: FraudDetectSettings, client: ClientFactory = adapters.client
) -> Dependencies:
    dynamodb = client("dynamodb")
    return Dependencies(
        alerts_stream=settings.alerts_stream,
        quarantine_bucket=settings.quarantine_bucket,
        state=adapters.DynamoItemStore(dynamodb, settings.fraud_state_table, key=STATE_KEY),
        tiers=DynamoProfileTiers(dynamodb, settings.profiles_table),
        view=DynamoAlertsView(dynamodb, settings.alerts_table),
        sink=KinesisSink(client("kinesis")),
        objects=adapters.S3ObjectStore(client("s3")),
        rules=rules_from_json(settings.rules),
    )


def _fail(payments: Sequence[PaymentAt], reason: str) -> dict[int, str]:
    return {p.index: reason for p in payments}


def process(deps: Dependencies) -> BatchFunction:
    quarantine = QuarantineWriter(deps.objects, bucket=deps.quarantine_bucket, processor=PROCESSOR)

    def write_view(raised: RaisedAlert) -> str | None:
        try:
            deps.view.upsert(alert_view_item(raised.alert))
        except Exception as exc:  # noqa: BLE001 - fails this payer's records only
            return f"alerts view write failed: {exc}"
        return None

    def publish(alerts: Sequence[RaisedAlert]) -> str | None:
        """View items, then the stream: the batch path's steps 1 and 2 for one payer."""
        for raised in alerts:
            problem = write_view(raised)
            if problem:
                return problem
        out = [
            OutRecord(partition_key=r.alert.envelope.key, data=r.alert.envelope.to_bytes(), tag=n)
            for n, r in enumerate(alerts)
        ]
        failures = deps.sink.emit(deps.alerts_stream, out) if out else []
        return f"alert not emitted: {failures[0].reason}" if failures else None

    def commit(
        payer: str, payments: list[PaymentAt], tier: str | None, stored: PayerState,
        result: Evaluated,
    ) -> dict[int, str]:
        for _attempt in range(WRITE_ATTEMPTS):
            if result.state is stored:
                return {}
            try:
                if deps.state.put_if_version(result.state.to_item(), stored.version or None):
                    return {}
                item = deps.state.get_many([payer]).get(payer)
            except Exception as exc:  # noqa: BLE001 - fails this payer's records only
                return _fail(payments, f"fraud state write failed: {exc}")
            stored = PayerState.from_item(payer, item)
            result = evaluate(stored, payments, tier=tier, rules=deps.rules)
            problem = publish(result.alerts)
            if problem:
                return _fail(payments, problem)
        return _fail(payments, "fraud state write lost every race for the payer")

    def run(event: Mapping[str, Any]) -> BatchReport:
        records = decode_event(event)
        by_payer, rejected = group_payments(parse_records(records))
        failed: dict[int, str] = {}
        stored: Mapping[str, Mapping[str, Any]] = {}
        tiers: Mapping[str, str] = {}
        try:
            if by_payer:
                stored = deps.state.get_many(list(by_payer))
                wanted = [p for p, ps in by_payer.items() if needs_tier(ps, deps.rules)]
                tiers = deps.tiers.tiers(wanted) if wanted else {}
        except Exception as exc:  # noqa: BLE001 - nothing can be evaluated; all retried
            for payments in by_payer.values():
                failed.update(_fail(payments, f"rule state or profile read failed: {exc}"))
            by_payer = {}
        states = {p: PayerState.from_item(p, stored.get(p)) for p in by_payer}
        results = {
            p: evaluate(states[p], ps, tier=tiers.get(p), rules=deps.rules)
            for p, ps in by_payer.items()
        }

        # 1. the view items of every alert
        raised = [(p, r) for p, res in results.items() for r in res.alerts]
        with ThreadPoolExecutor(max_workers=deps.writers) as pool:
            problems = list(pool.map(lambda pr: write_view(pr[1]), raised))
        for (payer, _), problem in zip(raised, problems, strict=True):
            if problem:
                for index, reason in _fail(by_payer[payer], problem).items():
                    failed.setdefault(index, reason)

        # 2. the alerts on the stream (apply_effects skips those whose payment failed above)
        emissions = tuple(
            Emission(deps.alerts_stream, r.alert.envelope, r.cause) for _, r in raised
        )
        report = apply_effects(
            records,
            Effects(emissions=emissions, quarantined=tuple(rejected), failed=failed),
            sink=deps.sink,
            quarantine=quarantine,
        )

        # 3. the state of each payer whose alerts are all out; any failure fails all its records
        ready = []
        for payer, payments in by_payer.items():
            reasons = [report.failed[p.index] for p in payments if p.index in report.failed]
            if reasons:
                for p in payments:
                    report.failed.setdefault(p.index, reasons[0])
            else:
                ready.append(payer)
        with ThreadPoolExecutor(max_workers=deps.writers) as pool:
            futures = [
                pool.submit(commit, payer, by_payer[payer], tiers.get(payer), states[payer],
                            results[payer])
                for payer in ready
            ]
            for future in futures:
                report.failed.update(future.result())
        return report

    return run


def make_handler(deps: Dependencies) -> Handler:
    return lambda_handler(PROCESSOR, process(deps))


handler = lazy(lambda: make_handler(dependencies(FraudDetectSettings.from_env())))
