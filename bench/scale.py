"""The scale benchmark: the same dbt project built in full on PostgreSQL and on Spark over the same events.

raw.events holds BENCH_SCALE_EVENTS (default 10M) generated events (bench/marts.py's load). Then:
- postgres_build_s: `dbt run --full-refresh` on the PostgreSQL target (every model from scratch);
- lake_export_s: raw.events written to the lake as Parquet, a file per day (warehouse/lake.py);
- spark_build_s: `dbt run` on the spark target (PySpark in local mode, every core: local[*]);
- spark_1core_s / spark_2core_s: the same with SPARK_CORES=1 and 2 (local[1], local[2]); on a 2-core machine
  spark_2core_s is spark_build_s's run.
Every mart's row count on Spark must equal PostgreSQL's, or the benchmark fails (a build that lost rows is not a
speed). `make bench` runs it over the marts benchmark's database; `BENCH_ONLY=scale make bench` alone (it then
loads its own events: about 45 minutes at 10M on 2 cores).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2

from bench.marts import _dbt, load_raw_events
from orchestration.engines import dbt_target, spark_environment
from testing.db import own_warehouse, restore_environ, set_environ
from warehouse.lake import lake_marts, sync_lake


def _spark_build(say: Callable[[str], None], cores: int | None) -> float:
    saved = set_environ({"SPARK_CORES": str(cores) if cores else "*"})
    try:
        say(f"spark build, local[{cores or '*'}]")
        seconds = _dbt("run", "--target", dbt_target("spark"))
        say(f"spark build, local[{cores or '*'}]: {seconds:.1f}s")
        return seconds
    finally:
        restore_environ(saved)


def bench_scale(settings, root: Path, say: Callable[[str], None]) -> dict:
    """Over the events in settings' raw.events; Spark's lake and metastore go under `root`."""
    with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from raw.events")
        events = cursor.fetchone()[0]
    say(f"postgres: full build (dbt run --full-refresh) over {events:,} events")
    postgres_s = _dbt("run", "--full-refresh")
    say(f"postgres full build {postgres_s:.1f}s")

    saved = set_environ(
        {
            "EVENTS_LAKE_URL": str(root / "lake"),
            "SPARK_METASTORE_DIR": str(root / "spark"),
            "SPARK_DRIVER_MEMORY": os.environ.get("SPARK_DRIVER_MEMORY") or "8g",
        }
    )
    try:
        os.environ.update(spark_environment())
        started = time.perf_counter()
        sync = sync_lake(settings, say=say)
        lake_s = time.perf_counter() - started
        say(f"lake: {sync.days_written} days of raw.events as Parquet in {lake_s:.1f}s")
        cores = os.cpu_count() or 1
        spark_s = _spark_build(say, None)
        spark_counts = lake_marts()
        spark_2core_s = spark_s if cores == 2 else _spark_build(say, 2)
        spark_1core_s = spark_s if cores == 1 else _spark_build(say, 1)
    finally:
        restore_environ(saved)

    with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
        postgres_counts = {}
        for model in spark_counts:
            cursor.execute(f"select count(*) from analytics.{model}")
            postgres_counts[model] = cursor.fetchone()[0]
    if spark_counts != postgres_counts:
        raise SystemExit(f"scale: Spark's marts differ from PostgreSQL's: {spark_counts} != {postgres_counts}")
    return {
        "events": events,
        "cores": cores,
        "postgres_build_s": round(postgres_s, 1),
        "lake_export_s": round(lake_s, 1),
        "spark_build_s": round(spark_s, 1),
        "spark_1core_s": round(spark_1core_s, 1),
        "spark_2core_s": round(spark_2core_s, 1),
        "spark_vs_postgres": round(spark_s / postgres_s, 2),
        "spark_2core_speedup_vs_1core": round(spark_1core_s / spark_2core_s, 2),
        "fct_events_rows": spark_counts.get("fct_events", 0),
    }


def bench_scale_alone(say: Callable[[str], None]) -> dict:
    """BENCH_ONLY=scale: a database and events of its own (bench/marts.py's load), dropped afterwards."""
    with own_warehouse("scale") as (settings, root):
        target = int(os.environ.get("BENCH_SCALE_EVENTS", os.environ.get("BENCH_MARTS_EVENTS", "10000000")))
        days = int(os.environ.get("BENCH_MARTS_DAYS", "90"))
        say(f"loading {target:,} generated events over {days} days into raw.events")
        _base, _held_back, connection = load_raw_events(settings, root, target, days)
        connection.close()
        return bench_scale(settings, root, say)
