"""Every mart, built by dbt in two incremental steps, checked against an independent pandas computation.

The dataset is generated once; the batch files received before a cut-off time are loaded and built
(a full build), then the rest arrive (late mobile events for earlier days, visitors who come back and
sign up, so their earlier anonymous events must be re-stitched) and an incremental build runs. The
marts must then equal testing/reference_marts.py computed over all events, and equal a full refresh.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
import psycopg2
import pytest

from ingestion.events import load_events
from ingestion.generator import generate
from testing import reference_marts as ref
from testing.db import own_warehouse, rows
from testing.dbt import dbt, dbt_build
from testing.reference import compute

END = date(2026, 3, 15)
DAYS = 75
MART_TABLES = [
    "analytics.fct_events",
    "analytics.fct_sessions",
    "analytics.dim_users",
    "analytics.daily_metrics",
    "analytics.fct_funnel_steps",
    "analytics.fct_funnel_breakdown",
    "analytics.fct_cohort_retention",
    "analytics.fct_mrr",
    "analytics.revenue_monthly",
]


def snapshot(settings) -> dict[str, list[tuple]]:
    """Every mart's rows without audit columns, in a stable order."""
    result = {}
    for table in MART_TABLES:
        schema, name = table.split(".")
        columns = [
            c
            for (c,) in rows(
                settings,
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
                "and column_name not in ('_built_at', '_traits_changed_at', 'load_id', 'session_id') "
                "order by ordinal_position",
                (schema, name),
            )
        ]
        listed = ", ".join(f'"{c}"' for c in columns)
        result[table] = rows(settings, f"select {listed} from {table} order by {listed}")
    return result


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """Its own database, bucket and dlt state, so the other modules' data cannot mix in."""
    with own_warehouse("marts", tmp_path_factory.mktemp("marts")) as (marts_settings, root):
        yield marts_settings, root


@pytest.fixture(scope="module")
def built(warehouse):
    settings, root = warehouse
    generated = generate(root / "generated", days=DAYS, users=1500, seed=5, end_date=END)
    bucket = root / "bucket"
    cutoff = f"{(END - timedelta(days=5)).strftime('%Y/%m/%d')}/12"
    files = sorted(generated.files)
    first = [f for f in files if str(f.relative_to(root / "generated")) < f"events/{cutoff}"]
    assert 0 < len(first) < len(files)
    for part in (first, [f for f in files if f not in first]):
        for path in part:
            target = bucket / path.relative_to(root / "generated")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
        load_events(progress=False)
        dbt_build(root)
    frame = ref.event_frame(compute(bucket).events)
    return settings, root, frame


def test_fct_events_is_partitioned_by_day_and_indexed(built):
    settings, _, frame = built
    assert rows(settings, "select count(*) from analytics.fct_events")[0][0] == len(frame)
    strategy = rows(
        settings,
        "select partstrat from pg_partitioned_table where partrelid = 'analytics.fct_events'::regclass",
    )
    assert strategy == [("r",)]
    partitions = rows(
        settings,
        "select child.relname from pg_inherits join pg_class child on child.oid = inhrelid "
        "where inhparent = 'analytics.fct_events'::regclass order by 1",
    )
    assert [p for (p,) in partitions] == [f"fct_events_p{d:%Y%m%d}" for d in sorted(set(frame.event_date))]
    definitions = " ".join(
        d for (d,) in rows(settings, "select indexdef from pg_indexes where tablename = 'fct_events'")
    )
    assert "(person_id, event_at)" in definitions and "(event_name, event_at, person_id, event_date)" in definitions


def test_incremental_run_restitched_old_events(built):
    settings, _, _ = built
    # Rows rewritten by the second (incremental) build for dates before its lookback window can only
    # be events whose anonymous id was stitched to a user who signed up later.
    restitched = rows(
        settings,
        """
        select count(*) from analytics.fct_events
        where _built_at = (select max(_built_at) from analytics.fct_events)
          and event_at < (select max(event_at) from analytics.fct_events) - interval '8 days'
          and user_id is null and person_id <> anonymous_id""",
    )[0][0]
    assert restitched > 0


def test_people_and_dim_users(built):
    settings, _, frame = built
    expected = ref.dim_users(frame)
    actual = rows(
        settings,
        "select person_id, first_seen_at, last_seen_at, first_activity_at, signed_up_at, email, plan, country, "
        "mrr, activity_events from analytics.dim_users",
    )
    assert len(actual) == len(expected) == frame.person_id.nunique()

    def plain(value):
        return None if value is None or (not isinstance(value, str | Decimal) and pd.isna(value)) else value

    for person, *values in actual:
        want = expected.loc[person]
        fields = ["first_seen_at", "last_seen_at", "first_activity_at", "signed_up_at", "email", "plan", "country"]
        assert values == [plain(want[f]) for f in fields] + [plain(want.mrr), want.activity_events], person
    assert expected.signed_up_at.notna().sum() > 20


