"""Incremental builds give exactly the answer of a full build, through everything that happens to a warehouse.

One warehouse goes through a sequence of incremental `dbt run`s: the first 80% of a generated dataset (a full
build), then the rest hour by hour in order; late events for days built weeks ago; a load that commits with an
older load id than one already built; an identify that merges an anonymous visitor's history from an earlier month
into a user who signed up later; a GDPR erasure; and a reload of objects already loaded (the same lines under new
names). Every mart is then compared, row by row, with a `--full-refresh` build of the same raw events.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from common.locks import DBT_LOCK, advisory_lock
from ingestion.events import load_events
from ingestion.generator import generate
from orchestration.defs.transform.project import DBT_PROJECT_DIR, dbt_executable
from testing.db import own_warehouse, rows
from testing.dbt import dbt
from testing.engines import MARTS, SKIPPED_COLUMNS, differences, read_postgres_mart
from testing.segment_events import copy_hours, event, put_events
from warehouse.erasure import forget

END = date(2026, 3, 12)
DAYS = 50  # 2026-01-22 .. 2026-03-12: three months


def _run(root: Path, *args: str) -> None:
    dbt(root, "run", *args)


def _assert_written_days_cover_changes(settings) -> set[date]:
    """ops.written_days (the days the hour's queries over fct_events read: macros/partitioned_tables.sql) names, for
    every run since the record began, every day holding a row that run wrote: otherwise a model reading "rows written
    since" through it would miss them. Returns the days the newest run recorded."""
    recorded = rows(settings, "select day, written_at from ops.written_days where model = 'analytics.fct_events'")
    (since,) = [written_at for day, written_at in recorded if day is None]
    days_by_run: dict[datetime, set[date]] = {}
    for day, written_at in recorded:
        if day is not None:
            days_by_run.setdefault(written_at, set()).add(day)
    written = rows(
        settings,
        "select _built_at, event_date from analytics.fct_events where _built_at > %s group by 1, 2",
        (since,),
    )
    missed = [(built_at, day) for built_at, day in written if day not in days_by_run.get(built_at, set())]
    assert not missed, f"fct_events days written but not in ops.written_days: {missed}"
    return days_by_run[max(days_by_run)] if days_by_run else set()


def _dbt_test_statuses(root: Path, selected: list[str], variables: dict) -> dict[str, str]:
    """`dbt test --select <selected> --vars <variables>` (failures expected): each node's status by name."""
    command = [
        dbt_executable(), "test", "--select", *selected, "--vars", json.dumps(variables),
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(root / "dbt_target"), "--log-path", str(root / "dbt_logs"),
    ]  # fmt: skip
    subprocess.run(command, capture_output=True, text=True, check=False)
    run_results = json.loads((root / "dbt_target" / "run_results.json").read_text())
    return {result["unique_id"].split(".")[2]: result["status"] for result in run_results["results"]}


def _assert_tests_follow_the_hour(settings, root: Path) -> None:
    """With test_scope `changed` (Dagster's runs for new data), a data test reads the rows its model's latest build
    wrote, and a uniqueness test compares them with the whole table: a row of the latest build that repeats an old key
    fails it, a null in an older row is not looked at (the daily run's tests, every row, find it), and the staging
    view's tests read the loads fct_events' latest build read. fct_events compares within the days its build wrote:
    a written message id repeated in another written day fails it."""
    latest = "(select built_at from ops.model_builds where model = %s)"
    (old_day,) = rows(
        settings,
        f"select min(event_date) from intermediate.int_event_days where _built_at < {latest}",
        ("intermediate.int_event_days",),
    )[0]
    (old_message,) = rows(
        settings,
        f"select min(message_id) from intermediate.int_mrr_changes where _built_at < {latest}",
        ("intermediate.int_mrr_changes",),
    )[0]
    bad_rows = (
        f"insert into intermediate.int_event_days select * from intermediate.int_event_days where event_date = %s;"
        f"update intermediate.int_event_days set _built_at = {latest} "
        "where ctid = (select max(ctid) from intermediate.int_event_days where event_date = %s);"
        "update intermediate.int_mrr_changes set message_id = null where message_id = %s"
    )
    events_built = rows(settings, "select built_at from ops.model_builds where model = 'analytics.fct_events'")[0][0]
    written = [
        day
        for (day,) in rows(
            settings,
            "select day from ops.written_days where model = 'analytics.fct_events' and written_at = %s order by day",
            (events_built,),
        )
    ]
    (written_message, written_day) = rows(
        settings,
        "select message_id, event_date from analytics.fct_events where _built_at = %s order by message_id limit 1",
        (events_built,),
    )[0]
    other_day = next(day for day in written if day != written_day)
    repeat = (
        "insert into analytics.fct_events select message_id, person_id, user_id, anonymous_id, event_type, event_name, "
        "event_at, %s, is_activity, page_path, referrer, utm_source, utm_medium, utm_campaign, revenue, properties, "
        "traits, context, received_at, load_id, _built_at from analytics.fct_events where message_id = %s"
    )
    with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
        cursor.execute(bad_rows, (old_day, "intermediate.int_event_days", old_day, old_message))
        cursor.execute(repeat, (other_day, written_message))
    selected = [
        "unique_int_event_days_event_date", "not_null_int_mrr_changes_message_id", "stg_segment__events",
        "unique_fct_events_message_id",
    ]  # fmt: skip
    try:
        results = {}
        for scope in ("changed", "all"):
            results[scope] = _dbt_test_statuses(root, selected, {"test_scope": scope})
            if scope == "changed":
                compiled = root / "dbt_target/compiled/analyticspro/models/staging/segment/_segment__models.yml"
                scoped_sql = "".join(path.read_text() for path in compiled.rglob("*.sql"))
                compiled = root / "dbt_target/compiled/analyticspro/models/marts/core/_core__models.yml"
                events_sql = (compiled / "unique_fct_events_message_id.sql").read_text()
    finally:
        with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
            cursor.execute(
                "delete from intermediate.int_event_days where ctid = (select max(ctid) from "
                "intermediate.int_event_days where event_date = %s);"
                "update intermediate.int_mrr_changes set message_id = %s where message_id is null;"
                "delete from analytics.fct_events where message_id = %s and event_date = %s",
                (old_day, old_message, written_message, other_day),
            )
    assert results["changed"]["unique_int_event_days_event_date"] == "fail"
    assert results["changed"]["not_null_int_mrr_changes_message_id"] == "pass"
    assert results["all"]["not_null_int_mrr_changes_message_id"] == "fail"
    staging = [name for name in results["changed"] if name.endswith("stg_segment__events_message_id")]
    assert staging and all(results["changed"][name] == "pass" for name in staging), results
    loads = rows(
        settings,
        "select load_id from ops.model_loads where model = 'fct_events' and read_at >= %s order by load_id",
        (events_built,),
    )
    assert loads and "load_id = any(cast(array[" + ", ".join(f"'{load}'" for (load,) in loads) + "]" in scoped_sql
    assert "_built_at = " not in scoped_sql
    assert results["changed"]["unique_fct_events_message_id"] == "fail"
    assert "event_date in (" + ", ".join(f"date '{day}'" for day in written) + ")" in events_sql
    # above var('max_literal_loads') loads, the staging scope reads them from ops.model_loads: the same tests pass
    statuses = {
        name: status
        for name, status in _dbt_test_statuses(
            root, ["stg_segment__events"], {"test_scope": "changed", "max_literal_loads": 0}
        ).items()
        if not name.startswith("analyticspro-on-run-start")
    }
    assert statuses and set(statuses.values()) == {"pass"}, statuses
    compiled = root / "dbt_target/compiled/analyticspro/models/staging/segment/_segment__models.yml"
    scoped_sql = "".join(path.read_text() for path in compiled.rglob("*.sql"))
    assert "load_id = any(array(select load_id from ops.model_loads where model = 'fct_events'" in scoped_sql


def _assert_wau_mau_match_events(settings) -> None:
    """daily_metrics' WAU and MAU on every date, against a plain-Python count from fct_events' activity: between
    full refreshes they are kept by differences (int_active_coverage), which a later erasure's recount would hide."""
    active: dict[str, set[date]] = {}
    activity = "select distinct person_id, event_date from analytics.fct_events where is_activity"
    for person, day in rows(settings, activity):
        active.setdefault(person, set()).add(day)
    stored = {
        (day, name): int(value)
        for day, name, value in rows(
            settings, "select date, metric_name, value from analytics.daily_metrics where metric_name in ('wau', 'mau')"
        )
    }
    expected = {}
    for day in {day for day, _ in stored}:
        for name, width in (("wau", 7), ("mau", 30)):
            window = {day - timedelta(days=back) for back in range(width)}
            expected[(day, name)] = sum(1 for days in active.values() if days & window)
    wrong = sorted((key, stored[key], expected[key]) for key in stored if stored[key] != expected[key])
    assert not wrong, f"(date, metric), stored, expected: {wrong[:10]}"
    assert len(stored) > 80


def _assert_mrr_matches_events(settings) -> None:
    """daily_metrics' MRR on every date, against a plain-Python sum from fct_events: each person's latest MRR-setting
    event (an identify's traits.mrr, subscription_changed's properties.mrr, 0 on subscription_canceled) at the end of
    the date. An hour keeps the stored MRR of the dates before its first MRR change, which a later erasure's recount
    would hide."""
    changes: list[tuple[datetime, str, str, float]] = []
    for person, at, message_id, event_type, event_name, properties, traits in rows(
        settings,
        "select person_id, event_at, message_id, event_type, event_name, properties, traits from analytics.fct_events "
        "where event_type = 'identify' or event_name in ('subscription_changed', 'subscription_canceled')",
    ):
        if event_type == "identify":
            value = (traits or {}).get("mrr")
        elif event_name == "subscription_canceled":
            value = 0
        else:
            value = (properties or {}).get("mrr")
        if isinstance(value, int | float) and not isinstance(value, bool):
            changes.append((at, message_id, person, float(value)))
    stored = {
        day: float(value)
        for day, value in rows(settings, "select date, value from analytics.daily_metrics where metric_name = 'mrr'")
    }
    current: dict[str, float] = {}
    pending = sorted(changes)
    expected = {}
    for day in sorted(stored):
        while pending and pending[0][0].astimezone(UTC).date() <= day:
            _, _, person, value = pending.pop(0)
            current[person] = value
        expected[day] = round(sum(current.values()), 6)
    wrong = [(day, stored[day], expected[day]) for day in sorted(stored) if abs(stored[day] - expected[day]) > 1e-6]
    assert not wrong, f"date, stored, expected: {wrong[:10]}"
    assert len(stored) > 40 and max(stored.values()) > 0


def _assert_funnel_entries_match_events(settings) -> None:
    """fct_funnel_steps' step-1 persons of the default funnel per cohort date, against a plain-Python count from
    fct_events (a person enters on their first-ever view of /): between full refreshes a cohort that loses an entry is
    found through ops.funnel_cohort_changes, which a later erasure's recount would hide."""
    first: dict[str, datetime] = {}
    for person, at in rows(
        settings, "select person_id, event_at from analytics.fct_events where event_type = 'page' and page_path = '/'"
    ):
        first[person] = min(at, first.get(person, at))
    expected: dict[date, int] = {}
    for at in first.values():
        day = at.astimezone(UTC).date()
        expected[day] = expected.get(day, 0) + 1
    stored = dict(
        rows(
            settings,
            "select cohort_date, persons from analytics.fct_funnel_steps "
            "where funnel_name = 'default' and step_index = 1 and persons > 0",
        )
    )
    assert stored == expected
    assert sum(expected.values()) > 100


def _assert_cohort_sizes_match_users(settings) -> None:
    """fct_cohort_retention's cohort sizes against a plain-Python count of dim_users: a person's cohort is the week
    (from Monday) or month of their signup, else of their first activity, in UTC."""
    expected: dict[tuple, int] = {}
    for signed_up_at, first_activity_at in rows(
        settings, "select signed_up_at, first_activity_at from analytics.dim_users"
    ):
        at = signed_up_at or first_activity_at
        if at is None:
            continue
        day = at.astimezone(UTC).date()
        for key in (("week", day - timedelta(days=day.weekday())), ("month", day.replace(day=1))):
            expected[key] = expected.get(key, 0) + 1
    stored = {
        (grain, start): size
        for grain, start, size in rows(
            settings,
            "select cohort_grain, cohort_start, cohort_size from analytics.fct_cohort_retention "
            "where period_number = 0",
        )
    }
    assert stored == expected
    assert len(expected) > 10


def _marts(settings) -> dict:
    return {model: read_postgres_mart(settings.database_url, model) for model in MARTS}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    with own_warehouse("incremental", tmp_path_factory.mktemp("incremental")) as (settings, root):
        yield settings, root


def test_incremental_runs_equal_a_full_build(warehouse):
    settings, root = warehouse
    generated = generate(root / "generated", days=DAYS, users=300, seed=11, end_date=END)
    bucket = root / "bucket"
    files = sorted(generated.files)
    hours = sorted({f.parent for f in files})
    first_hours, later_hours = hours[: int(len(hours) * 0.8)], hours[int(len(hours) * 0.8) :]

    def copy(folders: list[Path]) -> None:
        copy_hours(files, folders, root / "generated", bucket)

    def load_and_run() -> None:
        load_events(progress=False)
        _run(root)

    # 1. the first 80%: a full build
    copy(first_hours)
    load_and_run()
    # 2. the rest, in order, in two runs (a run per hour would only be slower); the second names no load as a literal
    # (as above var('max_literal_loads') unread loads, a backlog): the models read the loads through a temporary
    # table, and record every committed load as read
    step = max(1, (len(later_hours) + 1) // 2)
    for start in range(0, len(later_hours), step):
        copy(later_hours[start : start + step])
        if start + step < len(later_hours):
            load_and_run()
            continue
        load_events(progress=False)
        log = root / "dbt_logs" / "dbt.log"
        log.rename(log.with_name("dbt.earlier.log"))  # this run's log alone (dbt rolls a log over at 10 MB)
        _run(root, "--vars", json.dumps({"max_literal_loads": 0}))
        assert "more than var('max_literal_loads') unread loads" in log.read_text(errors="replace")
        for model in ("fct_events", "int_identity_map"):
            assert rows(
                settings,
                "select count(*) from raw._dlt_loads where status = 0 and load_id not in "
                "(select load_id from ops.model_loads where model = %s)",
                (model,),
            ) == [(0,)]
    last = datetime.combine(END, datetime.min.time(), UTC) + timedelta(hours=23, minutes=50)

    # 3. late events for days built long ago, for a known user: activity, a purchase, a plan change
    (user_id,) = rows(
        settings,
        "select user_id from analytics.dim_users where user_id is not null and total_revenue > 0 "
        "order by activity_events desc, user_id limit 1",
    )[0]
    late = []
    for days_ago in (9, 23, 41):
        at = last - timedelta(days=days_ago, hours=3)
        late.append(event("page", at, last, userId=user_id, properties={"path": "/pricing"}))
        late.append(
            event("track", at + timedelta(minutes=5), last, userId=user_id, event="purchase_completed",
                   properties={"revenue": 19.5 + days_ago})
        )  # fmt: skip
    late.append(
        event("track", last - timedelta(days=30), last, userId=user_id, event="subscription_changed",
               properties={"mrr": 99})
    )  # fmt: skip
    put_events(bucket, f"{END:%Y/%m/%d}/23/late-mobile.jsonl.gz", late)
    # and a late identify of another user, a day before their last one: it adds a key, and changes no newer value
    (identified, plan, last_identified) = rows(
        settings,
        "select user_id, plan, last_identified_at from analytics.dim_users where user_id <> %s and plan is not null "
        "and last_identified_at is not null order by last_identified_at desc, user_id limit 1",
        (user_id,),
    )[0]
    stale = event(
        "identify", last_identified - timedelta(days=1), last, userId=identified,
        traits={"plan": "stale-plan", "first_touch": "late"},
    )  # fmt: skip
    put_events(bucket, f"{END:%Y/%m/%d}/23/late-identify.jsonl.gz", [stale])
    (before_run,) = rows(settings, "select now()")[0]
    load_and_run()
    assert rows(settings, "select count(*) from analytics.fct_events where message_id = %s", (late[0]["messageId"],))
    # the run recorded the late days it wrote, which the models after fct_events read (and only those partitions)
    late_days = {message["timestamp"][:10] for message in [*late, stale]}
    assert {str(day) for day in _assert_written_days_cover_changes(settings)} == late_days
    compiled = (root / "dbt_target/compiled/analyticspro/models/intermediate/revenue/int_mrr_changes.sql").read_text()
    assert "event_date in (" + ", ".join(f"date '{day}'" for day in sorted(late_days)) + ")" in compiled
    _assert_tests_follow_the_hour(settings, root)
    # and vacuumed those partitions (the dashboards' index-only scans need their visibility maps), no other
    vacuumed = rows(
        settings,
        "select relname from pg_stat_user_tables where schemaname = 'analytics' and relname like 'fct\\_events\\_p%%' "
        "and last_vacuum > %s",
        (before_run,),
    )
    assert {name for (name,) in vacuumed} == {f"fct_events_p{day.replace('-', '')}" for day in late_days}
    assert rows(
        settings,
        "select plan, traits ->> 'first_touch', last_identified_at from analytics.dim_users where person_id = %s",
        (identified,),
    ) == [(plan, "late", last_identified)]

    # 4. a load that commits with an older id than loads already built (a retried load keeps its id)
    older = event("page", last - timedelta(days=2), last, userId=user_id, properties={"path": "/docs"})
    put_events(bucket, f"{END:%Y/%m/%d}/23/retried.jsonl.gz", [older])
    load_events(progress=False)
    (load_id,) = rows(settings, "select _dlt_load_id from raw.events where message_id = %s", (older["messageId"],))[0]
    (first_load,) = rows(settings, "select min(load_id) from raw._dlt_loads")[0]
    older_id = f"{float(first_load) - 1:.6f}"
    with_older = (
        "update raw.events set _dlt_load_id = %(old)s where _dlt_load_id = %(new)s;"
        "update raw.loaded_objects set _dlt_load_id = %(old)s where _dlt_load_id = %(new)s;"
        "update raw._dlt_loads set load_id = %(old)s where load_id = %(new)s"
    )
    with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
        cursor.execute(with_older, {"old": older_id, "new": load_id})
    cohort_rows = (
        "select cohort_grain, cohort_start, period_number, is_active, _built_at from intermediate.int_cohort_persons "
        "where person_id = %s"
    )
    cohort_rows_before = set(rows(settings, cohort_rows, (user_id,)))
    _run(root)
    # int_cohort_persons rewrote the user's periods from the one holding the new event (two days ago) on, and kept
    # the earlier ones as they were (their _built_at included)
    day = (last - timedelta(days=2)).date()
    period_starts = {"week": day - timedelta(days=day.weekday()), "month": day.replace(day=1)}

    def period_start(grain: str, cohort_start: date, number: int) -> date:
        if grain == "week":
            return cohort_start + timedelta(days=7 * number)
        month = cohort_start.month - 1 + number
        return cohort_start.replace(year=cohort_start.year + month // 12, month=month % 12 + 1)

    cohort_rows_after = set(rows(settings, cohort_rows, (user_id,)))
    earlier = {row for row in cohort_rows_before if period_start(*row[:3]) < period_starts[row[0]]}
    assert {grain for grain, *_ in earlier} == {"week", "month"} and earlier <= cohort_rows_after
    rewritten = cohort_rows_after - cohort_rows_before
    assert rewritten and all(period_start(*row[:3]) >= period_starts[row[0]] for row in rewritten)
    assert rows(settings, "select count(*) from analytics.fct_events where message_id = %s", (older["messageId"],)) == [
        (1,)
    ]
    # fct_mrr rewrote the user's months (their event changed them), and revenue_monthly recomputed those months only
    user_months = rows(settings, "select month from analytics.fct_mrr where person_id = %s order by month", (user_id,))
    compiled = (root / "dbt_target/compiled/analyticspro/models/marts/revenue/revenue_monthly.sql").read_text()
    assert user_months
    assert "month in (" + ", ".join(f"date '{month}'" for (month,) in user_months) + ")" in compiled

    # 5. an anonymous visitor of the first month who never identified becomes a user who signed up later; both entered
    # the default funnel, the visitor first, so the user's entry moves to the visitor's cohort and leaves their own
    (anonymous_id, first_seen, visitor_cohort) = rows(
        settings,
        "select users.person_id, users.first_seen_at, entries.cohort_date from analytics.dim_users as users "
        "join intermediate.int_funnel_persons as entries on entries.person_id = users.person_id "
        "and entries.funnel_name = 'default' and entries.step_index = 1 where users.user_id is null "
        "and users.first_seen_at < date '2026-02-01' and users.activity_events >= 3 "
        "order by users.first_seen_at, users.person_id limit 1",
    )[0]
    (merged_user, user_first_seen) = rows(
        settings,
        "select users.user_id, users.first_seen_at from analytics.dim_users as users "
        "join intermediate.int_funnel_persons as entries on entries.person_id = users.person_id "
        "and entries.funnel_name = 'default' and entries.step_index = 1 and entries.cohort_date > %s "
        "where users.signed_up_at >= date '2026-02-15' and users.user_id <> %s "
        "order by users.signed_up_at, users.user_id limit 1",
        (visitor_cohort, user_id),
    )[0]
    identify = event("identify", last, last, userId=merged_user, anonymousId=anonymous_id, traits={"plan": "pro"})
    # and the user's plan changes in the same hour
    upgrade = event("track", last, last, userId=merged_user, event="subscription_changed", properties={"mrr": 49})
    # and a late event that re-maps a stitched visitor: it carries their anonymous id with another user's id, a minute
    # before the pair they were stitched by, so they belong to that user now and their first user loses their events
    (remapped_id, first_user, stitched_at) = rows(
        settings,
        "select map.anonymous_id, map.user_id, map.stitched_at from intermediate.int_identity_map as map "
        "where map.user_id not in (%s, %s) and map.stitched_at < date '2026-02-15' and exists (select "
        "from analytics.fct_events as events where events.anonymous_id = map.anonymous_id and events.user_id is null) "
        "order by map.stitched_at, map.anonymous_id limit 1",
        (user_id, merged_user),
    )[0]
    (new_owner,) = rows(
        settings,
        "select user_id from analytics.dim_users where user_id not in (%s, %s, %s) order by user_id limit 1",
        (user_id, merged_user, first_user),
    )[0]
    remap = event(
        "track", stitched_at - timedelta(minutes=1), last, userId=new_owner, anonymousId=remapped_id, event="clicked"
    )
    put_events(bucket, f"{END:%Y/%m/%d}/23/merge.jsonl.gz", [identify, upgrade, remap])
    load_and_run()
    assert rows(
        settings,
        "select user_id, previous_user_id from intermediate.int_identity_map where anonymous_id = %s",
        (remapped_id,),
    ) == [(new_owner, first_user)]
    assert rows(
        settings,
        "select distinct person_id from analytics.fct_events where anonymous_id = %s and user_id is null",
        (remapped_id,),
    ) == [(new_owner,)]
    # the first user's row counts only the events left to them (its activity, recomputed, against fct_events)
    assert rows(
        settings, "select activity_events from analytics.dim_users where person_id = %s", (first_user,)
    ) == rows(
        settings,
        "select count(*) from analytics.fct_events where person_id = %s and is_activity",
        (first_user,),
    )
    # daily_metrics recomputed the visitor's dates on, but MRR only from the upgrade's date: the dates before it kept
    # their stored MRR (the final comparison with a full build checks both)
    compiled = (root / "dbt_target/compiled/analyticspro/models/marts/metrics/daily_metrics.sql").read_text()
    assert f"where changed_date >= date '{last.date()}'" in compiled
    assert f"stored.date >= date '{first_seen.date()}' - 1" in compiled
    # the visitor's events moved to the user in fct_events, but no date's counts changed: int_event_days recounted
    # only the dates of the hour's events (the identify's and the re-mapping event's)
    assert rows(
        settings,
        "select event_date from intermediate.int_event_days where _built_at = "
        "(select built_at from ops.model_builds where model = 'intermediate.int_event_days') order by event_date",
    ) == sorted({((stitched_at - timedelta(minutes=1)).date(),), (last.date(),)})
    visitor_day = "select count(*) from analytics.fct_events where person_id = %s and event_date = %s"
    assert rows(settings, visitor_day, (merged_user, first_seen.date()))[0][0] > 0
    merged = rows(settings, "select first_seen_at from analytics.dim_users where person_id = %s", (merged_user,))
    assert merged == [(min(first_seen, user_first_seen),)]
    assert rows(settings, "select count(*) from analytics.dim_users where person_id = %s", (anonymous_id,)) == [(0,)]
    _assert_wau_mau_match_events(settings)
    _assert_mrr_matches_events(settings)
    _assert_funnel_entries_match_events(settings)
    _assert_cohort_sizes_match_users(settings)

    # 6. a GDPR erasure of the user with late events, then a run. The erasure waits for a dbt build in flight (here:
    # the lock held as a build holds it), so no build reads the tables while its delete is uncommitted
    user_rows = "select count(*) from raw.events where user_id = %s"
    assert rows(settings, user_rows, (user_id,))[0][0] > 0
    with advisory_lock(settings.database_url, DBT_LOCK, say=lambda _: None):
        erasure = threading.Thread(target=forget, args=(settings, user_id, "test"), kwargs={"say": lambda _: None})
        erasure.start()
        erasure.join(timeout=3)
        assert erasure.is_alive() and rows(settings, user_rows, (user_id,))[0][0] > 0
    erasure.join(timeout=60)
    assert not erasure.is_alive() and rows(settings, user_rows, (user_id,)) == [(0,)]
    _run(root)

    # 7. the same lines again under new names (a re-upload), and a load with nothing new; the second run as the first
    # after an upgrade finds it, without the build records (ops.model_builds: high-water marks and funnel
    # definitions), which it falls back to reading from the tables
    for path in sorted((bucket / "events").rglob("*.jsonl.gz"))[:5]:
        shutil.copy(path, path.with_name("again-" + path.name))
    load_and_run()
    assert len(rows(settings, "select model, built_at from ops.model_builds where funnel_definitions is not null")) == 3
    rows(settings, "delete from ops.model_builds returning model")
    # nor an index a newer version added to a model's config (here: dropped): the incremental run creates it
    mrr_indexes = (
        "select indexdef from pg_indexes where schemaname = 'intermediate' and tablename = 'int_mrr_changes' "
        "and indexdef like '%%(_built_at)'"
    )
    ((index_definition,),) = rows(settings, mrr_indexes)
    index_name = index_definition.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
    with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
        cursor.execute(f"drop index intermediate.{index_name}")
    # nor the record of the days fct_events wrote (ops.written_days): the run starts it, reading unpruned meanwhile
    rows(settings, "delete from ops.written_days returning model")
    load_and_run()
    assert len(rows(settings, "select model from ops.model_builds")) >= len(MARTS)
    assert len(rows(settings, mrr_indexes)) == 1

    incremental = _marts(settings)
    assert all(len(frame) for frame in incremental.values())
    # and the persons' cohort periods, which the retention marts count
    cohort_persons = (
        "select cohort_grain, person_id, cohort_start, period_number, is_active from intermediate.int_cohort_persons"
    )
    incremental_cohort_persons = sorted(rows(settings, cohort_persons))
    _assert_written_days_cover_changes(settings)
    _run(root, "--full-refresh")
    # a full build writes every day: the record starts again from it
    assert rows(settings, "select day from ops.written_days where model = 'analytics.fct_events'") == [(None,)]
    full = _marts(settings)
    found = []
    for model in MARTS:
        found += differences(full[model], incremental[model], model, skipped=SKIPPED_COLUMNS)
    assert not found, "\n".join(found)
    assert sorted(rows(settings, cohort_persons)) == incremental_cohort_persons
