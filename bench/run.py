"""`make bench`: every benchmark, a table on stdout, and bench/results.json ({benchmark: {figure: value}}).

Runs against the local PostgreSQL and Redis in a database and key prefix of its own, dropped at the end.
Machines here are noisy, so each speed is also given as a ratio to a baseline measured in the same run:
- ingest (bench/ingest.py): 1M events through the loader against a plain psycopg COPY of the same lines into a
  typed table with jsonb columns, and the loader's peak memory for 10x fewer events; `BENCH_ONLY=ingest make bench`
  runs it alone (databases of its own, a few minutes);
- hot_metrics: a dashboard read of today's numbers from Redis against the same read from the marts;
- freshness (bench/freshness.py): seconds from a batch file put in the bucket to its events in Redis, with
  `dagster dev` and `analyticspro realtime` running (as `make dev` runs them), against Dagster's bucket sensor
  alone; the target is 5 s. `BENCH_ONLY=freshness make bench` runs it alone (about 3 minutes).
- sensor (bench/sensor.py): one bucket sensor tick with 100,000 objects loaded, in a folder and on S3 (a moto
  server), against 1,000 objects and against a full listing; `BENCH_ONLY=sensor make bench` runs it alone (about
  15 minutes, most of it writing 100,000 objects to moto).

- marts (bench/marts.py): a full dbt build over 10M events against the incremental build of one more hour,
  and an ad-hoc funnel query against the same query in DuckDB.
- dashboard (bench/dashboard.py): the dashboards API over those marts, 50 concurrent clients for 30 s (wrk),
  cached and uncached, and query-builder questions over the 10M events.
- collector (bench/collector.py): `/v1/batch` requests of 100 events at rising concurrency (wrk), against a bare
  ASGI app on the same server. `BENCH_ONLY=collector make bench` runs it alone (about 2 minutes) and merges its
  figures into bench/results.json.
- scale (bench/scale.py): the marts' 10M events built in full on PostgreSQL and on Spark (local mode, every core,
  then 1 and 2 cores); `BENCH_ONLY=scale make bench` runs it alone over events of its own (about 45 minutes).
- insights (bench/insights.py): ad-hoc funnels, trends, retention and paths over the marts benchmark's 10M events
  answered by the insights engine, against DuckDB with a hand-written query; the columnar copy's full build against
  taking a new hour. `BENCH_ONLY=insights make bench` runs it alone (about 20 minutes).
- growth (bench/growth.py): a full build and a new hour's incremental build over 2.5M, 10M and 20M events of
  history, the newest events of one generated history (BENCH_GROWTH_EVENTS, BENCH_GROWTH_PER_DAY), and the plot
  docs/growth.svg; `BENCH_ONLY=growth make bench` runs it alone (about an hour).

BENCH_USERS (default 20000) and BENCH_DAYS (default 30) size the dataset; BENCH_MARTS_EVENTS (default
10000000) and BENCH_MARTS_DAYS (default 90) the marts benchmark's (about 25 minutes at 10M events).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import redis

from bench.collector import bench_collector
from bench.dashboard import bench_dashboard
from bench.environ import cleanup, say, say_for, setup_environment, timings
from bench.freshness import bench_freshness, freshness_alone
from bench.growth import bench_growth
from bench.ingest import bench_ingest
from bench.insights import bench_insights
from bench.marts import bench_marts
from bench.scale import bench_scale, bench_scale_alone
from bench.sensor import bench_sensor
from common.db import ensure_database, ensure_redis
from common.redis_keys import HotKeys
from common.settings import get_settings
from ingestion.events import load_events
from ingestion.generator import generate
from orchestration.runs import run_materialize
from warehouse.summary import HOT_METRIC_NAMES, read_daily_metrics

RESULTS = Path(__file__).resolve().parent / "results.json"


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def bench_generate(bucket: Path, users: int, days: int) -> tuple[dict, object]:
    seconds, dataset = _timed(
        lambda: generate(bucket, days=days, users=users, seed=2026, end_date=datetime.now(UTC).date())
    )
    return {
        "events": dataset.events_written,
        "files": len(dataset.files),
        "seconds": round(seconds, 2),
        "events_per_s": round(dataset.events_written / seconds),
    }, dataset


def bench_materialize(settings) -> dict:

    # The load already ran above; this measures the orchestrated whole: Dagster start, an incremental
    # load that finds nothing new, dbt build (models and tests) and the Redis push.
    seconds, ok = _timed(lambda: run_materialize(log_level="WARNING"))
    if not ok:
        raise SystemExit("materialize failed; run `analyticspro materialize` to see why")

    with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from analytics.fct_events")
        events = cursor.fetchone()[0]
    connection.close()
    return {"seconds": round(seconds, 2), "events_in_marts": events}


def _latencies(fn: Callable[[], object], n: int = 2000) -> tuple[float, float]:
    samples = timings(fn, n, unit=1e6)
    return statistics.median(samples), samples[int(0.99 * len(samples)) - 1]


def bench_hot_metrics(settings) -> dict:
    day = datetime.now(UTC).date()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = [HotKeys(settings.redis_key_prefix).metric(name, day) for name in HOT_METRIC_NAMES]
    assert all(v is not None for v in client.mget(keys)), "hot metrics missing from Redis"
    redis_p50, redis_p99 = _latencies(lambda: client.mget(keys))
    connection = psycopg2.connect(settings.database_url)
    pg_p50, pg_p99 = _latencies(lambda: read_daily_metrics(connection, day))

    def live_dau() -> None:  # what a dashboard without marts would run
        with connection.cursor() as cursor:
            cursor.execute(
                "select count(distinct person_id) from analytics.fct_events where event_date = %s and is_activity",
                (day,),
            )
            cursor.fetchone()

    live_p50, _ = _latencies(live_dau, n=100)
    connection.close()
    return {
        "redis_read_p50_us": round(redis_p50, 1),
        "redis_read_p99_us": round(redis_p99, 1),
        "postgres_read_p50_us": round(pg_p50, 1),
        "postgres_read_p99_us": round(pg_p99, 1),
        "live_dau_from_fct_events_p50_us": round(live_p50, 1),
        "redis_speedup_vs_mart_p50": round(pg_p50 / redis_p50, 2),
        "redis_speedup_vs_live_p50": round(live_p50 / redis_p50, 1),
    }


# benchmarks that run on their own (their own dataset, if any): BENCH_ONLY=name
def bench_marts_and_dashboard(settings, root: Path, scale: bool) -> dict[str, dict]:
    """The marts benchmark (10M events over 90 days: full build, a new hour, funnels), then over its marts the
    dashboard benchmark and, with `scale`, the Spark comparison; figures by benchmark."""
    results: dict[str, dict] = {}
    marts_events = int(os.environ.get("BENCH_MARTS_EVENTS", "10000000"))
    marts_days = int(os.environ.get("BENCH_MARTS_DAYS", "90"))
    say(f"marts: {marts_events:,} events over {marts_days} days, full build then one new hour")

    def then(marts_settings) -> None:
        say("dashboard: the API over the marts of those events, 50 clients, then query-builder questions")
        try:
            results["dashboard"] = bench_dashboard(marts_settings, say)
        except (Exception, SystemExit) as exc:  # keep the other figures of a 40-minute run
            say(f"dashboard benchmark failed: {exc}")
            results["dashboard"] = {"error": str(exc)[:500]}
        if scale:
            say("scale: the same events built in full on PostgreSQL and on Spark (2 cores, 1 core)")
            results["scale"] = bench_scale(marts_settings, root / "scale", say)

    results["marts"] = bench_marts(settings, marts_events, marts_days, then=then)
    return results


def _marts_alone() -> dict[str, dict]:
    root = Path(tempfile.mkdtemp(prefix="analyticspro-bench-"))
    try:
        return bench_marts_and_dashboard(get_settings(), root, scale=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _insights() -> dict:
    return bench_insights(
        int(os.environ.get("BENCH_MARTS_EVENTS", "10000000")), int(os.environ.get("BENCH_MARTS_DAYS", "90"))
    )


# BENCH_ONLY: benchmarks that make their own data, each giving figures by benchmark
INDEPENDENT: dict[str, Callable[[], dict[str, dict]]] = {
    "collector": lambda: {"collector": bench_collector(say)},
    "scale": lambda: {"scale": bench_scale_alone(say)},
    "marts": _marts_alone,  # and the dashboard benchmark over its marts
    "insights": lambda: {"insights": _insights()},
    "sensor": lambda: {"sensor": bench_sensor(say_for("sensor"))},
    "ingest": lambda: {"ingest": bench_ingest(get_settings().database_url, say=say)},
    "growth": lambda: {"growth": bench_growth(say_for("growth"))},
    "freshness": lambda: {"freshness": freshness_alone(say_for("freshness"))},
}


def main() -> int:
    warnings.filterwarnings("ignore", message=r"sqlglot\[rs\] is deprecated")
    only = [name.strip() for name in os.environ.get("BENCH_ONLY", "").split(",") if name.strip()]
    if only:
        return run_only(only)
    users = int(os.environ.get("BENCH_USERS", "20000"))
    days = int(os.environ.get("BENCH_DAYS", "30"))
    root = Path(tempfile.mkdtemp(prefix="analyticspro-bench-"))
    setup_environment(root)

    settings = get_settings()
    ensure_database(settings)
    ensure_redis(settings)
    results: dict[str, dict] = {}
    try:
        say("collector: /v1/batch requests of 100 events at rising concurrency (wrk on loopback)")
        results["collector"] = bench_collector(say)
        say(f"generate: {days} days, {users:,} visitors")
        results["generate"], dataset = bench_generate(Path(settings.events_bucket_url), users, days)
        say(f"loading the {dataset.events_written:,} generated events for the next two benchmarks")
        load_events(progress=False, say=say)
        say("materialize: the whole job through Dagster")
        results["materialize"] = bench_materialize(settings)
        say("hot_metrics: dashboard reads, Redis against PostgreSQL")
        results["hot_metrics"] = bench_hot_metrics(settings)
        say("freshness: a new batch file in the bucket -> Redis, with `dagster dev` running")
        results["freshness"] = bench_freshness(settings, say)
        say("sensor: one bucket sensor tick with 100,000 objects loaded, in a folder and on S3 (moto)")
        results["sensor"] = bench_sensor(say_for("sensor"))
        results["ingest"] = bench_ingest(settings.database_url, say=say)

        results.update(bench_marts_and_dashboard(settings, root, scale=True))
        say("insights: ad-hoc questions over the same 10M events, answered by the insights engine")
        results["insights"] = _insights()
        say("growth: a full build and a new hour over three lengths of history, the same hourly volume")
        results["growth"] = bench_growth(say_for("growth"))
    finally:
        cleanup(settings, root)

    write_results(results)
    return 0


def run_only(names: list[str]) -> int:
    """`BENCH_ONLY=collector make bench`: run benchmarks that make their own data, merge them into results.json."""
    unknown = [name for name in names if name not in INDEPENDENT]
    if unknown:
        raise SystemExit(
            f"BENCH_ONLY can select {', '.join(INDEPENDENT)}; {', '.join(unknown)} share the generated dataset: run "
            f"`make bench` for them"
        )

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    shown = []
    for name in names:
        figures = INDEPENDENT[name]()
        results.update(figures)
        shown += list(figures)
    write_results(results, shown=shown)
    return 0


def write_results(results: dict[str, dict], shown: list[str] | None = None) -> None:
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    results = {name: figures for name, figures in results.items() if shown is None or name in shown}
    width = max(len(f"{b}.{f}") for b, figures in results.items() for f in figures)
    print(f"\n{'benchmark.figure':<{width}}  value")
    for benchmark, figures in results.items():
        for figure, value in figures.items():
            text = f"{value:,}" if isinstance(value, int | float) else value
            print(f"{benchmark + '.' + figure:<{width}}  {text}")
    print(f"\nwritten to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
