"""The dashboards service, as a real process over a real warehouse: every GraphQL query against an independent
computation over the generated events (testing/reference_marts.py, pandas), caching, auth, the read-only role,
the query builder's injection resistance, sampling, exports, and a Redis outage."""

from __future__ import annotations

import csv
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import psycopg2
import pytest
import redis
from dagster import DagsterInstance, DagsterRunStatus
from playwright.sync_api import sync_playwright

from common.db import drop_database, ensure_database
from common.settings import get_settings, utc_today
from dashboards.config import get_dashboard_settings, readonly_url
from dashboards.readonly import drop_readonly_role, ensure_readonly_role
from ingestion.generator import generate
from insights.engine import Engine
from insights.store import store_dir
from orchestration.runs import run_materialize
from testing import insights_reference
from testing import reference_marts as ref
from testing.dashboard_server import RedisServer, dashboard_process
from testing.db import rows
from testing.reference import compute

TOKEN = f"test-token-{uuid.uuid4().hex}"
DAYS = 21
TODAY = utc_today()
FIRST = TODAY - timedelta(days=DAYS - 1)


@dataclass
class Dash:
    settings: object
    url: str
    frame: object
    root: Path
    reader: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def dash(settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboards")
    reader = f"analyticspro_reader_{uuid.uuid4().hex[:8]}"
    env = {
        "DATABASE_URL": settings.database_url_for(f"{settings.database_name}_dash"),
        "EVENTS_BUCKET_URL": str(root / "bucket"),
        "DLT_PIPELINES_DIR": str(root / "dlt"),
        "REDIS_KEY_PREFIX": f"{settings.redis_key_prefix}_dash",  # its hot-metric state is not the session's
        "ANALYTICSPRO_API_TOKENS": f"another-token-{uuid.uuid4().hex},{TOKEN}",
        "ANALYTICSPRO_READONLY_USER": reader,
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        warehouse_settings = get_settings()
        ensure_database(warehouse_settings)
        try:
            ensure_readonly_role(get_dashboard_settings())
            generate(root / "bucket", days=DAYS, users=900, seed=3, end_date=TODAY)
            assert run_materialize()
            frame = ref.event_frame(compute(root / "bucket").events)
            with dashboard_process(env, root / "dashboard.log") as url:
                yield Dash(warehouse_settings, url, frame, root, reader, env)
        finally:
            drop_readonly_role(get_dashboard_settings())
            drop_database(warehouse_settings)
            client = redis.Redis.from_url(warehouse_settings.redis_url)
            stale = list(client.scan_iter(match=f"{warehouse_settings.redis_key_prefix}:*", count=1000))
            if stale:
                client.delete(*stale)


def gql(url: str, query: str, variables: dict | None = None, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers, timeout=60
    )


def data(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    payload = response.json()
    assert not payload.get("errors"), payload["errors"]
    return payload["data"]


def custom(first: date = FIRST, last: date = TODAY) -> dict:
    return {"from": first.isoformat(), "to": last.isoformat()}


# -- auth and the read-only role ------------------------------------------------------------------------------
def test_requests_without_the_right_token_get_401(dash):
    query = "{ hotMetrics { dau } }"
    assert gql(dash.url, query, token=None).status_code == 401
    wrong = gql(dash.url, query, token=TOKEN + "x")
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert "ANALYTICSPRO_API_TOKENS" in wrong.json()["errors"][0]["message"]
    assert httpx.get(f"{dash.url}/graphql", params={"query": query}, timeout=10).status_code == 401
    assert gql(dash.url, query).status_code == 200
    # the page, GraphiQL and the health check need no token (they carry no data)
    assert "GraphiQL" in httpx.get(f"{dash.url}/graphql", headers={"Accept": "text/html"}, timeout=10).text
    assert httpx.get(f"{dash.url}/health", timeout=10).json() == {"status": "ok", "postgres": True, "redis": True}
    assert "chart-funnel" in httpx.get(dash.url, timeout=10).text
    vendor = httpx.get(f"{dash.url}/vendor/echarts.min.js", timeout=10)
    assert vendor.status_code == 200 and len(vendor.content) > 500_000  # served from npm's package, no CDN
    assert TOKEN not in (dash.root / "dashboard.log").read_text()


def test_the_readonly_role_reads_the_marts_and_nothing_else(dash):
    connection = psycopg2.connect(readonly_url(dash.settings.database_url, dash.reader, None))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("select count(*) from analytics.fct_events")
            assert cursor.fetchone()[0] == len(dash.frame)
            for statement, error in [
                ("select count(*) from raw.events", psycopg2.errors.InsufficientPrivilege),
                ("select count(*) from ops.erasure_requests", psycopg2.errors.InsufficientPrivilege),
                ("delete from analytics.daily_metrics", psycopg2.errors.ReadOnlySqlTransaction),
                ("create table analytics.x (a int)", psycopg2.errors.ReadOnlySqlTransaction),
            ]:
                with pytest.raises(error):
                    cursor.execute(statement)
            cursor.execute("set default_transaction_read_only = off")  # a session may lift it: grants still hold
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cursor.execute("delete from analytics.daily_metrics")
    finally:
        connection.close()


# -- every query against the reference computation --------------------------------------------------------------
def test_daily_metrics_equal_the_reference(dash):
    expected = ref.daily_metrics(dash.frame, ref.sessions(dash.frame), ref.dim_users(dash.frame))
    names = ["dau", "wau", "mau", "stickiness", "signups", "new_people", "events", "revenue", "mrr", "sessions"]
    first, last = min(d for d, _ in expected), max(d for d, _ in expected)
    points = data(
        gql(
            dash.url,
            "query($m: [String!]!, $r: DateRangeInput) { dailyMetrics(metrics: $m, dateRange: $r) "
            "{ date metric value } }",
            {"m": names, "r": custom(first, last)},
        )
    )["dailyMetrics"]
    actual = {(date.fromisoformat(p["date"]), p["metric"]): p["value"] for p in points}
    assert actual == {key: float(value) for key, value in expected.items()}
    week = data(gql(dash.url, '{ dailyMetrics(metrics: ["dau"], dateRange: {preset: LAST_7_DAYS}) { date value } }'))
    assert [p["date"] for p in week["dailyMetrics"]] == [
        (TODAY - timedelta(days=n)).isoformat() for n in range(6, -1, -1)
    ]
    assert all(
        p["value"] == float(expected[(TODAY - timedelta(days=6 - i), "dau")])
        for i, p in enumerate(week["dailyMetrics"])
    )
    unknown = gql(dash.url, '{ dailyMetrics(metrics: ["daus"]) { value } }').json()
    assert "unknown metric(s) daus" in unknown["errors"][0]["message"]


def test_funnel_equals_the_reference_with_drop_off_and_breakdown(dash):
    expected = ref.funnel_steps(dash.frame)
    first, last = FIRST + timedelta(days=3), TODAY - timedelta(days=2)
    answer = data(
        gql(
            dash.url,
            """query($r: DateRangeInput) {
        funnel(name: "default", dateRange: $r, breakdownBy: "person.plan")
        { steps { index name persons conversionFromPrevious conversionFromStart dropOff dropOffRate }
          breakdown { value steps { index persons dropOff } } } }""",
            {"r": custom(first, last)},
        )
    )["funnel"]
    persons = [
        sum(p for (cohort, step), (p, _) in expected.items() if step == index and first <= cohort <= last)
        for index in range(1, 5)
    ]
    assert [s["persons"] for s in answer["steps"]] == persons and persons[3] > 0
    assert [s["name"] for s in answer["steps"]] == ["Landing page", "Signed up", "Trial started", "Purchase"]
    for position, step in enumerate(answer["steps"]):
        if position:
            assert step["conversionFromPrevious"] == pytest.approx(persons[position] / persons[position - 1], abs=1e-6)
        assert step["conversionFromStart"] == pytest.approx(persons[position] / persons[0], abs=1e-6)
        # drop-off (docs/metrics.md): reached the previous step but not this one; its rate is over the previous step
        dropped = persons[position - 1] - persons[position] if position else 0
        assert step["dropOff"] == dropped
        if position:
            assert step["dropOffRate"] == pytest.approx(dropped / persons[position - 1], abs=1e-6)
        else:
            assert step["dropOffRate"] is None
    # the breakdown's groups add up to the funnel, step by step, and equal the mart's rows
    for index in range(4):
        assert sum(group["steps"][index]["persons"] for group in answer["breakdown"]) == persons[index]
        assert sum(group["steps"][index]["dropOff"] for group in answer["breakdown"]) == (
            persons[index - 1] - persons[index] if index else 0
        )
    mart = dict(
        rows(
            dash.settings,
            "select breakdown_value, sum(persons) from analytics.fct_funnel_breakdown where funnel_name = 'default' "
            "and breakdown_by = 'person.plan' and step_index = 1 and cohort_date between %s and %s group by 1",
            (first, last),
        )
    )
    assert {g["value"]: g["steps"][0]["persons"] for g in answer["breakdown"]} == mart
    bad = gql(dash.url, '{ funnel(name: "default", breakdownBy: "person.shoe_size") { name } }').json()
    assert "no breakdown 'person.shoe_size'" in bad["errors"][0]["message"]


def test_retention_equals_the_reference(dash):
    expected = ref.cohort_retention(dash.frame, ref.dim_users(dash.frame))
    answer = data(
        gql(
            dash.url,
            'query($r: DateRangeInput) { retention(grain: "week", dateRange: $r) '
            "{ cohorts { cohortStart size retained rates } } }",
            {"r": custom(FIRST - timedelta(days=7))},
        )
    )
    cohorts = answer["retention"]["cohorts"]
    want = sorted({start for grain, start, _ in expected if grain == "week"})
    assert [date.fromisoformat(c["cohortStart"]) for c in cohorts] == want
    for cohort in cohorts:
        start = date.fromisoformat(cohort["cohortStart"])
        periods = sorted(n for grain, s, n in expected if grain == "week" and s == start)
        assert cohort["size"] == expected[("week", start, 0)][0]
        assert cohort["retained"] == [expected[("week", start, n)][1] for n in periods]
        assert cohort["rates"] == [
            pytest.approx(expected[("week", start, n)][1] / cohort["size"], abs=1e-6) for n in periods
        ]


def test_revenue_equals_the_reference(dash):
    expected = ref.revenue_monthly(dash.frame, ref.fct_mrr(dash.frame))
    answer = data(
        gql(
            dash.url,
            "query($r: DateRangeInput) { revenue(dateRange: $r) { month mrr arr newMrr expansionMrr "
            "contractionMrr churnedMrr reactivationMrr customers ltv } }",
            {"r": custom()},
        )
    )
    months = {date.fromisoformat(m["month"]): m for m in answer["revenue"]}
    assert set(months) == set(expected)
    for month, want in expected.items():
        got = months[month]
        assert got["mrr"] == float(want["mrr"]) and got["mrr"] > 0
        for api, column in [
            ("newMrr", "new_mrr"),
            ("expansionMrr", "expansion_mrr"),
            ("churnedMrr", "churned_mrr"),
            ("contractionMrr", "contraction_mrr"),
            ("customers", "customers"),
        ]:
            assert got[api] == float(want[column]), (month, api)


def _dau(dash, day: date) -> float:
    query = 'query($r: DateRangeInput) { dailyMetrics(metrics: ["dau"], dateRange: $r) { value } }'
    return data(gql(dash.url, query, {"r": custom(day, day)}))["dailyMetrics"][0]["value"]


def _until(check, seconds: float = 20.0) -> float:
    """Seconds until `check()` holds (polled every 0.2 s); fails after `seconds`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "the dashboard did not follow the marts"
        time.sleep(0.2)
    return time.monotonic() - started


def test_custom_ranges_follow_the_marts_within_the_refresh_interval(dash):
    """Custom ranges are answered from the process's copy of the marts (dashboards/marts.py), read again in the
    background every DASHBOARD_MARTS_REFRESH_SECONDS (5): a change to a mart shows within that, then goes away."""
    day = TODAY - timedelta(days=3)
    before = _dau(dash, day)
    connection = psycopg2.connect(dash.settings.database_url)
    connection.autocommit = True
    change = "update analytics.daily_metrics set value = value + %s where date = %s and metric_name = 'dau'"
    try:
        with connection.cursor() as cursor:
            cursor.execute(change, (1000, day))
        assert _until(lambda: _dau(dash, day) == before + 1000) < 15
    finally:
        with connection.cursor() as cursor:
            cursor.execute(change, (-1000, day))
        connection.close()
    _until(lambda: _dau(dash, day) == before)


def test_hot_metrics_come_from_redis_and_equal_the_marts(dash):
    answer = data(gql(dash.url, "{ hotMetrics { date signups dau events revenue source updatedAt } }"))["hotMetrics"]
    assert answer["source"] == "redis" and answer["date"] == TODAY.isoformat()
    marts = dict(
        rows(dash.settings, "select metric_name, value from analytics.daily_metrics where date = %s", (TODAY,))
    )
    assert answer["signups"] == int(marts["signups"]) and answer["dau"] == int(marts["dau"])
    assert answer["revenue"] == float(marts["revenue"])
    assert answer["dau"] > 0


# -- the query builder --------------------------------------------------------------------------------------
INSIGHT = """query($e: String!, $f: [FilterInput!], $g: String!, $r: DateRangeInput, $s: Float) {
  insight(event: $e, filters: $f, groupBy: $g, dateRange: $r, sample: $s) {
    rows { bucket group events persons eventsMargin } estimated sampleRate groupsTotal truncated } }"""


def ask(dash, event, filters=(), group="day", first=FIRST, last=TODAY, sample=None) -> dict:
    variables = {"e": event, "f": list(filters), "g": group, "r": custom(first, last), "s": sample}
    return data(gql(dash.url, INSIGHT, variables))["insight"]


def expected_rows(frame, group: str) -> list[tuple]:
    if group in ("day", "week", "month"):
        keys = frame.event_date.map(lambda d: ref._period_start(d, group) if group != "day" else d)
    else:
        keys = frame[group].fillna("(none)").astype(str)
    grouped = frame.assign(key=keys).groupby("key").agg(events=("message_id", "size"), persons=("person_id", "nunique"))
    return [(k, int(r.events), int(r.persons)) for k, r in grouped.iterrows()]


def test_insight_answers_equal_pandas(dash):
    frame = dash.frame
    in_range = frame[(frame.event_date >= FIRST) & (frame.event_date <= TODAY) & (frame.event_type == "track")]
    purchases = in_range[in_range.event_name == "purchase_completed"].copy()
    purchases["plan"] = purchases.properties.map(lambda p: p.get("plan"))
    purchases["amount"] = purchases.properties.map(lambda p: p.get("revenue"))
    users = ref.dim_users(frame)
    purchases["user_plan"] = purchases.person_id.map(users.plan)
    assert len(purchases) > 20

    def by_day(answer: dict) -> list[tuple]:
        return [(date.fromisoformat(r["bucket"]), r["events"], r["persons"]) for r in answer["rows"]]

    assert by_day(ask(dash, "purchase_completed")) == expected_rows(purchases, "day")
    pro = ask(dash, "purchase_completed", [{"field": "event.plan", "op": "=", "value": "pro"}])
    assert by_day(pro) == expected_rows(purchases[purchases.plan == "pro"], "day")
    weekly = ask(dash, "purchase_completed", [{"field": "user.plan", "op": "!=", "value": "starter"}], group="week")
    assert by_day(weekly) == expected_rows(purchases[purchases.user_plan != "starter"], "week")
    big = ask(dash, "purchase_completed", [{"field": "event.revenue", "op": ">", "value": "50"}], group="event.plan")
    want = expected_rows(purchases[purchases.amount.map(lambda v: v is not None and v > 50)], "plan")
    assert sorted((r["group"], r["events"], r["persons"]) for r in big["rows"]) == sorted(want)
    assert [r["events"] for r in big["rows"]] == sorted((r["events"] for r in big["rows"]), reverse=True)
    pages = frame[(frame.event_type == "page") & (frame.event_date >= FIRST)]
    contains = ask(dash, "page", [{"field": "event.path", "op": "contains", "value": "PRICING"}], group="month")
    want = expected_rows(pages[pages.page_path.fillna("").str.lower().str.contains("pricing", regex=False)], "month")
    assert by_day(contains) == want and want
    is_set = ask(dash, "trial_started", [{"field": "event.trial_days", "op": "is set"}], group="user.plan")
    trials = in_range[in_range.event_name == "trial_started"].copy()
    trials = trials[trials.properties.map(lambda p: p.get("trial_days") is not None)]
    trials["user.plan"] = trials.person_id.map(users.plan)
    assert sorted((r["group"], r["events"], r["persons"]) for r in is_set["rows"]) == sorted(
        expected_rows(trials, "user.plan")
    )


INJECTIONS = [
    # (event, filters, group_by) — each must be refused with a clear error or treated as a plain value
    ("purchase_completed'; drop table analytics.fct_events; --", [], "day"),
    ('purchase_completed" or 1=1 --', [], "day"),
    ("purchase_completed\x00", [], "day"),
    ("x" * 5000, [], "day"),
    (
        "purchase_completed",
        [{"field": "event.plan'); delete from analytics.dim_users; --", "op": "=", "value": "pro"}],
        "day",
    ),
    ("purchase_completed", [{"field": "event.plan", "op": "= 'pro' or 1=1 --", "value": "pro"}], "day"),
    ("purchase_completed", [{"field": "event.plan", "op": "=", "value": "pro' or '1'='1"}], "day"),
    (
        "purchase_completed",
        [{"field": "event.plan", "op": "=", "value": "'; drop table analytics.daily_metrics; --"}],
        "day",
    ),
    ("purchase_completed", [{"field": "event.plan", "op": "contains", "value": "%' or 1=1 --"}], "day"),
    ("purchase_completed", [{"field": "event.plan", "op": "contains", "value": "%"}], "day"),
    ("purchase_completed", [{"field": "event.plan", "op": "contains", "value": "_"}], "day"),
    ("purchase_completed", [{"field": "event.revenue", "op": ">", "value": "1; drop table analytics.fct_mrr"}], "day"),
    ("purchase_completed", [{"field": "event.revenue", "op": ">", "value": "NaN"}], "day"),
    ("purchase_completed", [{"field": "event.revenue", "op": "<", "value": "1e999999999"}], "day"),
    ("purchase_completed", [{"field": "user.plan; drop role postgres", "op": "=", "value": "pro"}], "day"),
    ("purchase_completed", [{"field": "user.signup_date", "op": ">", "value": "2024-01-01'; --"}], "day"),
    ("purchase_completed", [{"field": "user.is_identified", "op": "=", "value": "true or 1=1"}], "day"),
    ("purchase_completed", [{"field": "pg_sleep(10)", "op": "is set"}], "day"),
    ("purchase_completed", [{"field": "event.plan", "op": "="}], "day"),
    ("purchase_completed", [{"field": "event.plan", "op": "=", "value": "x" * 2000}], "day"),
    ("purchase_completed", [{"field": "event.plan", "op": "=", "value": "pro\x00"}], "day"),
    ("purchase_completed", [{"field": "event.plan", "op": "is set"}] * 11, "day"),
    ("purchase_completed", [], "day; drop table analytics.fct_events"),
    ("purchase_completed", [], "date_trunc('hour', event_at)"),
    ("purchase_completed", [], "event.plan') from pg_shadow --"),
    ("purchase_completed", [], "user.password"),
    ("purchase_completed", [{"field": "event.plan", "op": "=", "value": "ß' ∪ ⊥ 😀"}], "event.plan"),
    ("purchase_completed", [{"field": "event.properties->>'x' = 'y' or true", "op": "is set"}], "day"),
]


def _fingerprint(settings) -> list:
    return rows(
        settings,
        """select (select count(*) from analytics.fct_events),
                  (select md5(string_agg(message_id, ',' order by message_id)) from analytics.fct_events),
                  (select count(*) from analytics.dim_users),
                  (select count(*) from analytics.daily_metrics), (select count(*) from pg_roles),
                  (select count(*) from pg_tables where schemaname = 'analytics')""",
    )


def test_sql_injection_and_malformed_questions_are_refused_or_plain_values(dash):
    before = _fingerprint(dash.settings)
    plain_values = 0
    for event, filters, group in INJECTIONS:
        variables = {"e": event, "f": filters, "g": group, "r": custom()}
        response = gql(dash.url, INSIGHT, variables)
        assert response.status_code == 200, (event[:40], filters, group, response.text[:300])
        payload = response.json()
        if payload.get("errors"):
            message = payload["errors"][0]["message"]
            assert len(message) > 15 and "Traceback" not in message, (event[:40], filters, group, message)
            assert "syntax error" not in message.lower(), message  # never reached SQL as text
        else:
            plain_values += 1  # answered: the input was a value that matches nothing (or everything, as text)
            answer = payload["data"]["insight"]
            assert all(r["events"] == 0 for r in answer["rows"]) or filters[0]["op"] == "contains"
    assert len(INJECTIONS) >= 25 and plain_values >= 4
    # wrong GraphQL types never reach a resolver
    for variables in (
        {"e": "purchase_completed", "g": "day", "s": "0.1); drop table x; --"},
        {"e": ["purchase_completed"], "g": "day"},
        {"e": "purchase_completed", "g": "day", "s": "seven"},
    ):
        response = gql(dash.url, INSIGHT, variables)
        assert response.status_code in (200, 400) and response.json()["errors"]
    # one request cannot ask for unbounded work
    many = "{ " + " ".join(f'a{n}: insight(event: "page") {{ estimated }}' for n in range(25)) + " }"
    for _ in range(2):  # the second time from the validation cache (dashboards/schema.py): refused the same
        refused = gql(dash.url, many).json()
        assert refused["errors"][0]["message"] == "25 aliases found. Allowed: 20" and not refused["data"]
    malformed = httpx.post(
        f"{dash.url}/graphql",
        content=b"{not json",
        timeout=10,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    huge = httpx.post(
        f"{dash.url}/graphql",
        content=b"x" * 2_000_000,
        timeout=10,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert _fingerprint(dash.settings) == before


def test_a_too_broad_question_gets_a_clear_error(dash):
    answer = gql(dash.url, INSIGHT, {"e": "page", "g": "day", "r": custom(TODAY - timedelta(days=800))}).json()
    message = answer["errors"][0]["message"]
    assert "at most 366" in message and "export" in message.lower()
    unknown = gql(dash.url, INSIGHT, {"e": "purchase_complete", "g": "day"}).json()
    assert "did you mean 'purchase_completed'" in unknown["errors"][0]["message"]


def test_the_query_builder_is_the_engines_trends_and_a_sample_is_ignored(dash):
    exact = ask(dash, "page", group="week")
    sampled = ask(dash, "page", group="week", sample=0.1)
    assert sampled == exact and not exact["estimated"] and exact["sampleRate"] == 1.0
    spec = {**custom(), "kind": "trends", "interval": "week", "series": [{"event": "page", "math": "persons"}]}
    persons = data(gql(dash.url, QUERY, {"spec": spec}))["query"]["series"][0]["points"]
    assert [r["persons"] for r in exact["rows"]] == [p["value"] for p in persons if p["value"]]
    assert sum(r["events"] for r in exact["rows"]) > 3000


# -- the insights engine through GraphQL ----------------------------------------------------------------------
QUERY = "query Q($spec: JSON!) { query(spec: $spec) }"
FUNNEL_SPEC = {
    "kind": "funnel",
    "window_days": 30,  # the trial lasts 14 days: purchases come after it, on any day the suite runs
    "steps": [
        {"page": "/"},
        {"event": "user_signed_up"},
        {"event": "purchase_completed", "where": [{"field": "event.plan", "op": "!=", "value": "starter"}]},
    ],
}


def test_any_question_through_graphql_equals_the_reference(dash):
    events, persons = insights_reference.read_events(dash.settings.database_url)
    funnel = {**FUNNEL_SPEC, **custom()}
    answer = data(gql(dash.url, QUERY, {"spec": funnel}))["query"]
    expected = insights_reference.funnel(funnel, events, persons)["steps"]
    assert [{k: s[k] for k in expected[0]} for s in answer["steps"]] == expected
    assert answer["steps"][2]["persons"] > 0
    trends = {**custom(), "kind": "trends", "series": [{"event": "purchase_completed", "math": "persons"}]}
    points = data(gql(dash.url, QUERY, {"spec": trends}))["query"]["series"][0]["points"]
    by_day = insights_reference.trends(trends, events, persons)[(0, None)]
    assert [p["value"] for p in points] == [by_day.get(FIRST + timedelta(days=k), 0) for k in range(DAYS)]


def every_kind() -> list[dict]:
    window = custom()
    return [
        {**window, **FUNNEL_SPEC, "breakdown": "user.plan", "interval": "week"},
        {
            **window,
            "kind": "trends",
            "interval": "week",
            "series": [{"event": "purchase_completed", "math": "sum", "property": "revenue"}, {"event": "page"}],
            "formula": "A / B",
            "breakdown": "event.plan",
            "compare": True,
        },
        {**window, "kind": "retention", "start": {"event": "user_signed_up"}, "return": {"event": "any"}},
        {**window, "kind": "paths", "start": {"page": "/pricing"}, "steps": 3},
        {**window, "kind": "stickiness", "event": "page", "interval": "week"},
        {**window, "kind": "lifecycle", "event": "any", "interval": "week"},
    ]


def test_every_kind_through_graphql_is_the_engines_answer(dash):
    engine = Engine(store_dir(dash.settings))
    engine.refresh()
    for spec in every_kind():
        assert data(gql(dash.url, QUERY, {"spec": spec}))["query"] == engine.ask(spec), spec["kind"]


def test_a_wrong_spec_gets_an_error_naming_the_field(dash):
    spec = {**FUNNEL_SPEC, **custom(), "steps": [{"event": "user_signed_upp"}, {"event": "purchase_completed"}]}
    response = gql(dash.url, QUERY, {"spec": spec})
    assert response.status_code == 200
    assert response.json()["errors"][0]["message"].startswith("steps[0].event: unknown event 'user_signed_upp'")
    response = gql(dash.url, QUERY, {"spec": {"kind": "funnel"}})
    assert response.json()["errors"][0]["message"] == "from is required"


# -- caching ------------------------------------------------------------------------------------------------
def test_preset_answers_are_cached_for_60s_and_custom_ranges_never(dash):
    client = redis.Redis.from_url(dash.settings.redis_url)
    pattern = f"{dash.settings.redis_key_prefix}:dashboard:v1:*"
    for key in client.scan_iter(match=pattern):
        client.delete(key)
    query = '{ dailyMetrics(metrics: ["dau"], dateRange: {preset: LAST_30_DAYS}) { date value } }'
    first = gql(dash.url, query)
    assert first.headers["x-cache"] == "MISS"
    assert first.json()["extensions"]["cache"] == {"status": "miss", "store": "redis", "ttl": 60}
    keys = list(client.scan_iter(match=pattern))
    assert len(keys) == 1 and 55 <= client.ttl(keys[0]) <= 60
    # the same question written differently (whitespace, comments) is the same normalized query
    second = gql(dash.url, '# cached\n{dailyMetrics(metrics:["dau"],dateRange:{preset:LAST_30_DAYS}){date\nvalue}}')
    assert second.headers["x-cache"] == "HIT" and second.json()["data"] == first.json()["data"]
    assert second.json()["extensions"]["cache"]["status"] == "hit"
    # a hit really is the stored answer: change what is stored, and the next hit serves that
    cache_control, stored_at, _ = client.get(keys[0]).split(b"\n", 2)
    client.set(keys[0], b"\n".join([cache_control, stored_at, b'{"dailyMetrics":[]}']), keepttl=True)
    assert gql(dash.url, query).json()["data"] == {"dailyMetrics": []}
    client.pexpire(keys[0], 1)
    time.sleep(0.05)
    assert gql(dash.url, query).headers["x-cache"] == "MISS"  # expired: computed again
    custom_range = f'{{ dailyMetrics(metrics: ["dau"], dateRange: {{from: "{FIRST}", to: "{TODAY}"}}) {{ value }} }}'
    for _ in range(2):
        assert gql(dash.url, custom_range).headers["x-cache"] == "BYPASS"
    assert len(list(client.scan_iter(match=pattern))) == 1
    # today's live numbers: kept one second in the process, never in Redis
    live = [gql(dash.url, "{ hotMetrics { dau } }") for _ in range(2)]
    assert [r.json()["extensions"]["cache"] for r in live] == [
        {"status": "miss", "store": "process", "ttl": 1},
        {"status": "hit", "store": "process", "age": 0},
    ]
    time.sleep(1.1)
    assert gql(dash.url, "{ hotMetrics { dau } }").headers["x-cache"] == "MISS"
    errors = gql(dash.url, '{ dailyMetrics(metrics: ["nope"], dateRange: {preset: LAST_7_DAYS}) { value } }')
    assert errors.headers["x-cache"] == "BYPASS" and errors.headers["cache-control"] == "no-store"


def test_closed_periods_may_be_kept_by_a_cdn_for_a_day(dash):
    old = '{ dailyMetrics(metrics: ["dau"], dateRange: {from: "%s", to: "%s"}) { value } }'
    closed = gql(dash.url, old % (FIRST, TODAY - timedelta(days=4)))
    assert closed.headers["cache-control"] == "public, max-age=86400"
    recent = gql(dash.url, old % (FIRST, TODAY - timedelta(days=3)))  # inside the late-event lookback (3 days)
    assert recent.headers["cache-control"] == "private, no-cache"
    mixed = gql(dash.url, "{ a: " + old[2:-2] % (FIRST, FIRST) + " hotMetrics { dau } }")
    assert mixed.headers["cache-control"] == "private, no-cache"
    via_get = httpx.get(
        f"{dash.url}/graphql",
        params={"query": old % (FIRST, FIRST)},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert via_get.headers["cache-control"] == "public, max-age=86400" and via_get.json()["data"]["dailyMetrics"]


def test_redis_down_answers_still_come_from_postgres(dash, tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    shared = redis.Redis.from_url(dash.settings.redis_url)
    own = redis.Redis.from_url(server.url)
    for key in shared.scan_iter(match=f"{dash.settings.redis_key_prefix}:metrics:*"):
        own.set(key, shared.get(key))
    env = {**dash.env, "REDIS_URL": server.url}
    overview = (
        '{ dailyMetrics(metrics: ["dau"], dateRange: {preset: LAST_7_DAYS}) { value } funnel { steps { persons } } }'
    )
    hot = "{ hotMetrics { dau signups revenue source } }"
    try:
        with dashboard_process(env, tmp_path / "dashboard.log") as url:
            from_redis = data(gql(url, hot))["hotMetrics"]
            assert from_redis["source"] == "redis"
            assert gql(url, overview).headers["x-cache"] == "MISS"
            assert gql(url, overview).headers["x-cache"] == "HIT"
            server.stop()
            time.sleep(1.1)  # past the one second a process keeps live answers
            answers = [gql(url, hot), gql(url, overview), gql(url, overview)]
            assert all(r.status_code == 200 for r in answers)
            from_postgres = data(answers[0])["hotMetrics"]
            assert from_postgres["source"] == "postgres"
            assert {k: from_postgres[k] for k in ("dau", "signups", "revenue")} == {
                k: from_redis[k] for k in ("dau", "signups", "revenue")
            }
            assert [r.headers["x-cache"] for r in answers[1:]] == ["BYPASS", "BYPASS"]
            assert data(answers[1]) == data(answers[2]) and data(answers[1])["funnel"]["steps"]
            health = httpx.get(f"{url}/health", timeout=10)
            assert health.status_code == 200 and health.json() == {
                "status": "degraded",
                "postgres": True,
                "redis": False,
            }
    finally:
        server.stop()


# -- exports ------------------------------------------------------------------------------------------------
def test_an_export_job_writes_the_exact_answer_as_csv(dash):
    filters = [{"field": "user.plan", "op": "=", "value": "pro"}]
    exact = ask(dash, "purchase_completed", filters, group="event.plan")
    started = data(
        gql(
            dash.url,
            """mutation($f: [FilterInput!], $r: DateRangeInput) { exportInsight(
        event: "purchase_completed", filters: $f, groupBy: "event.plan", dateRange: $r) { id status } }""",
            {"f": filters, "r": custom()},
        )
    )["exportInsight"]
    assert started["status"] == "QUEUED"
    deadline = time.monotonic() + 180
    while True:
        status = data(
            gql(
                dash.url,
                "query($id: ID!) { exportStatus(id: $id) { status runId location rows message } }",
                {"id": started["id"]},
            )
        )["exportStatus"]
        if status["status"] in ("SUCCESS", "FAILURE") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status["status"] == "SUCCESS", status["message"]
    location = status["location"]
    assert location == f"{dash.settings.events_bucket_url}/exports/insight-{started['id']}.csv"
    with open(location, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [(r["group"], int(r["events"]), int(r["persons"])) for r in written] == [
        (r["group"], r["events"], r["persons"]) for r in exact["rows"]
    ]
    assert status["rows"] == len(written) > 0
    # the run is a Dagster run like any other

    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(status["runId"])
    assert run.job_name == "export_insight" and run.status == DagsterRunStatus.SUCCESS
    missing = gql(dash.url, 'query { exportStatus(id: "0123456789abcdef") { status } }').json()
    assert "no export" in missing["errors"][0]["message"]


# -- the web dashboard in a real browser ---------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_the_web_dashboard_renders_every_chart_and_runs_a_question_in_chromium(dash):
    assert Path(CHROMIUM).exists(), "Chromium is missing: scripts/bootstrap.sh installs Debian's chromium package"
    api = data(gql(dash.url, "{ hotMetrics { dau } }"))["hotMetrics"]
    ARTIFACTS.mkdir(exist_ok=True)
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.goto(f"{dash.url}/#token={TOKEN}")
            page.wait_for_function("!location.hash")  # the token leaves the address bar (kept in localStorage)
            for chart in ("hot", "chart-active", "chart-funnel", "chart-retention", "chart-revenue"):
                page.wait_for_selector(f"#{chart}[data-rendered='true']", timeout=30_000)
            points = {
                c: int(page.get_attribute(f"#{c}", "data-points"))
                for c in ("chart-active", "chart-funnel", "chart-retention", "chart-revenue")
            }
            assert points["chart-active"] == 3 * DAYS and points["chart-funnel"] == 4, points
            assert points["chart-retention"] > 5 and points["chart-revenue"] >= 1, points
            assert page.inner_text("#hot-dau") == f"{api['dau']:,}"
            assert page.inner_text("#hot-source") == "redis"
            for chart in ("chart-active", "chart-funnel", "chart-retention", "chart-revenue"):
                assert page.locator(f"#{chart} canvas").count() >= 1  # ECharts drew it
            # the query builder: purchases grouped by plan
            page.select_option("#q-event", "purchase_completed")
            page.select_option("#q-group", "event.plan")
            page.click("#q-run")
            page.wait_for_selector("#chart-insight[data-rendered='true']", timeout=30_000)
            table = page.locator("#insight-table tr").all_inner_texts()[1:]
            shown = {line.split("\t")[0]: int(line.split("\t")[1].replace(",", "")) for line in table}
            expected = ask(dash, "purchase_completed", group="event.plan", first=TODAY - timedelta(days=29))
            assert shown == {r["group"]: r["events"] for r in expected["rows"]} and shown
            assert page.is_hidden("#banner"), page.inner_text("#banner")
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            # the insights builder: a 3-step funnel, drawn and tabulated as the API answers it
            page.select_option("#i-kind", "funnel")
            page.fill("#i-from", FIRST.isoformat())
            page.fill("#i-to", TODAY.isoformat())
            page.fill("#i-window", "30")
            steps = page.locator("#i-steps .step")
            assert steps.count() == 3
            steps.nth(0).locator(".step-event").select_option("page path…")
            steps.nth(0).locator(".step-page").fill("/")
            steps.nth(1).locator(".step-event").select_option("user_signed_up")
            steps.nth(2).locator(".step-event").select_option("purchase_completed")
            steps.nth(2).locator(".step-where").click()
            steps.nth(2).locator(".filter .field").select_option("event.plan")
            steps.nth(2).locator(".filter .op").select_option("!=")
            steps.nth(2).locator(".filter .value").fill("starter")
            page.click("#i-run")
            page.wait_for_selector("#chart-query[data-rendered='true']", timeout=30_000)
            assert page.get_attribute("#chart-query", "data-points") == "3"
            assert page.locator("#chart-query canvas").count() >= 1
            lines = page.locator("#query-table tr").all_inner_texts()[1:]
            shown = [int(line.split("\t")[2].replace(",", "")) for line in lines]
            answer = data(gql(dash.url, QUERY, {"spec": {**FUNNEL_SPEC, **custom()}}))["query"]
            assert shown == [s["persons"] for s in answer["steps"]] and shown[0] > shown[2] > 0
            assert page.is_hidden("#banner"), page.inner_text("#banner")
            page.locator("#insights").screenshot(path=str(ARTIFACTS / "insights-funnel.png"))
            # every other kind draws its chart and table
            for kind in ("trends", "retention", "paths", "stickiness", "lifecycle"):
                page.select_option("#i-kind", kind)
                first = page.locator("#i-steps .step").first
                first.locator(".step-event").select_option("page path…")
                first.locator(".step-page").fill("/pricing")
                if kind == "retention":
                    page.locator("#i-steps .step").nth(1).locator(".step-event").select_option("any")
                page.evaluate("document.getElementById('chart-query').dataset.rendered = 'false'")
                page.click("#i-run")
                page.wait_for_selector("#chart-query[data-rendered='true']", timeout=30_000)
                assert page.locator("#query-table tr").count() > 1, kind
                assert page.is_hidden("#banner"), (kind, page.inner_text("#banner"))
                page.locator("#insights").screenshot(path=str(ARTIFACTS / f"insights-{kind}.png"))
            # GraphiQL, served by the service too, loads the schema with the same token
            with page.expect_response(lambda r: r.url.endswith("/graphql") and r.request.method == "POST") as first:
                page.goto(f"{dash.url}/graphql")
            assert first.value.status == 200 and "__schema" in first.value.text()
            page.wait_for_selector(".graphiql-container", timeout=30_000)
        finally:
            browser.close()
    assert not [line for line in console if line.startswith("error")], console
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 50_000
