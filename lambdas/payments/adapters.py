"""The payments functions' adapters: each port its domain or handler needs, over boto3.

Handlers wire these to the pure domain; tests run them on moto (tests/functional) and the
local runtime runs them on the embedded emulator. Nothing here decides anything: every rule is
in `payments.domain`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from cascata_runtime import adapters
from cascata_runtime.effects import Emission
from cascata_runtime.kafka_topics import KafkaTopics
from cascata_runtime.lineage import Stamper
from cascata_runtime.ports import Sink
from cascata_runtime.state import Publish, emitter
from payments.domain.fraud import (
    VIEW_PARTITION_KEY,
    VIEW_SORT_KEY,
    alert_view_item,
)
from payments.domain.notify import Notification, Recorded
from payments.domain.query import (
    KeyQuery,
    Page,
    View,
    ViewReader,
    item_from_wire,
    key_to_wire,
)
from payments.domain.schemas import FraudAlert, parse_event
from payments.domain.windows import (
    PaneKey,
)

ViewKey = tuple[str, str]
"""An alerts view item's key: (account_id, alert_key)."""
PROFILE_KEY = "customer_id"
"""The profiles view's partition key (fraud-detect reads payers' tiers there)."""
SHARD_LIST_TTL_S = 60.0
"""How long windows trusts a listing of the stream's shards before asking again."""


# The query API's reads
class DynamoViewReader(ViewReader):
    """`ViewReader` over a boto3 DynamoDB client; decodes attribute values in the domain."""

    def __init__(self, dynamodb: Any, tables: Mapping[View, str]) -> None:
        self._ddb = dynamodb
        self._tables = dict(tables)

    def get(self, view: View, key: Mapping[str, str]) -> Mapping[str, Any] | None:
        response = self._ddb.get_item(TableName=self._tables[view], Key=key_to_wire(key))
        item = response.get("Item")
        return item_from_wire(item) if item else None

    def query(self, query: KeyQuery) -> Page:
        names = {"#p": query.partition[0]}
        values: dict[str, Any] = {":p": {"S": query.partition[1]}}
        condition = "#p = :p"
        if query.sort_at_least is not None:
            names["#s"] = query.sort_at_least[0]
            values[":s"] = {"S": query.sort_at_least[1]}
            condition += " AND #s >= :s"
        request: dict[str, Any] = {
            "TableName": self._tables[query.view],
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not query.newest_first,
            "Limit": query.limit,
        }
        if query.index is not None:
            request["IndexName"] = query.index
        if query.start_key is not None:
            request["ExclusiveStartKey"] = key_to_wire(query.start_key)
        response = self._ddb.query(**request)
        last = response.get("LastEvaluatedKey")
        return Page(
            items=tuple(item_from_wire(i) for i in response.get("Items", [])),
            last_key={k: str(v) for k, v in item_from_wire(last).items()} if last else None,
        )


# windows-close: is an idle shard at its tip?
class ShardTip(Protocol):
    def at_tip(self, stream: str, shard: str, fence: int) -> bool | None:
        """Whether the shard holds no record after sequence `fence` (-1: none at all) right
        now; None when the source cannot tell (the raise then stays pending)."""
        ...


class KinesisShardTip:
    """`ShardTip` over Kinesis: one GetShardIterator and one GetRecords (Limit 1) per check."""

    def __init__(self, kinesis: Any) -> None:
        self._kinesis = kinesis

    def at_tip(self, stream: str, shard: str, fence: int) -> bool | None:
        if not shard.startswith("shardId-"):
            return None  # a Kafka partition
        kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard}
        if fence < 0:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["StartingSequenceNumber"] = str(fence)
        iterator = self._kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
        # An empty page with MillisBehindLatest > 0 can hide records further on: keep reading.
        for _page in range(20):
            page = self._kinesis.get_records(ShardIterator=iterator, Limit=1)
            if page.get("Records"):
                return False
            iterator = page.get("NextShardIterator")
            if not iterator or int(page.get("MillisBehindLatest", 0)) == 0:
                return True
        return None


class KafkaPartitionTip:
    """`ShardTip` over Kafka: a partition is at its tip when its high watermark is right after
    the fence (one ListOffsets request per check)."""

    def __init__(self, topics: KafkaTopics) -> None:
        self._topics = topics

    def at_tip(self, stream: str, shard: str, fence: int) -> bool | None:
        if not shard.isdigit():
            return None  # a Kinesis shard
        return self._topics.end_offset(stream, int(shard)) <= fence + 1


# notify: the topic and the alerts view's delivery marks
class Publisher(Protocol):
    def publish(self, notification: Notification) -> str:
        """Send the message; return the message id. Raises when it was not accepted."""
        ...


