"""The lake's events table: every raw.events row once, under its UTC day, rewritten only when the day changed."""

from __future__ import annotations

from datetime import date

import psycopg2
import pyarrow.dataset as ds

from ingestion.events import load_events
from ingestion.generator import generate
from ingestion.lake import day_url, sync_lake
from tests.db import rows

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

    # nothing changed: nothing written
    again = sync_lake(settings, lake, say=lambda _: None)
    assert (again.days_written, again.days_unchanged) == (0, len(per_day))

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