def test_sessions(built):
    settings, _, frame = built
    expected = ref.sessions(frame)
    actual = rows(
        settings,
        "select person_id, session_start, session_end, session_date, event_count, page_views, landing_page, "
        "referrer, utm_source, utm_medium, utm_campaign from analytics.fct_sessions",
    )
    plain = expected.astype(object).where(expected.notna(), None)
    want = sorted(tuple(r) for r in plain.itertuples(index=False))
    assert sorted(actual) == want
    assert (expected.event_count > 1).any() and expected.utm_source.notna().any()


def test_daily_metrics(built):
    settings, _, frame = built
    expected = ref.daily_metrics(frame, ref.sessions(frame), ref.dim_users(frame))
    actual = {
        (d, name): value
        for d, name, value in rows(settings, "select date, metric_name, value from analytics.daily_metrics")
    }
    assert actual == expected
    for metric in ("dau", "wau", "mau", "signups", "revenue", "mrr", "sessions", "new_people"):
        assert sum(v for (d, name), v in expected.items() if name == metric) > 0, metric


def test_default_funnel(built):
    settings, _, frame = built
    expected = ref.funnel_steps(frame)
    actual = rows(
        settings,
        "select cohort_date, step_index, persons, median_seconds_from_previous, conversion_from_previous, "
        "drop_off from analytics.fct_funnel_steps where funnel_name = 'default' order by cohort_date, step_index",
    )
    dates = sorted(set(frame.event_date))
    assert [(d, i) for d, i, *_ in actual] == [(d, i) for d in dates for i in range(1, 5)]
    previous = None
    for cohort_date, step, persons, median_seconds, conversion, drop_off in actual:
        want_persons, want_median = expected.get((cohort_date, step), (0, None))
        assert persons == want_persons, (cohort_date, step)
        if want_median is None:
            assert median_seconds is None
        else:
            assert abs(float(median_seconds) - want_median) <= 0.001
        if step > 1:
            assert drop_off == previous - persons
            assert conversion == (ref.q6(Decimal(persons) / previous) if previous else None)
        previous = persons
    assert sum(p for (_, s), (p, _) in expected.items() if s == 4) > 0  # people got all the way through


def test_funnel_breakdown_adds_up(built):
    settings, _, _ = built
    mismatches = rows(
        settings,
        """
        select b.breakdown_by, b.cohort_date, b.step_index, sum(b.persons), s.persons
        from analytics.fct_funnel_breakdown b
        join analytics.fct_funnel_steps s using (funnel_name, cohort_date, step_index)
        group by b.breakdown_by, b.cohort_date, b.step_index, s.persons
        having sum(b.persons) <> s.persons""",
    )
    assert mismatches == []
    dimensions = {d for (d,) in rows(settings, "select distinct breakdown_by from analytics.fct_funnel_breakdown")}
    assert dimensions == {"person.plan", "person.country", "event.utm_source"}
    sources = rows(
        settings,
        "select breakdown_value, sum(persons) from analytics.fct_funnel_breakdown "
        "where breakdown_by = 'event.utm_source' and step_index = 1 group by 1",
    )
    assert {"google", "newsletter", "(none)"} <= {value for value, _ in sources}


def test_cohort_retention(built):
    settings, _, frame = built
    expected = ref.cohort_retention(frame, ref.dim_users(frame))
    actual = rows(
        settings,
        "select cohort_grain, cohort_start, period_number, cohort_size, retained_persons, "
        "unbounded_retained_persons, retention_rate from analytics.fct_cohort_retention",
    )
    assert {(g, s, n): (size, kept, unbounded) for g, s, n, size, kept, unbounded, _ in actual} == expected
    for *_, size, kept, _, rate in actual:
        assert rate == ref.q6(Decimal(kept) / size)
    weeks = {s for g, s, *_ in actual if g == "week"}
    assert all(s.weekday() == 0 for s in weeks) and len(weeks) >= 3


def test_mrr_and_revenue_monthly(built):
    settings, _, frame = built
    expected = ref.fct_mrr(frame)
    actual = {
        (p, m): (mrr, previous, category)
        for p, m, mrr, previous, category in rows(
            settings, "select person_id, month, mrr, previous_mrr, change_category from analytics.fct_mrr"
        )
    }
    assert actual == expected
    assert {c for *_, c in expected.values()} >= {"new", "expansion", "contraction", "churn"}
    monthly = ref.revenue_monthly(frame, expected)
    columns = list(next(iter(monthly.values())))
    actual_monthly = {
        row[0]: dict(zip(columns, row[1:], strict=True))
        for row in rows(settings, f"select month, {', '.join(columns)} from analytics.revenue_monthly")
    }
    assert actual_monthly == monthly


