"""The lake's events table: every raw.events row once, under its UTC day, rewritten only when the day changed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import psycopg2
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from cli.warehouse import print_lake_summary
from common.settings import get_settings
from ingestion.events import load_events
from ingestion.generator import generate
from testing.db import rows
from warehouse.erasure import forget
from warehouse.lake import (
    day_url,
    lake_marts,
    lake_merge_keys,
    manifest_url,
    merge_query,
    read_lake_table,
    sync_lake,
)

END = date(2026, 2, 10)


def lake_table(lake):
    return ds.dataset(f"{lake}/events", format="parquet", partitioning="hive").to_table()


def test_lake_holds_raw_events_by_day_and_follows_changes(own_database, tmp_path, monkeypatch):
    settings = own_database
    bucket = tmp_path / "bucket"
    lake = str(tmp_path / "lake")
    monkeypatch.setenv("EVENTS_BUCKET_URL", str(bucket))
    generate(bucket, days=6, users=120, seed=3, end_date=END)
    load_events(progress=False)

    first = sync_lake(settings, lake, say=lambda _: None)
    per_day = dict(
        rows(settings, """select ("timestamp" at time zone 'UTC')::date, count(*) from raw.events group by 1""")
    )
    assert first.days_written == len(per_day) >= 6
    assert first.rows_written == sum(per_day.values())

    table = lake_table(lake)
    frame = table.to_pandas()
    assert len(frame) == sum(per_day.values()) and frame["message_id"].is_unique
    # the hive folder name is the day (read back as text)
    assert {d: int(n) for d, n in frame.groupby("event_date").size().items()} == {
        d.isoformat(): n for d, n in per_day.items()
    }
    # same values as PostgreSQL: timestamps to the microsecond (UTC), JSON as text, nulls as nulls
    sample = min(table.to_pylist(), key=lambda row: row["message_id"])
    (expected,) = rows(
        settings,
        'select "timestamp", properties::text, user_id, received_at from raw.events where message_id = %s',
        (sample["message_id"],),
    )
    assert (sample["timestamp"], sample["properties"], sample["user_id"], sample["received_at"]) == expected
    assert table.schema.field("timestamp").type.tz == "UTC"

    # the manifest (what Spark reads to find changed days): a row per day, as ops.lake_days
    manifest = pq.read_table(manifest_url(lake)).to_pylist()
    assert {(m["event_date"], m["row_count"]) for m in manifest} == set(per_day.items())
    assert [(m["event_date"], m["written_at"]) for m in manifest] == rows(
        settings, "select event_date, written_at from ops.lake_days order by 1"
    )
    manifest_written = Path(manifest_url(lake)).stat().st_mtime_ns

    # nothing changed: nothing written
    again = sync_lake(settings, lake, say=lambda _: None)
    assert (again.days_written, again.days_unchanged) == (0, len(per_day))
    assert Path(manifest_url(lake)).stat().st_mtime_ns == manifest_written

    # rows of one day deleted (what `analyticspro forget` does), another day emptied: the first is rewritten
    # without them, the second removed
    days = sorted(per_day)
    connection = psycopg2.connect(settings.database_url)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            """delete from raw.events where message_id in (select message_id from raw.events
               where ("timestamp" at time zone 'UTC')::date = %s order by message_id limit 3)""",
            (days[1],),
        )
        cursor.execute("""delete from raw.events where ("timestamp" at time zone 'UTC')::date = %s""", (days[0],))
    connection.close()
    third = sync_lake(settings, lake, say=lambda _: None)
    assert (third.days_written, third.days_removed) == (1, 1)
    frame = lake_table(lake).to_pandas()
    assert len(frame) == sum(per_day.values()) - per_day[days[0]] - 3
    assert not (tmp_path / "lake" / "events" / f"event_date={days[0]}" / "events.parquet").exists()
    assert day_url(lake, days[1]).endswith(f"events/event_date={days[1]}/events.parquet")
    manifest = {m["event_date"]: m["row_count"] for m in pq.read_table(manifest_url(lake)).to_pylist()}
    assert days[0] not in manifest and manifest[days[1]] == per_day[days[1]] - 3


def test_forget_scrubs_the_lake(own_database, tmp_path, monkeypatch):
    """`analyticspro forget` rewrites the lake's files that hold the person: the events and any table a Spark build
    wrote (here a hand-made dim_users file); other people's rows stay, and the next sync writes nothing more."""
    bucket = tmp_path / "bucket"
    lake = tmp_path / "lake"
    monkeypatch.setenv("EVENTS_BUCKET_URL", str(bucket))
    monkeypatch.setenv("EVENTS_LAKE_URL", str(lake))
    monkeypatch.setenv("REDIS_KEY_PREFIX", f"{own_database.redis_key_prefix}:{tmp_path.name}")  # forget touches Redis
    settings = get_settings()  # with this test's bucket (forget scrubs it)
    generate(bucket, days=5, users=80, seed=8, end_date=END)
    load_events(progress=False)
    sync_lake(settings, say=lambda _: None)
    # someone who browsed anonymously, then signed up: both ids are theirs
    (user_id, anonymous_id) = rows(
        settings,
        """select u.user_id, a.anonymous_id from raw.events u join raw.events a on a.anonymous_id = u.anonymous_id
           where u.user_id is not null and a.user_id is null order by 1 limit 1""",
    )[0]
    before = lake_table(str(lake)).to_pandas()
    theirs = before[(before["user_id"] == user_id) | (before["anonymous_id"] == anonymous_id)]
    assert len(theirs) > 0 and (theirs["user_id"].isna()).any()
    mart = lake / "marts" / "dim_users" / "part-00000.parquet"
    mart.parent.mkdir(parents=True)
    # with a timestamp as Spark writes it (INT96), which the rewrite keeps: Spark fails on a file whose column changed
    # physical type (the merge-on-read marts' base files stay in the lake across builds)
    seen = pa.array([datetime(2026, 2, 1, 12, 30, 0, 250000)] * 3, pa.timestamp("us"))
    pq.write_table(
        pa.table({"person_id": [user_id, "someone-else", None], "plan": ["pro", "free", "free"], "seen_at": seen}),
        mart,
        use_deprecated_int96_timestamps=True,
    )

    # and the log of the values its builds changed, for the aggregates over it (a model with `lake_merge_touched`)
    touched = lake / "ops" / "lake_merge_touched" / "model=dim_users"
    touched.mkdir(parents=True)
    pq.write_table(pa.table({"value": ["2026-02-01"], "built_at": seen[:1]}), touched / "part-00000.parquet")

    report = forget(settings, user_id, "test")

    after = lake_table(str(lake)).to_pandas()
    assert len(after) == len(before) - len(theirs)
    assert not ((after["user_id"] == user_id) | (after["anonymous_id"] == anonymous_id)).any()
    assert pq.read_table(mart, coerce_int96_timestamp_unit="us").to_pydict() == {
        "person_id": ["someone-else", None],
        "plan": ["free", "free"],
        "seen_at": [datetime(2026, 2, 1, 12, 30, 0, 250000)] * 2,
    }
    assert [column.physical_type for column in pq.ParquetFile(mart).schema if column.name == "seen_at"] == ["INT96"]
    assert report.rows["lake"] == len(theirs) + 1
    # the erasure logged "every value" for it: its aggregates recount every partition on the next Spark run
    log = pq.read_table(touched, coerce_int96_timestamp_unit="us").to_pydict()
    assert sorted(log["value"], key=str) == ["2026-02-01", None]
    assert max(log["built_at"]) > datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    # the lake equals raw.events again: the days that lost rows are rewritten from PostgreSQL with the same rows
    sync_lake(settings, say=lambda _: None)
    assert sorted(lake_table(str(lake)).to_pandas()["message_id"]) == sorted(after["message_id"])
    assert rows(settings, "select count(*) from raw.events")[0][0] == len(after)