class AlertLedger(Protocol):
    def recorded(self, keys: Sequence[ViewKey]) -> Mapping[ViewKey, Recorded]:
        """What the alerts view holds for each key (absent keys: no item)."""
        ...

    def mark_notified(
        self, notification: Notification, *, create: bool, notified_at: str, message_id: str
    ) -> bool:
        """Record the message on the alert's item (creating it when `create`); False when
        another invocation had recorded one already."""
        ...


class SnsPublisher:
    """Publishes notifications to the topic the declaration binds by NAME
    (`NOTIFICATIONS_TOPIC`). Publish needs its ARN: it is built from the caller's identity (STS
    GetCallerIdentity: account and partition) and the client's region, once per execution
    environment. GetCallerIdentity needs no IAM permission, whereas `CreateTopic` (idempotent,
    returns the ARN) would need `sns:CreateTopic`, which the least-privilege grant of a `write`
    binding (`sns:Publish` only) rightly does not give, and could create a stray unencrypted
    topic if the name were ever wrong."""

    def __init__(self, sns: Any, sts: Any, topic_name: str) -> None:
        self._sns = sns
        self._sts = sts
        self._topic_name = topic_name
        self._arn: str | None = None
        self._lock = threading.Lock()

    @property
    def topic_arn(self) -> str:
        with self._lock:
            if self._arn is None:
                identity = self._sts.get_caller_identity()
                partition = str(identity["Arn"]).split(":")[1]
                region = self._sns.meta.region_name
                self._arn = f"arn:{partition}:sns:{region}:{identity['Account']}:{self._topic_name}"
            return self._arn

    def publish(self, notification: Notification) -> str:
        response = self._sns.publish(
            TopicArn=self.topic_arn,
            Subject=notification.subject,
            Message=notification.message,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in notification.attributes.items()
            },
        )
        return str(response["MessageId"])


class DynamoAlertLedger:
    """`notified_at` marks on the items of the `alerts-view` table."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    def recorded(self, keys: Sequence[ViewKey]) -> Mapping[ViewKey, Recorded]:
        found: dict[ViewKey, Recorded] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [
                        {VIEW_PARTITION_KEY: {"S": a}, VIEW_SORT_KEY: {"S": k}}
                        for a, k in unique[start : start + 100]
                    ],
                    "ConsistentRead": True,
                    "ProjectionExpression": "#a, #k, notified_at",
                    "ExpressionAttributeNames": {"#a": VIEW_PARTITION_KEY, "#k": VIEW_SORT_KEY},
                }
            }
            while request:
                response = self._ddb.batch_get_item(RequestItems=request)
                for raw in response["Responses"].get(self._table, []):
                    key = (raw[VIEW_PARTITION_KEY]["S"], raw[VIEW_SORT_KEY]["S"])
                    found[key] = Recorded(exists=True, notified="notified_at" in raw)
                request = response.get("UnprocessedKeys") or {}
        return found

    def mark_notified(
        self, notification: Notification, *, create: bool, notified_at: str, message_id: str
    ) -> bool:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        item = notification.view_item()
        fields: dict[str, Any] = {"notified_at": notified_at, "notification_id": message_id}
        if create:
            # The alert's own attributes, exactly as fraud-detect writes them.
            fields |= {k: v for k, v in item.items() if k not in (VIEW_PARTITION_KEY,
                                                                   VIEW_SORT_KEY)}
        names = list(fields)
        return adapters.conditional(
            self._ddb.update_item,
            TableName=self._table,
            Key={k: ser.serialize(item[k]) for k in (VIEW_PARTITION_KEY, VIEW_SORT_KEY)},
            UpdateExpression="SET " + ", ".join(f"#a{n} = :v{n}" for n in range(len(names))),
            ConditionExpression="attribute_not_exists(notified_at)",
            ExpressionAttributeNames={f"#a{n}": f for n, f in enumerate(names)},
            ExpressionAttributeValues={
                f":v{n}": ser.serialize(fields[f]) for n, f in enumerate(names)
            },
        )


# fraud-detect: payers' tiers, the alerts view
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


# windows: panes, shard watermarks, the stream's shards
class WindowStore(Protocol):
    """activity-view, addressed by (account_id, window_key): the state engine's item store plus
    the bookkeeping partition's reads and writes."""

    def get_many(self, keys: Sequence[PaneKey]) -> Mapping[PaneKey, Mapping[str, Any]]: ...

    def key_attributes(self, key: PaneKey) -> dict[str, Any]: ...

    def put_if_version(self, item: Mapping[str, Any], expected_version: int | None) -> bool: ...

    def put(self, item: Mapping[str, Any]) -> None:
        """An unconditional write (due lists: the same key always holds the same content)."""
        ...

    def between(self, partition: str, low: str, high: str) -> list[Mapping[str, Any]]:
        """Items of one partition with `low <= window_key <= high`, strongly consistent."""
        ...


