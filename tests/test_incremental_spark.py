"""The incremental sequence of test_incremental on the Spark engine (its own file: it is the suite's longest test,
and pytest-xdist schedules a file at a time)."""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest
import yaml

from ingestion.events import load_events
from ingestion.generator import generate
from orchestration.defs.transform.project import DBT_PROJECT_DIR
from orchestration.runs import run_materialize
from testing.db import own_warehouse, rows
from testing.dbt import dbt
from testing.engines import MARTS, SKIPPED_COLUMNS, differences, read_lake_mart, read_postgres_mart
from testing.segment_events import copy_hours, event, put_events
from testing.spark import dbt_in_process, stop_spark
from warehouse.erasure import forget
from warehouse.lake import read_lake_table, sync_lake

END = date(2026, 3, 12)


def _day_files(lake: Path, table: str = "marts/fct_events", column: str = "event_date") -> dict[str, set[str]]:
    """A day-partitioned table's Parquet files in the lake, by day partition folder."""
    return {
        day.name.removeprefix(f"{column}="): {f.name for f in day.glob("*.parquet")}
        for day in (lake / table).glob(f"{column}=*")
    }


def _files(folder: Path) -> set[str]:
    """A lake table's Parquet files (names are unique per write: a rewrite changes them)."""
    return {path.name for path in folder.rglob("*.parquet")}


# the merge-on-read models on Spark (a base and a delta in the lake)
MERGE_ON_READ = [
    "marts/dim_users",
    "marts/fct_mrr",
    "intermediate/int_cohort_persons",
    "intermediate/int_identity_map",
    "intermediate/int_funnel_persons",
    "intermediate/int_funnel_breakdown_persons",
]

# the other day-partitioned models on Spark: they rewrite only the days fct_events rewrites (int_event_days every one
# of them; the others those of them where they have rows)
DAY_MODELS = {"event_days": ("intermediate/int_event_days", "event_date"),
              "person_days": ("intermediate/int_person_days", "activity_date"),
              "funnel_events": ("intermediate/int_funnel_events", "event_date"),
              "mrr_changes": ("intermediate/int_mrr_changes", "changed_date")}  # fmt: skip
SPARSE_DAY_MODELS = ["person_days", "funnel_events", "mrr_changes"]


def _rewritten(before: dict[str, set[str]], after: dict[str, set[str]]) -> set[str]:
    return {day for day in set(before) | set(after) if before.get(day) != after.get(day)}


@pytest.fixture
def spark_in_this_process():
    """The test's dbt builds on Spark after the first run in this process (dbt_in_process: one JVM, warm from build to
    build); its JVM ends with the test, failed or not (a later test module in this worker starts its own)."""
    yield
    stop_spark()