def test_a_merge_on_read_table_reads_as_its_base_with_the_delta_applied(tmp_path, monkeypatch, capsys):
    """A person-keyed mart the Spark build keeps as base + delta (dbt_project/macros/lake_merge.sql): readers of the
    lake see the base's rows of persons the delta does not hold, then the delta's live rows; a deleted marker hides
    its person. The same through read_lake_table and through DuckDB with merge_query's SQL."""
    lake = tmp_path / "lake"
    for folder, table in {
        "marts/dim_users": pa.table({"person_id": ["a", "b", "c"], "plan": ["free", "free", "free"]}),
        "marts/dim_users__delta": pa.table(
            {"person_id": ["b", "c", "d"], "plan": ["pro", None, "team"], "_merge_deleted": [False, True, False]}
        ),
        "ops/lake_merge_builds/model=dim_users": pa.table(
            {"built_at": pa.array([datetime(2026, 2, 1)], pa.timestamp("us")), "merge_key": ["person_id"]}
        ),
    }.items():
        (lake / folder).mkdir(parents=True)
        pq.write_table(table, lake / folder / "part-00000.parquet")
    expected = [("a", "free"), ("b", "pro"), ("d", "team")]
    merged = read_lake_table("dim_users", str(lake))
    assert sorted(zip(merged.column("person_id").to_pylist(), merged.column("plan").to_pylist(), strict=True)) == (
        expected
    )
    assert lake_merge_keys(str(lake)) == {"dim_users": "person_id"}
    assert lake_marts(str(lake)) == {"dim_users": 3}
    assert sorted(duckdb.sql(merge_query("dim_users", "person_id", str(lake))).fetchall()) == expected
    # `analyticspro materialize --engine spark` ends by printing the marts, and the query for this one
    monkeypatch.setenv("EVENTS_LAKE_URL", str(lake))
    print_lake_summary()
    printed = capsys.readouterr().out
    assert "dim_users                          3 rows" in printed
    assert merge_query("dim_users", "person_id", str(lake)) in printed