class DynamoWindowStore(adapters.DynamoItemStore):
    """`WindowStore` over boto3."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        super().__init__(dynamodb, table, key="account_id", sort_key="window_key")
        self._client = dynamodb
        self._name = table

    def put(self, item: Mapping[str, Any]) -> None:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        self.write_requests += 1
        self._client.put_item(TableName=self._name,
                              Item={k: ser.serialize(v) for k, v in item.items()})

    def between(self, partition: str, low: str, high: str) -> list[Mapping[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        out: list[Mapping[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._name,
            "KeyConditionExpression": "account_id = :pk AND window_key BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":pk": {"S": partition}, ":lo": {"S": low},
                                          ":hi": {"S": high}},
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**kwargs)
            out.extend(adapters.plain({k: des.deserialize(v) for k, v in i.items()})
                       for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass(frozen=True, slots=True)
class ListedShard:
    shard_id: str
    open: bool
    """False once the shard was closed (resharding): it gets no new records."""


class ShardLister(Protocol):
    """The shards of a source stream (a Kinesis stream's ARN, or a Kafka topic's name)."""

    def list_shards(self, stream_arn: str) -> Sequence[ListedShard]: ...


class _CachedLister:
    """A `ShardLister` that keeps each stream's listing for `ttl_s`; `_list` asks the source
    (`calls` counts the requests it made)."""

    def __init__(self, *, ttl_s: float = SHARD_LIST_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[ListedShard, ...]]] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def list_shards(self, stream_arn: str) -> Sequence[ListedShard]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(stream_arn)
            if cached is not None and now - cached[0] < self._ttl_s:
                return cached[1]
        listed = self._list(stream_arn)
        with self._lock:
            self._cache[stream_arn] = (now, listed)
        return listed

    def _list(self, stream: str) -> tuple[ListedShard, ...]:
        raise NotImplementedError


class KinesisShardLister(_CachedLister):
    """`ShardLister` over boto3 Kinesis `ListShards`, each stream's listing cached for `ttl_s`."""

    def __init__(self, kinesis: Any, *, ttl_s: float = SHARD_LIST_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl_s=ttl_s, clock=clock)
        self._kinesis = kinesis

    def _list(self, stream: str) -> tuple[ListedShard, ...]:
        shards: list[ListedShard] = []
        kwargs: dict[str, Any] = {"StreamARN": stream}
        while True:
            self.calls += 1
            page = self._kinesis.list_shards(**kwargs)
            shards.extend(
                ListedShard(str(s["ShardId"]),
                            "EndingSequenceNumber" not in s.get("SequenceNumberRange", {}))
                for s in page.get("Shards", [])
            )
            token = page.get("NextToken")
            if not token:
                return tuple(shards)
            kwargs = {"NextToken": token}


class KafkaPartitionLister(_CachedLister):
    """`ShardLister` over a Kafka topic's partitions (`stream` is the topic), each topic's
    count cached for `ttl_s`. Kafka partitions never close: a topic only gains partitions."""

    def __init__(self, topics: KafkaTopics, *, ttl_s: float = SHARD_LIST_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl_s=ttl_s, clock=clock)
        self._topics = topics

    def _list(self, stream: str) -> tuple[ListedShard, ...]:
        self.calls += 1
        return tuple(ListedShard(str(p), True) for p in range(self._topics.partitions(stream)))


def alerts_publisher(view: AlertsView, sink: Sink, stamper: Stamper, *, writers: int = 8
                     ) -> Publish:
    """fraud-detect's outputs: each alert's view item first, then the alerts stream, so an
    alert on the stream is always in the view (notify marks the view item). Returns the causes
    whose alerts failed, with the reason (those payers' records are retried)."""
    emit = emitter(sink, stamper)

    def upsert(emission: Emission) -> str | None:
        alert = parse_event(emission.envelope)
        if not isinstance(alert, FraudAlert):
            return f"not a fraud alert: {emission.envelope.type}"
        try:
            view.upsert(alert_view_item(alert))
        except Exception as exc:  # noqa: BLE001 - fails this payer's records only
            return f"alerts view write failed: {exc}"
        return None

    def publish(emissions: Sequence[Emission]) -> Mapping[int, str]:
        with ThreadPoolExecutor(max_workers=max(1, min(writers, len(emissions)))) as pool:
            problems = list(pool.map(upsert, emissions))
        failed = {e.cause: why for e, why in zip(emissions, problems, strict=True) if why}
        ready = [e for e in emissions if e.cause not in failed]
        failed.update(emit(ready) if ready else {})
        return failed

    return publish
