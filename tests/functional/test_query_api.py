"""The query API on moto: balances, profiles, windows and alerts over API Gateway HTTP API v2.

Every call goes through the real handler with a payload format 2.0 event and checks the answer
is JSON with `content-type: application/json`; the views are moto tables shaped as declared
(alerts-view with its `by-day` index), filled with items shaped as their writers write them,
including attributes the query API does not know about.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from payments import adapters
from payments.domain import ingest as ingest_domain
from payments.domain import query as domain
from payments.domain.balances import AccountBalance
from payments.handlers import query
from payments.pipeline import PIPELINE
from payments.settings import QuerySettings
from tests.support.events import LambdaContext, http_event

NOW = datetime(2026, 11, 25, 14, 6, 30, tzinfo=UTC)
CTX = LambdaContext("cascata-test-query")
TABLES = {
    domain.View.BALANCES: "cascata-test-balances",
    domain.View.PROFILES: "cascata-test-profiles",
    domain.View.ACTIVITY: "cascata-test-activity-view",
    domain.View.ALERTS: "cascata-test-alerts-view",
}


class Views:
    def __init__(self) -> None:
        self.client = boto3.client("dynamodb", region_name="us-east-1")
        self.resource = boto3.resource("dynamodb", region_name="us-east-1")
        self._create(TABLES[domain.View.BALANCES], "account_id")
        self._create(TABLES[domain.View.PROFILES], "customer_id")
        self._create(TABLES[domain.View.ACTIVITY], "account_id", "window_key")
        self._create(TABLES[domain.View.ALERTS], "account_id", "alert_key",
                     index=("by-day", "day", "alert_key"))
        self._create("versions", "version")

    def _create(self, name: str, pk: str, sk: str | None = None,
                index: tuple[str, str, str] | None = None) -> None:
        keys = [{"AttributeName": pk, "KeyType": "HASH"}]
        attrs = {pk}
        if sk:
            keys.append({"AttributeName": sk, "KeyType": "RANGE"})
            attrs.add(sk)
        extra: dict[str, Any] = {}
        if index:
            attrs.update(index[1:])
            extra["GlobalSecondaryIndexes"] = [{
                "IndexName": index[0],
                "KeySchema": [{"AttributeName": index[1], "KeyType": "HASH"},
                              {"AttributeName": index[2], "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }]
        self.client.create_table(
            TableName=name, KeySchema=keys, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attrs],
            **extra,
        )

    def put(self, view: domain.View, item: dict[str, Any]) -> None:
        self.resource.Table(TABLES[view]).put_item(Item=item)

    def balance(self, account: str, amounts: dict[str, int]) -> None:
        state = AccountBalance(account, balances=amounts, postings=len(amounts))
        # As the state engine stores it: the view, its key, the item version and its fences
        self.put(domain.View.BALANCES, {**state.to_item(), "account_id": account, "version": 3,
                                        "fences": {"c0ffee00": "42 0 1"}})

    def profile(self, customer: str, **fields: Any) -> None:
        self.put(domain.View.PROFILES, {"customer_id": customer, "name": "Alice Liddell",
                                        "tier": "plus", **fields})

    def alert(self, account: str, occurred_at: str, alert_id: str, **fields: Any) -> str:
        key = f"{occurred_at}#{alert_id}"
        self.put(domain.View.ALERTS, {"account_id": account, "alert_key": key,
                                      "day": occurred_at[:10], "rule": "velocity",
                                      "severity": "high", **fields})
        return key


@pytest.fixture
def views() -> Iterator[Views]:
    with mock_aws():
        yield Views()


def handler_for(views: Views, reader: Any = None, now: datetime = NOW) -> Any:
    deps = query.Dependencies(
        reader=reader or adapters.DynamoViewReader(views.client, TABLES), now=lambda: now
    )
    return query.make_handler(deps)


def call(handle: Any, event: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    """Invoke and check what every answer must be: format 2.0, JSON, no stack trace."""
    response = handle(event, CTX)
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["headers"]["content-type"] == "application/json"
    assert response["isBase64Encoded"] is False
    assert "Traceback" not in response["body"]
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def get_account(account: str, **query_params: str) -> dict[str, Any]:
    return http_event("GET", f"/accounts/{account}", route_key="GET /accounts/{id}",
                      path_parameters={"id": account}, query=query_params or None)


def get_account_alerts(account: str, **query_params: str) -> dict[str, Any]:
    return http_event("GET", f"/accounts/{account}/alerts",
                      route_key="GET /accounts/{id}/alerts", path_parameters={"id": account},
                      query=query_params or None)


def get_alerts(**query_params: str) -> dict[str, Any]:
    return http_event("GET", "/alerts", query=query_params or None)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# GET /accounts/{id}


def test_an_account_shows_its_balance_per_currency_profile_and_recent_windows(
    views: Views,
) -> None:
    # Given a balance in two currencies, a profile, two 5-minute panes of payments and a
    # shard whose watermark is 14:10:30
    views.balance("alice", {"USD": -20000, "EUR": 7})
    views.profile("alice", country="GB", payments={"count": 2})
    for start, amount in (("14:00", 100), ("14:05", 200)):
        views.put(domain.View.ACTIVITY, {
            "account_id": "alice", "window_key": f"pane#2026-11-25T{start}:00Z",
            "window": "pane", "window_start": f"2026-11-25T{start}:00Z",
            "totals": {"out": {"USD": {"count": 1, "sum_minor": amount, "min_minor": amount,
                                       "max_minor": amount}}},
            "payments": 1, "fences": {"c": "1"}, "version": 1,
        })
    mark = int(datetime(2026, 11, 25, 14, 10, 30, tzinfo=UTC).timestamp() * 1_000_000)
    views.put(domain.View.ACTIVITY, {
        "account_id": "#shards", "window_key": "shard#validated/shardId-000000000000",
        "stream": "validated", "shard": "shardId-000000000000", "fence": "9",
        "top": [mark, mark, mark], "seen_at_s": 0, "version": 1,
    })
    # When the account is read, asking for the three most recent windows
    status, body, _ = call(handler_for(views), get_account("alice", windows="3"))
    # Then amounts are integers per currency, bookkeeping is hidden, and each window is merged
    # from its panes and final once the watermark passed its end plus the allowed lateness
    assert status == 200
    assert body["account_id"] == "alice"
    assert body["balance"]["balances"] == [
        {"currency": "EUR", "amount_minor": 7}, {"currency": "USD", "amount_minor": -20000}
    ]
    assert body["balance"]["version"] == 3
    assert "fences" not in body["balance"] and "recent" not in body["balance"]
    assert body["profile"] == {"customer_id": "alice", "name": "Alice Liddell", "tier": "plus",
                               "country": "GB", "payments": {"count": 2}}
    assert [(w["window_key"], w["status"], w["totals"]["out"]["USD"]["sum_minor"])
            for w in body["windows"]] == [
        ("hopping#2026-11-25T14:05:00Z", "open", 200),
        ("tumbling#2026-11-25T14:05:00Z", "final", 200),
        ("hopping#2026-11-25T14:00:00Z", "final", 300),
    ]
    assert all("fences" not in w and "version" not in w for w in body["windows"])


def test_an_account_with_only_a_profile_has_no_balance_and_no_windows(views: Views) -> None:
    views.profile("carol")
    status, body, _ = call(handler_for(views), get_account("carol"))
    assert status == 200
    assert body["balance"] is None
    assert body["profile"]["customer_id"] == "carol"
    assert body["windows"] == []


def test_an_unknown_account_is_a_404_with_a_json_error(views: Views) -> None:
    # Given another account exists
    views.balance("alice", {"USD": 1})
    # When an account with no balance and no profile is read
    status, body, _ = call(handler_for(views), get_account("nobody"))
    # Then it is a 404 naming the problem
    assert status == 404
    assert body["error"] == "account_not_found"
    assert "nobody" in body["message"]


@pytest.mark.parametrize("bad", ["a b", "x" * 65, "al!ce", "", "ali/ce", "caf\u00e9"])
def test_an_account_id_outside_the_alphabet_is_a_400(views: Views, bad: str) -> None:
    status, body, _ = call(handler_for(views), get_account(bad))
    assert status == 400
    assert body["error"] == "invalid_account_id"
    status, body, _ = call(handler_for(views), get_account_alerts(bad))
    assert status == 400


def test_the_longest_account_id_and_every_allowed_character_are_accepted(views: Views) -> None:
    account = "A-z_0.9" + "x" * 57
    views.profile(account)
    status, _, _ = call(handler_for(views), get_account(account))
    assert status == 200


@pytest.mark.parametrize("windows", ["-1", "51", "ten", "1e1"])
def test_the_windows_parameter_is_checked(views: Views, windows: str) -> None:
    views.profile("alice")
    status, body, _ = call(handler_for(views), get_account("alice", windows=windows))
    assert status == 400
    assert body["parameter"] == "windows"


# --------------------------------------------------------------------------------------------
# GET /accounts/{id}/alerts


def test_account_alerts_page_newest_first_through_several_pages(views: Views) -> None:
    # Given seven alerts for alice (and one for bob that must never show up)
    start = NOW - timedelta(days=3)
    keys = [views.alert("alice", iso(start + timedelta(hours=5 * i)), f"a{i}", extra=i)
            for i in range(7)]
    views.alert("bob", iso(start), "b0")
    handle = handler_for(views)
    # When they are read three at a time, following the cursor
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        status, body, _ = call(handle, get_account_alerts("alice", **params))
        assert status == 200
        pages.append([a["alert_key"] for a in body["alerts"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10
    # Then every alert arrives once, newest first, three per page
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [k for p in pages for k in p] == sorted(keys, reverse=True)


def test_account_alerts_of_a_known_account_without_alerts_are_an_empty_list(
    views: Views,
) -> None:
    views.balance("dave", {"USD": 5})
    status, body, _ = call(handler_for(views), get_account_alerts("dave"))
    assert status == 200
    assert body == {"account_id": "dave", "alerts": [], "next_cursor": None}


def test_account_alerts_of_an_unknown_account_are_a_404(views: Views) -> None:
    status, body, _ = call(handler_for(views), get_account_alerts("ghost"))
    assert status == 404
    assert body["error"] == "account_not_found"


def _b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "not a cursor!",
    _b64(b"\xff\xfe not utf-8"),
    _b64(b"{not json"),
    _b64(["account_id", "alert_key"]),
    _b64({"account_id": "alice"}),
    _b64({"account_id": "alice", "alert_key": 5}),
    _b64({"account_id": "alice", "alert_key": "k", "extra": "x"}),
    _b64({"account_id": "bob", "alert_key": "2026-11-24T00:00:00Z#b0"}),
    "A" * 3000,
])
def test_a_tampered_account_alerts_cursor_is_a_400(views: Views, cursor: str) -> None:
    # Given a real first page exists
    for i in range(3):
        views.alert("alice", iso(NOW - timedelta(hours=i)), f"a{i}")
    handle = handler_for(views)
    status, body, _ = call(handle, get_account_alerts("alice", limit="1"))
    assert status == 200 and body["next_cursor"]
    # When a cursor was altered (or belongs to another account)
    status, body, _ = call(handle, get_account_alerts("alice", limit="1", cursor=cursor))
    # Then it is refused as a bad parameter, not passed on to DynamoDB
    assert status == 400
    assert body == {"error": "invalid_parameter", "parameter": "cursor",
                    "message": "cursor is not one this API returned for this query"}


@pytest.mark.parametrize("limit", ["0", "101", "abc", "-1", "1.5", "", " 5", "+5"])
def test_limit_outside_1_to_100_is_a_400(views: Views, limit: str) -> None:
    views.profile("alice")
    handle = handler_for(views)
    for event in (get_account_alerts("alice", limit=limit),
                  get_alerts(since=iso(NOW - timedelta(hours=1)), limit=limit)):
        status, body, _ = call(handle, event)
        assert status == 400
        assert body["parameter"] == "limit"


def test_limit_bounds_1_and_100_are_accepted(views: Views) -> None:
    views.profile("alice")
    handle = handler_for(views)
    for limit in ("1", "100"):
        status, _, _ = call(handle, get_account_alerts("alice", limit=limit))
        assert status == 200


# --------------------------------------------------------------------------------------------
# GET /alerts?since=


def test_the_alerts_feed_reads_day_by_day_since_a_time_oldest_first_across_pages(
    views: Views,
) -> None:
    # Given alerts over five days for several accounts, some before `since`
    since = NOW - timedelta(days=4, hours=2)
    expected = []
    for i in range(12):
        t = NOW - timedelta(days=5) + timedelta(hours=11 * i)
        key = views.alert(["alice", "bob", "carol"][i % 3], iso(t), f"x{i}")
        if t >= since:
            expected.append(key)
    assert 5 < len(expected) < 12
    handle = handler_for(views)
    # When the feed is read two at a time
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    for _page in range(20):
        params = {"since": iso(since), "limit": "2"} | ({"cursor": cursor} if cursor else {})
        status, body, _ = call(handle, get_alerts(**params))
        assert status == 200
        assert len(body["alerts"]) <= 2
        seen.extend((a["alert_key"], a["account_id"]) for a in body["alerts"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # Then every alert since that time arrives once, oldest first, with its account
    assert [k for k, _ in seen] == sorted(expected)
    assert {a for _, a in seen} == {"alice", "bob", "carol"}


def test_the_feed_is_exact_within_the_second_of_since(views: Views) -> None:
    # Given alerts just before, at and after a since with a fraction of a second
    base = (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    views.alert("alice", f"{base}.100Z", "early")
    views.alert("alice", f"{base}.500Z", "exact")
    views.alert("alice", f"{base}Z", "whole-second")
    views.alert("alice", f"{base}.900Z", "late")
    # When the feed starts at .5 of that second
    status, body, _ = call(handler_for(views), get_alerts(since=f"{base}.5Z"))
    # Then only alerts at or after it are shown
    assert status == 200
    assert sorted(a["alert_key"].split("#")[1] for a in body["alerts"]) == ["exact", "late"]


def test_since_in_another_offset_is_the_same_instant(views: Views) -> None:
    views.alert("alice", iso(NOW - timedelta(minutes=30)), "recent")
    views.alert("alice", iso(NOW - timedelta(hours=3)), "older")
    # one hour ago, written in UTC-05:30; the '+' of a positive offset would arrive as a space
    local = (NOW - timedelta(hours=1)).astimezone(timezone(-timedelta(hours=5, minutes=30)))
    assert local.strftime("%Y-%m-%dT%H:%M:%S-05:30") == local.isoformat()
    status, body, _ = call(handler_for(views), get_alerts(since=local.isoformat()))
    assert status == 200
    assert [a["alert_key"].split("#")[1] for a in body["alerts"]] == ["recent"]
    plus = (NOW - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    status, body, _ = call(handler_for(views),
                           get_alerts(since=plus.isoformat().replace("+", " ")))
    assert status == 200
    assert [a["alert_key"].split("#")[1] for a in body["alerts"]] == ["recent"]


@pytest.mark.parametrize("since", [
    None, "yesterday", "2026-11-25", "2026-11-25T14:06:00", "2026-13-01T00:00:00Z",
    "2026-11-25T14:06:00+25:00", iso(NOW - timedelta(days=7, seconds=1)),
    iso(NOW - timedelta(days=30)),
])
def test_a_missing_malformed_or_too_old_since_is_a_400(views: Views, since: str | None) -> None:
    params = {"since": since} if since is not None else {}
    status, body, _ = call(handler_for(views), get_alerts(**params))
    assert status == 400
    assert body["parameter"] == "since"


def test_since_exactly_seven_days_ago_is_accepted_and_reads_eight_days(views: Views) -> None:
    views.alert("alice", iso(NOW - timedelta(days=7)), "oldest")
    views.alert("bob", iso(NOW - timedelta(minutes=1)), "newest")
    status, body, _ = call(handler_for(views), get_alerts(since=iso(NOW - timedelta(days=7))))
    assert status == 200
    assert [a["alert_key"].split("#")[1] for a in body["alerts"]] == ["oldest", "newest"]
    assert body["next_cursor"] is None


def test_since_in_the_future_is_an_empty_feed(views: Views) -> None:
    views.alert("alice", iso(NOW), "now")
    status, body, _ = call(handler_for(views), get_alerts(since=iso(NOW + timedelta(days=2))))
    assert status == 200
    assert body["alerts"] == [] and body["next_cursor"] is None


def test_a_feed_cursor_from_elsewhere_or_tampered_is_a_400(views: Views) -> None:
    for i in range(4):
        views.alert("alice", iso(NOW - timedelta(days=2, hours=i)), f"a{i}")
    handle = handler_for(views)
    since = iso(NOW - timedelta(days=3))
    _, body, _ = call(handle, get_alerts(since=since, limit="1"))
    cursor = body["next_cursor"]
    assert cursor
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    other_day = dict(decoded, day=(NOW - timedelta(days=1)).date().isoformat())
    before_since = dict(decoded, day=(NOW - timedelta(days=5)).date().isoformat(), after=None)
    wrong_key = dict(decoded, after={"day": decoded["day"], "alert_key": "k"})
    for bad in (_b64(other_day), _b64(before_since), _b64(wrong_key), cursor[:-4], "%%%"):
        status, body, _ = call(handle, get_alerts(since=since, limit="1", cursor=bad))
        assert status == 400, bad
        assert body["parameter"] == "cursor"
    # the untouched cursor still works
    status, body, _ = call(handle, get_alerts(since=since, limit="1", cursor=cursor))
    assert status == 200 and len(body["alerts"]) == 1


def test_a_feed_page_stops_at_its_query_budget_with_a_cursor_to_resume(views: Views) -> None:
    # Given a reader that counts queries, and more pages than one request may spend
    class Counting(adapters.DynamoViewReader):
        queries = 0

        def query(self, q: domain.KeyQuery) -> domain.Page:
            Counting.queries += 1
            page = super().query(q)
            if not page.items:
                return page
            # DynamoDB may end a page early (1 MB read); force that after every item
            first = page.items[0]
            return domain.Page(page.items[:1],
                               {k: first[k] for k in ("day", "alert_key", "account_id")})

    for i in range(40):
        views.alert("alice", iso(NOW - timedelta(hours=1, seconds=i)), f"a{i:02d}")
    reader = Counting(views.client, TABLES)
    status, body, _ = call(handler_for(views, reader),
                           get_alerts(since=iso(NOW - timedelta(hours=2)), limit="100"))
    assert status == 200
    assert Counting.queries == domain.MAX_FEED_QUERIES
    assert body["next_cursor"] is not None


# --------------------------------------------------------------------------------------------
# Routing and failures


def test_an_unknown_route_is_a_404_and_a_wrong_method_a_405(views: Views) -> None:
    handle = handler_for(views)
    status, body, _ = call(handle, http_event("GET", "/nowhere", route_key="$default"))
    assert status == 404 and body["error"] == "not_found"
    status, body, headers = call(handle, http_event("DELETE", "/accounts/alice",
                                                    route_key="$default"))
    assert status == 405 and body["error"] == "method_not_allowed"
    assert headers["allow"] == "GET"
    status, _, _ = call(handle, http_event("GET", "/accounts/alice/alerts/extra",
                                           route_key="$default"))
    assert status == 404


def test_a_default_route_on_a_named_stage_is_routed_by_path(views: Views) -> None:
    views.profile("alice")
    event = http_event("GET", "/accounts/alice", route_key="$default", stage="prod")
    status, body, _ = call(handler_for(views), event)
    assert status == 200 and body["account_id"] == "alice"


def test_an_unexpected_error_is_a_500_without_details(views: Views) -> None:
    class Broken:
        def get(self, view: Any, key: Any) -> Any:
            raise RuntimeError("password=hunter2 in a stack frame")

        def query(self, q: Any) -> Any:
            raise RuntimeError("password=hunter2")

    status, body, _ = call(handler_for(views, Broken()), get_account("alice"))
    assert status == 500
    assert body == {"error": "internal_error", "message": "internal error",
                    "request_id": "JKJaXmPLvHcESHA="}


def test_a_missing_table_is_a_500_and_throttling_a_503(views: Views) -> None:
    missing = adapters.DynamoViewReader(views.client, {**TABLES, domain.View.PROFILES: "nope"})
    status, body, _ = call(handler_for(views, missing), get_account("alice"))
    assert status == 500 and "nope" not in json.dumps(body)

    class Throttled(Exception):
        response = {"Error": {"Code": "ProvisionedThroughputExceededException"}}

    class Busy:
        def get(self, view: Any, key: Any) -> Any:
            raise Throttled()

        def query(self, q: Any) -> Any:
            raise Throttled()

    status, body, headers = call(handler_for(views, Busy()), get_account("alice"))
    assert status == 503 and headers["retry-after"] == "1"


def test_a_non_http_event_is_a_400() -> None:
    response = query.make_handler(query.Dependencies(reader=None))(  # type: ignore[arg-type]
        {"Records": []}, CTX)
    assert response["statusCode"] == 400


def test_dependencies_read_the_tables_named_in_the_settings(views: Views) -> None:
    views.profile("alice")
    settings_ = QuerySettings(
        balances_table=TABLES[domain.View.BALANCES], profiles_table=TABLES[domain.View.PROFILES],
        activity_table=TABLES[domain.View.ACTIVITY], alerts_table=TABLES[domain.View.ALERTS],
        versions_table="versions", stage="test",
    )
    handle = query.make_handler(query.dependencies(settings_, client=lambda s: views.client))
    status, body, _ = call(handle, get_account("alice"))
    assert status == 200 and body["profile"]["customer_id"] == "alice"


def _settings() -> QuerySettings:
    return QuerySettings(
        balances_table=TABLES[domain.View.BALANCES], profiles_table=TABLES[domain.View.PROFILES],
        activity_table=TABLES[domain.View.ACTIVITY], alerts_table=TABLES[domain.View.ALERTS],
        versions_table="versions", stage="test",
    )


def test_each_request_reads_the_version_the_live_pointer_names(views: Views) -> None:
    views.profile("alice")
    for view in (domain.View.BALANCES, domain.View.PROFILES, domain.View.ACTIVITY):
        key = "customer_id" if view is domain.View.PROFILES else "account_id"
        sort = "window_key" if view is domain.View.ACTIVITY else None
        views._create(f"{TABLES[view]}-v2", key, sort)
    views._create(f"{TABLES[domain.View.ALERTS]}-v2", "account_id", "alert_key",
                  index=("by-day", "day", "alert_key"))
    views.client.put_item(TableName=f"{TABLES[domain.View.PROFILES]}-v2", Item={
        "customer_id": {"S": "alice"}, "name": {"S": "Alice (v2)"}})
    handle = query.make_handler(query.dependencies(_settings(), client=lambda s: views.client))

    # No pointer yet: v1, the deployed tables.
    status, body, headers = call(handle, get_account("alice"))
    assert status == 200 and headers["x-cascata-version"] == "v1"
    assert body["profile"].get("name") != "Alice (v2)"

    views.client.put_item(TableName="versions", Item={
        "version": {"S": "@live"}, "live": {"S": "v2"}})
    status, body, headers = call(handle, get_account("alice"))
    assert status == 200 and headers["x-cascata-version"] == "v2"
    assert body["profile"]["name"] == "Alice (v2)"


def test_a_pointer_naming_no_version_is_a_server_error_not_a_wrong_answer(views: Views) -> None:
    views.client.put_item(TableName="versions", Item={
        "version": {"S": "@live"}, "live": {"S": "latest"}})
    handle = query.make_handler(query.dependencies(_settings(), client=lambda s: views.client))
    status, body, _ = call(handle, get_account("alice"))
    assert status == 500 and body["error"] == "internal_error"


def test_the_routes_served_are_the_routes_declared() -> None:
    declared = {api.name: {r.key for r in api.routes} for api in PIPELINE.apis}
    assert declared["query"] == set(domain.ROUTES)
    assert declared["ingest"] == set(ingest_domain.ROUTES)
    assert PIPELINE.function("query").handler == f"{query.__name__}.handler"


# --------------------------------------------------------------------------------------------
# Properties of the pure parts


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_decoding_any_text_as_a_cursor_never_raises(text: str) -> None:
    result = domain.decode_cursor(text)
    assert isinstance(result, dict | domain.ApiError)


@given(st.dictionaries(st.sampled_from(["account_id", "alert_key", "day"]),
                       st.text(min_size=1, max_size=50), min_size=1))
def test_cursors_round_trip(key: dict[str, str]) -> None:
    assert domain.decode_cursor(domain.encode_cursor(key)) == key


_values = st.recursive(
    st.none() | st.booleans() | st.text(max_size=20) | st.binary(max_size=20)
    | st.integers(-(10**30), 10**30)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**9),
                  max_value=10**9),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12,
)


@given(_values)
@settings(max_examples=300, deadline=None)
def test_attribute_values_decode_like_boto3_with_integers_kept_exact(value: Any) -> None:
    wire = TypeSerializer().serialize(value)
    expected = _plain(TypeDeserializer().deserialize(wire))
    assert domain.from_attribute_value(wire) == expected


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "value") and isinstance(value.value, bytes):  # boto3 Binary
        return base64.b64encode(value.value).decode()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