def test_spark_incremental_runs_equal_a_full_build(tmp_path, monkeypatch, spark_in_this_process):
    """The same on the Spark engine, built first by `analyticspro materialize --engine spark` into an empty
    database, where an incremental run rewrites only the fct_events day partitions that
    changed: new days, a late event's old day, the days of a re-stitched visitor's events; none for objects loaded
    again.
    Every mart then equals a `--full-refresh` Spark build of the same lake, row for row, and a PostgreSQL build of the
    same raw events."""
    with own_warehouse("incremental_spark", tmp_path) as (settings, root):
        lake = root / "lake"
        for name, value in {
            "EVENTS_LAKE_URL": str(lake),
            "SPARK_METASTORE_DIR": str(root / "spark"),
            "ANALYTICSPRO_SPARK_LOG4J": "",
            # this test's JVMs run for minutes each: the optimizing compiler pays for itself (tests/conftest.py keeps
            # the other tests' short-lived JVMs on the quick one)
            "JAVA_TOOL_OPTIONS": "-XX:ReservedCodeCacheSize=256m",
            "SPARK_SHUFFLE_PARTITIONS": "4",
        }.items():
            monkeypatch.setenv(name, value)
        generated = generate(root / "generated", days=30, users=150, seed=5, end_date=END)
        bucket = root / "bucket"
        files = sorted(generated.files)
        hours = sorted({f.parent for f in files})
        cut = int(len(hours) * 0.8)

        def copy(folders: list[Path]) -> None:
            copy_hours(files, folders, root / "generated", bucket)

        def load_and_run(*args: str, compact_fraction: float | None = None, funnels_changed: bool = False) -> set[str]:
            """Load, sync the lake, run dbt on Spark: the fct_events partitions the run rewrote (int_event_days
            rewrote the same days; int_person_days those of them with activity, no other; fct_sessions some of those
            days and the days next to them, no other)."""
            load_events(progress=False)
            sync_lake(settings, say=lambda _: None)
            before = _day_files(lake)
            before_models = {name: _day_files(lake, *where) for name, where in DAY_MODELS.items()}
            before_sessions = _day_files(lake, "marts/fct_sessions", "session_date")
            extra = ["--vars", f"{{lake_compact_fraction: {compact_fraction}}}"] if compact_fraction is not None else []
            dbt_in_process(root, "run", "--target", "spark", *args, *extra)
            rewritten = _rewritten(before, _day_files(lake))
            models = {
                name: _rewritten(before_models[name], _day_files(lake, *where)) for name, where in DAY_MODELS.items()
            }
            assert models["event_days"] == rewritten
            for name in SPARSE_DAY_MODELS:
                # (a changed funnel definition rewrites every day of int_funnel_events)
                assert models[name] <= rewritten or name == "funnel_events" and funnels_changed, name
            if not args:  # an incremental run: the days among them where the model has rows were rewritten
                for name in SPARSE_DAY_MODELS:
                    holding = {day for day, files in _day_files(lake, *DAY_MODELS[name]).items() if files}
                    assert models[name] >= rewritten & holding, name
                active = {day for day, files in _day_files(lake, *DAY_MODELS["person_days"]).items() if files}
                # fct_sessions: only the dates a session touching those days can start on, the day before to after
                sessions = _rewritten(before_sessions, _day_files(lake, "marts/fct_sessions", "session_date"))
                around = {date.fromisoformat(day) + timedelta(days=shift) for day in rewritten for shift in (-1, 0, 1)}
                assert sessions <= {day.isoformat() for day in around}
                assert sessions or not rewritten & active
            return rewritten

        def days_in_raw(where: str, *params) -> set[str]:
            found = rows(
                settings,
                f"""select distinct ("timestamp" at time zone 'UTC')::date::text from raw.events where {where}""",
                params,
            )
            return {day for (day,) in found}

        def loads() -> list[str]:
            return [load_id for (load_id,) in rows(settings, "select load_id from raw._dlt_loads")]

        # 1. the first 80% by `analyticspro materialize --engine spark` (through Dagster, the default multiprocess
        # executor) into this database, empty: the objects are loaded, the lake is written from raw.events, the
        # models build on Spark, the asset checks read what Spark built (nothing of analytics is in PostgreSQL), and
        # every day of the lake is written
        copy(hours[:cut])
        for name, value in {
            "ANALYTICSPRO_ENGINE": "postgres",  # run_materialize sets it to spark: put back after the test
            "DAGSTER_EXECUTOR": "multiprocess",
            "REDIS_KEY_PREFIX": f"{settings.redis_key_prefix}:spark",
        }.items():
            monkeypatch.setenv(name, value)
        before = _day_files(lake)
        assert run_materialize(engine="spark", log_level="WARNING")
        assert rows(settings, "select count(*) from pg_tables where schemaname = 'analytics'") == [(0,)]
        assert _rewritten(before, _day_files(lake)) == days_in_raw("true")
        monkeypatch.setenv("DAGSTER_EXECUTOR", "in_process")

        # 2. the rest, and a late page view for a day three weeks old: the days those loads touched, no other
        last = datetime.combine(END, datetime.min.time(), UTC) + timedelta(hours=23, minutes=50)
        (user_id,), (erased,) = rows(
            settings, "select distinct user_id from raw.events where user_id is not null order by 1 limit 2"
        )
        late = event("page", last - timedelta(days=21), last, userId=user_id, properties={"path": "/pricing"})
        # and one for a day before the first, its only event (erased below: the day leaves the lake)
        lonely = event("page", last - timedelta(days=40), last, userId=erased, properties={"path": "/"})
        copy(hours[cut:])
        put_events(bucket, f"{END:%Y/%m/%d}/23/late.jsonl.gz", [late, lonely])
        built_loads = loads()
        funnel_steps = ("marts/fct_funnel_steps", "cohort_date")
        steps_before = _day_files(lake, *funnel_steps)
        # (no compaction: fct_mrr's delta still holds this hour's persons when the new month comes below)
        rewritten = load_and_run(compact_fraction=100)
        # the funnel aggregates rewrite the cohort dates where the funnel persons logged changed rows
        # (macros/lake_merge.sql): the new days and those of persons who moved on, not every date
        steps_after = _day_files(lake, *funnel_steps)
        steps_rewritten = _rewritten(steps_before, steps_after)
        assert set(steps_after) - set(steps_before) <= steps_rewritten < set(steps_after)
        touched = days_in_raw("not (_dlt_load_id = any(%s))", built_loads)
        # and days of earlier events of visitors these loads identified (their person changes)
        identified = days_in_raw(
            "anonymous_id = any(array(select anonymous_id from raw.events where user_id is not null "
            "and not (_dlt_load_id = any(%s))))",
            built_loads,
        )
        assert touched <= rewritten <= touched | identified
        assert (last - timedelta(days=21)).date().isoformat() in rewritten
        assert len(rewritten) < len(days_in_raw("true")) / 2

        # 3. in one run: an anonymous visitor of the first week, never identified, is identified as an existing user
        # (the days of the visitor's events change person, and the identify's day), and a GDPR erasure of another
        # user (the days of their events, those sent before they signed in included; the lonely day is left with no
        # rows at all)
        (anonymous_id,) = rows(
            settings,
            """
            select anonymous_id from raw.events group by anonymous_id
            having bool_and(user_id is null) and min("timestamp") < %s
                and count(distinct ("timestamp" at time zone 'UTC')::date) >= 2
            order by min("timestamp"), anonymous_id limit 1
            """,
            (datetime.combine(END - timedelta(days=22), datetime.min.time(), UTC),),
        )[0]
        visitor_days = days_in_raw("anonymous_id = %s", anonymous_id)
        identify = event("identify", last, last, userId=user_id, anonymousId=anonymous_id, traits={"plan": "pro"})
        put_events(bucket, f"{END:%Y/%m/%d}/23/merge.jsonl.gz", [identify])
        # and a new month (a page view on April 2): fct_mrr recomputes everyone, so its delta holds every person once,
        # those it held from the last run included
        april = datetime(2026, 4, 2, 10, tzinfo=UTC)
        put_events(bucket, "2026/04/02/10/april.jsonl.gz", [event("page", april, april, userId=user_id)])
        lonely_day = (last - timedelta(days=40)).date().isoformat()
        assert lonely_day in _day_files(lake)
        erased_days = days_in_raw(
            "user_id = %s or anonymous_id = any(array(select anonymous_id from raw.events where user_id = %s))",
            erased,
            erased,
        )
        assert lonely_day in erased_days and not visitor_days <= erased_days
        expected = visitor_days | {END.isoformat(), "2026-04-02"} | erased_days
        # and, in the same run, objects loaded before under new names (their lines are all in raw.events already):
        # they add no row, so none of their days is rewritten (objects whose days are all outside `expected`)
        again = []
        for path in sorted((bucket / "events").rglob("*.jsonl.gz")):
            ids = []
            for line in gzip.decompress(path.read_bytes()).decode().splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):  # malformed lines: quarantined
                    ids.append(json.loads(line)["messageId"])
            days = days_in_raw("message_id = any(%s)", ids)
            if days and not days & expected:
                again.append(path)
            if len(again) == 5:
                break
        assert again
        for path in again:
            shutil.copy(path, path.with_name("again-" + path.name))
        forget(settings, erased, requested_by="test", say=lambda _: None)
        base_files = {table: _files(lake / table) for table in MERGE_ON_READ}
        # (no compaction in this run, whatever share of this small warehouse's persons it recomputes)
        assert load_and_run(compact_fraction=100) == expected
        # the person-keyed models are merge-on-read on Spark (macros/lake_merge.sql): the run wrote their deltas, not
        # their bases. dim_users' delta holds the persons it recomputed: the user the visitor became (with the
        # visitor's events), the visitor's anonymous person as a deleted marker, persons active on the rewritten days;
        # not the erased user
        assert {table: _files(lake / table) for table in MERGE_ON_READ} == base_files
        delta = ds.dataset(str(lake / "marts/dim_users__delta")).to_table().to_pandas()
        live = delta.loc[~delta["_merge_deleted"]].set_index("person_id")
        assert delta.loc[delta["person_id"] == anonymous_id, "_merge_deleted"].tolist() == [True]
        assert user_id in live.index and erased not in set(delta["person_id"])
        after = read_lake_mart(str(lake), "fct_events")
        assert (
            live.loc[user_id, "activity_events"]
            == after.loc[(after["person_id"] == user_id) & after["is_activity"]].shape[0]
        )
        assert set(after.loc[after["anonymous_id"] == anonymous_id, "person_id"]) == {user_id}
        # the identity map's delta holds the visitor's new pair, and its log (what the models reading the map recompute
        # from) has it once, as new, at this run's time: the latest entry
        identity = ds.dataset(str(lake / "intermediate/int_identity_map__delta")).to_table().to_pandas()
        assert identity.loc[identity["anonymous_id"] == anonymous_id, "user_id"].tolist() == [user_id]
        log = ds.dataset(str(lake / "ops/identity_changes"), partitioning="hive").to_table().to_pandas()
        logged = log.loc[log["anonymous_id"] == anonymous_id]
        assert logged["user_id"].tolist() == [user_id] and logged["previous_user_id"].isna().all()
        assert logged["changed_at"].max() == log["changed_at"].max()
        assert erased not in set(log["user_id"]) | set(log["previous_user_id"])
        assert erased not in set(after["user_id"]) and lonely_day not in set(after["event_date"].astype(str))
        mrr_delta = ds.dataset(str(lake / "marts/fct_mrr__delta")).to_table().to_pandas()
        mrr = read_lake_mart(str(lake), "fct_mrr")
        assert set(mrr_delta.loc[~mrr_delta["_merge_deleted"], "person_id"]) == set(mrr["person_id"])
        assert not mrr.duplicated(["person_id", "month"]).any() and "2026-04-01" in set(mrr["month"].astype(str))

        # 4. a funnel's definition changed (its conversion window): int_funnel_events rewrites every day, since its
        # rows carry the definition they were matched by, and the funnel persons models build in full (a new base, an
        # empty delta); the full builds below use the changed definition too. In the same run, the first event of a
        # new user, late, on Monday March 2, paying from then on: fct_cohort_retention recounts the two cohorts it joins
        # (the week and the month starting on March 2 and March 1) and no other, revenue_monthly March and April, the
        # months of the newcomer's fct_mrr rows, not February (fct_mrr's recomputed persons changed no other row). And
        # the run compacts (every delta row over the fraction: here, any): the deltas fold into the bases and empty
        # (the full build below then checks the compacted tables)
        counts_before = read_lake_mart(str(lake), "fct_funnel_steps")
        configured = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]["funnels"]
        funnels = {"funnels": [{**funnel, "conversion_window_days": 7} for funnel in configured]}
        changed = ["--vars", json.dumps(funnels)]
        before = _day_files(lake, *DAY_MODELS["funnel_events"])
        persons_before = _files(lake / "intermediate/int_funnel_persons")
        cohorts = ("marts/fct_cohort_retention", "cohort_start")
        revenue = ("marts/revenue_monthly", "month")
        cohorts_before, months_before = _day_files(lake, *cohorts), _day_files(lake, *revenue)
        # the running sums rewrite every date from the changed day on (daily_metrics from the day before: a session
        # starting then can change), and the property catalogue's days that day alone
        running = {"daily_metrics": ("marts/daily_metrics", "date", "2026-03-01"),
                   "coverage": ("intermediate/int_active_coverage", "date", "2026-03-02"),
                   "property_days": ("intermediate/int_event_property_days", "event_date", "2026-03-02")}  # fmt: skip
        running_before = {name: _day_files(lake, table, column) for name, (table, column, _) in running.items()}
        newcomer = datetime(2026, 3, 2, 9, tzinfo=UTC)
        paying = event("identify", newcomer + timedelta(minutes=1), last, userId="newcomer", traits={"mrr": 49})
        put_events(
            bucket,
            f"{END:%Y/%m/%d}/23/newcomer.jsonl.gz",
            [event("page", newcomer, last, userId="newcomer"), paying],
        )
        compacting = ["--vars", json.dumps({**funnels, "lake_compact_fraction": 0})]
        assert load_and_run(*compacting, funnels_changed=True) == {"2026-03-02"}
        assert _files(lake / "marts/dim_users") != base_files["marts/dim_users"]
        assert all(ds.dataset(str(lake / f"{table}__delta")).count_rows() == 0 for table in MERGE_ON_READ)
        assert _rewritten(cohorts_before, _day_files(lake, *cohorts)) == {"2026-03-01", "2026-03-02"}
        assert _rewritten(months_before, _day_files(lake, *revenue)) == {"2026-03-01", "2026-04-01"}
        for name, (table, column, first) in running.items():
            after = _day_files(lake, table, column)
            expected = {"2026-03-02"} if name == "property_days" else {day for day in after if day >= first}
            assert _rewritten(running_before[name], after) == expected, name
        after = _day_files(lake, *DAY_MODELS["funnel_events"])
        assert len(after) > 20
        assert _rewritten(before, after) >= {day for day, files in [*before.items(), *after.items()] if files}
        assert _files(lake / "intermediate/int_funnel_persons") != persons_before
        assert ds.dataset(str(lake / "intermediate/int_funnel_persons__delta")).count_rows() == 0
        # (a shorter window loses some conversions: the full builds below check the new counts)
        steps = read_lake_mart(str(lake), "fct_funnel_steps")
        assert differences(counts_before, steps, "fct_funnel_steps", skipped=SKIPPED_COLUMNS)
        incremental = {model: read_lake_mart(str(lake), model) for model in MARTS}
        pairs = ["anonymous_id", "user_id", "stitched_at", "message_id"]
        identity_map = read_lake_table("int_identity_map", str(lake), folder="intermediate").to_pandas()[pairs]

        dbt_in_process(root, "run", "--target", "spark", "--full-refresh", *changed)
        stop_spark()
        found = []
        for model in MARTS:
            full = read_lake_mart(str(lake), model)
            found += differences(full, incremental[model], model, skipped=SKIPPED_COLUMNS)
        assert not found, "\n".join(found)

        # and both engines give the same marts: PostgreSQL built from the same raw events, row for row, floats
        # within 1e-9
        dbt(root, "run", *changed)
        for model in MARTS:
            postgres = read_postgres_mart(settings.database_url, model)
            assert len(postgres) > 0, model
            found += differences(postgres, incremental[model], model, skipped=SKIPPED_COLUMNS)
        assert not found, "\n".join(found)
        # the identity map Spark kept up to date equals PostgreSQL's full build (its pair per anonymous id)
        postgres_map = pd.DataFrame(
            rows(settings, f"select {', '.join(pairs)} from intermediate.int_identity_map"), columns=pairs
        )
        assert not differences(postgres_map, identity_map, "int_identity_map", skipped=set())
