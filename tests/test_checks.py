"""The data-quality asset checks, run against real tables with hand-computed outcomes."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.events import load_events
from orchestration.defs.quality import (
    measure_daily_row_count_anomaly,
    measure_raw_events_freshness,
    measure_rejected_events_ratio,
    row_count_anomalies,
)
from orchestration.defs.serving.resources import WarehouseResource


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _load(folder, good: int, bad: int, at: datetime) -> None:
    lines = [
        json.dumps(
            {"type": "page", "messageId": f"ok-{at.timestamp()}-{i}", "anonymousId": "a", "timestamp": _stamp(at)}
        )
        for i in range(good)
    ] + ['{"type": "page", "messageId": "broken' for _ in range(bad)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"batch-{at.timestamp()}.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    load_events(str(folder), progress=False)


def test_rejected_ratio_fails_above_one_percent(own_database, tmp_path):
    warehouse = WarehouseResource(database_url=own_database.database_url)
    now = datetime.now(UTC)
    _load(tmp_path / "bucket", good=199, bad=1, at=now)  # 1 / 200 = 0.5%
    result = measure_rejected_events_ratio(warehouse=warehouse)
    assert result.passed
    assert result.metadata["ratio"].value == 0.005
    _load(tmp_path / "bucket", good=99, bad=3, at=now + timedelta(seconds=1))  # 4 / 302 = 1.32%
    result = measure_rejected_events_ratio(warehouse=warehouse)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["rejected"].value == 4 and result.metadata["stored_events"].value == 298
    assert "1.32%" in result.description


def test_freshness_warns_when_events_stop_during_active_hours(own_database, tmp_path, monkeypatch):
    warehouse = WarehouseResource(database_url=own_database.database_url)
    _load(tmp_path / "bucket", good=5, bad=0, at=datetime.now(UTC) - timedelta(minutes=90))
    monkeypatch.setenv("FRESHNESS_ACTIVE_HOURS", "00-23")
    monkeypatch.setenv("FRESHNESS_WARN_MINUTES", "60")
    result = measure_raw_events_freshness(warehouse=warehouse)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert 89 <= result.metadata["minutes_since_latest_event"].value <= 95
    monkeypatch.setenv("FRESHNESS_WARN_MINUTES", "120")
    assert measure_raw_events_freshness(warehouse=warehouse).passed
    # outside the active hours a quiet stream is normal
    monkeypatch.setenv("FRESHNESS_WARN_MINUTES", "60")
    hour = datetime.now(UTC).hour
    other = (hour + 2) % 24
    monkeypatch.setenv("FRESHNESS_ACTIVE_HOURS", f"{other:02d}-{other:02d}")
    assert measure_raw_events_freshness(warehouse=warehouse).passed


def test_row_count_anomalies_by_hand():
    start = date(2026, 3, 1)
    counts = {start + timedelta(days=i): n for i, n in enumerate([100, 90, 110, 100, 95, 105, 100, 49, 51, 0])}
    # day 7 (49): median of the 7 days before = 100 -> 49 < 50, anomaly; day 8 (51): median(90..49) = 100, ok;
    # day 9 (0): median(110..51) = 100 -> anomaly; day 2 has no full trailing week and is not judged
    days = [start + timedelta(days=i) for i in (2, 7, 8, 9)]
    found = row_count_anomalies(counts, days)
    assert found == {
        (start + timedelta(days=7)).isoformat(): {"events": 49, "trailing_week_median": 100},
        (start + timedelta(days=9)).isoformat(): {"events": 0, "trailing_week_median": 100},
    }


def test_row_count_anomaly_check_reads_fct_events(own_database):
    today = datetime.now(UTC).date()
    per_day = {today - timedelta(days=offset): 100 for offset in range(1, 16)}
    per_day[today - timedelta(days=3)] = 40  # under half the median
    with psycopg2.connect(own_database.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("create schema analytics; create table analytics.fct_events (event_date date)")
        for day, n in per_day.items():
            cursor.execute("insert into analytics.fct_events select %s from generate_series(1, %s)", (day, n))
    connection.close()
    result = measure_daily_row_count_anomaly(warehouse=WarehouseResource(database_url=own_database.database_url))
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["anomalies"].value == {
        (today - timedelta(days=3)).isoformat(): {"events": 40, "trailing_week_median": 100}
    }


def test_row_count_anomaly_check_reads_the_lake_on_spark(tmp_path, monkeypatch):
    """The Spark engine builds fct_events in the lake (and nothing in PostgreSQL): the check reads the lake's day
    partitions, and a database without analytics.fct_events is never asked."""
    today = datetime.now(UTC).date()
    per_day = {today - timedelta(days=offset): 100 for offset in range(1, 16)}
    per_day[today - timedelta(days=2)] = 30
    per_day[today] = 5  # today is not closed: not judged
    for day, n in per_day.items():
        folder = tmp_path / "lake" / "marts" / "fct_events" / f"event_date={day.isoformat()}"
        folder.mkdir(parents=True)
        half = n // 2
        for part, rows in enumerate((half, n - half)):  # two files a day, as Spark writes them
            pq.write_table(
                pa.table({"event_id": [f"{day}-{part}-{i}" for i in range(rows)]}), folder / f"p{part}.parquet"
            )
    monkeypatch.setenv("EVENTS_LAKE_URL", str(tmp_path / "lake"))
    monkeypatch.setenv("ANALYTICSPRO_ENGINE", "spark")
    unreachable = WarehouseResource(database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    result = measure_daily_row_count_anomaly(warehouse=unreachable)
    assert not result.passed
    assert result.metadata["anomalies"].value == {
        (today - timedelta(days=2)).isoformat(): {"events": 30, "trailing_week_median": 100}
    }