def test_docs_and_column_comments_reach_bi_tools(built):
    settings, root, _ = built
    dbt(root, "docs", "generate")
    catalog = json.loads((root / "dbt_target" / "catalog.json").read_text())
    assert {"model.analyticspro.fct_events", "model.analyticspro.revenue_monthly"} <= set(catalog["nodes"])
    table_comment = rows(settings, "select obj_description('analytics.daily_metrics'::regclass, 'pg_class')")[0][0]
    assert "stickiness: dau / mau" in table_comment
    column_comment = rows(
        settings,
        "select col_description('analytics.fct_events'::regclass, attnum) from pg_attribute "
        "where attrelid = 'analytics.fct_events'::regclass and attname = 'event_date'",
    )[0][0]
    assert column_comment == "UTC date of event_at; the partition key."

    # the partitions carry the same comments. An hourly build looks only at partitions without their table comment,
    # unless a description changed: here every partition holds an older description of event_date, and the oldest
    # partition has lost its table comment; an incremental build with nothing new puts back both
    partitions = [
        name
        for (name,) in rows(
            settings,
            "select inhrelid::regclass::text from pg_inherits "
            "where inhparent = 'analytics.fct_events'::regclass order by 1",
        )
    ]
    assert len(partitions) > 2
    with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
        for name in partitions:
            cursor.execute(f"comment on column {name}.event_date is 'an older description'")
        cursor.execute(f"comment on table {partitions[0]} is null")

    def partition_comments() -> set[tuple]:
        return set(
            rows(
                settings,
                "select col_description(inhrelid, (select attnum from pg_attribute where attrelid = inhrelid "
                "and attname = 'event_date')), obj_description(inhrelid, 'pg_class') like 'The % partition of "
                "analytics.fct_events: query the parent table.' from pg_inherits "
                "where inhparent = 'analytics.fct_events'::regclass",
            )
        )

    assert partition_comments() == {("an older description", True), ("an older description", None)}
    dbt(root, "run", "--select", "fct_events")
    assert partition_comments() == {("UTC date of event_at; the partition key.", True)}


def test_incremental_equals_full_refresh(built):
    settings, root, _ = built
    incremental = snapshot(settings)
    dbt_build(root, "--full-refresh")
    assert snapshot(settings) == incremental
    # after a full refresh the partitions have their canonical names again
    names = rows(
        settings,
        "select child.relname from pg_inherits join pg_class child on child.oid = inhrelid "
        "where inhparent = 'analytics.fct_events'::regclass and child.relname not like 'fct_events_p%%'",
    )
    assert names == []


def test_changing_a_funnel_rebuilds_it(built):
    settings, root, frame = built
    one_day = (
        "{funnels: [{name: default, conversion_window_days: 1, steps: [{name: Landing page, page: /}, "
        "{name: Signed up, event: user_signed_up}, {name: Trial started, event: trial_started}, "
        "{name: Purchase, event: purchase_completed}], breakdowns: [person.plan]}]}"
    )
    dbt_build(root, "--vars", one_day)
    expected = ref.funnel_steps(frame, window=timedelta(days=1))
    actual = rows(settings, "select cohort_date, step_index, persons from analytics.fct_funnel_steps where persons > 0")
    assert {(d, s): p for d, s, p in actual} == {k: v[0] for k, v in expected.items()}
    assert expected != ref.funnel_steps(frame)  # the window matters on this data
    dbt_build(root)  # back to the configured funnel
    assert sum(
        p for (p,) in rows(settings, "select persons from analytics.fct_funnel_steps where step_index = 4")
    ) == sum(v[0] for (_, s), v in ref.funnel_steps(frame).items() if s == 4)


def test_partition_window_vars_rebuild_those_dates(built):
    settings, root, frame = built
    day = sorted(set(frame.event_date))[3]
    rows_of_day = rows(settings, "select count(*) from analytics.fct_events where event_date = %s", (day,))[0][0]
    connection = psycopg2.connect(settings.database_url)
    with connection, connection.cursor() as cursor:  # damage one day's rows
        cursor.execute("update analytics.fct_events set person_id = 'nobody' where event_date = %s", (day,))
    connection.close()
    dbt_build(
        root, "--select", "fct_events", "--vars", f"{{start_date: '{day}', end_date: '{day + timedelta(days=1)}'}}"
    )
    assert rows(settings, "select count(*) from analytics.fct_events where person_id = 'nobody'")[0][0] == 0
    assert (
        rows(settings, "select count(*) from analytics.fct_events where event_date = %s", (day,))[0][0] == rows_of_day
    )
