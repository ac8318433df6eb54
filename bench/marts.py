"""The marts benchmark: a full dbt build over BENCH_MARTS_EVENTS (default 10M) generated events, then
one new hour of events and the incremental build; the default funnel's mart build; an ad-hoc 4-step
funnel query in PostgreSQL and the same query in DuckDB over the same rows exported to Parquet.

The raw rows are bulk-copied into raw.events (validated by the loader's own validate_event) instead
of going through dlt: the ingest benchmark measures the loader; this one measures the marts. The
dataset is the generator's (over BENCH_MARTS_DAYS days, default 90), ending at 15:00 UTC on its last
day; the held-back "new hour" is everything received from 14:00 to 15:00 (late mobile events for
earlier days included). BENCH_MARTS_KEEP=1 keeps the benchmark's database afterwards, for profiling.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import psycopg2

from bench.environ import median_ms, say_for, setup_environment
from common.settings import get_settings
from ingestion.events import load_events
from ingestion.generator import iter_events
from ingestion.pipeline import ensure_raw_indexes, events_pipeline
from ingestion.validation import validate_event
from orchestration.defs.transform.project import DBT_PROJECT_DIR, dbt_executable
from testing.db import own_warehouse

RAW_COLUMNS = [
    "message_id", "type", "event", "name", "user_id", "anonymous_id", "timestamp", "sent_at", "received_at",
    "properties", "traits", "context", "source", "source_position", "_dlt_load_id", "_dlt_id",
]  # fmt: skip

# The default funnel as an ad-hoc query: first entry, then the earliest next step within 14 x 24 h.
FUNNEL_SQL = """
with s1 as (
    select distinct on (person_id) person_id, event_at as entry_at
    from {steps} as e where step_index = 1 order by person_id, event_at
),
s2 as (
    select s1.person_id, s1.entry_at, min(e.event_at) as reached_at
    from s1 join {steps} e on e.person_id = s1.person_id and e.step_index = 2
        and e.event_at >= s1.entry_at and e.event_at <= s1.entry_at + interval '14 days'
    group by s1.person_id, s1.entry_at
),
s3 as (
    select s2.person_id, s2.entry_at, min(e.event_at) as reached_at
    from s2 join {steps} e on e.person_id = s2.person_id and e.step_index = 3
        and e.event_at >= s2.reached_at and e.event_at <= s2.entry_at + interval '14 days'
    group by s2.person_id, s2.entry_at
),
s4 as (
    select s3.person_id, min(e.event_at) as reached_at
    from s3 join {steps} e on e.person_id = s3.person_id and e.step_index = 4
        and e.event_at >= s3.reached_at and e.event_at <= s3.entry_at + interval '14 days'
    group by s3.person_id
)
select (select count(*) from s1), (select count(*) from s2), (select count(*) from s3), (select count(*) from s4)
"""

# The same steps straight from fct_events (no maintained table): what an arbitrary funnel costs.
FCT_STEPS = """(
    select person_id, event_at,
        case
            when event_type = 'page' and page_path = '/' then 1
            when event_name = 'user_signed_up' then 2
            when event_name = 'trial_started' then 3
            when event_name = 'purchase_completed' then 4
        end as step_index
    from analytics.fct_events
    where (event_name = 'page' and page_path = '/')
        or event_name in ('user_signed_up', 'trial_started', 'purchase_completed')
)"""


_say = say_for("marts")


def _dbt(*args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-8000:])
        raise SystemExit(f"dbt {' '.join(args)} failed (output above)")
    run_results = json.loads((DBT_PROJECT_DIR / "target" / "run_results.json").read_text())
    slowest = sorted(run_results["results"], key=lambda r: -r["execution_time"])[:6]
    _say(
        f"dbt {args[0]}: slowest "
        + ", ".join(f"{r['unique_id'].split('.')[-1]} {r['execution_time']:.1f}s" for r in slowest)
    )
    return seconds


def settle(database_url: str) -> float:
    """VACUUM ANALYZE, CHECKPOINT and sync the warehouse after a full build, before the new hour is measured: seconds.

    A deployment's next hour comes an hour after the last build, when autovacuum (on by default in PostgreSQL; this
    machine's CI configuration turns it off) has vacuumed and analyzed what the build wrote, and checkpoints have
    flushed it. Measured straight after a full build, the hour instead pays for flushing gigabytes of the build's
    dirty pages and for setting the hint bits of every row it reads first: a cost of the full build, which grows with
    the history, not of the hour.
    """
    started = time.perf_counter()
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("vacuum analyze")
            cursor.execute("checkpoint")
    finally:
        connection.close()
    os.sync()  # and what else the build left dirty in the kernel's cache (the checkpoint fsyncs only the tables)
    return time.perf_counter() - started


def _rows(events: Iterable[dict], load_id: str) -> Iterable[list]:
    for position, event in enumerate(events):
        row = validate_event(event)
        yield [
            row["message_id"], row["type"], row["event"], row["name"], row["user_id"], row["anonymous_id"],
            row["timestamp"].isoformat(), row["sent_at"] and row["sent_at"].isoformat(),
            row["received_at"] and row["received_at"].isoformat(),
            json.dumps(row["properties"]) if row["properties"] is not None else None,
            json.dumps(row["traits"]) if row["traits"] is not None else None,
            json.dumps(row["context"]) if row["context"] is not None else None,
            "bench", f"event {position}", load_id, uuid.uuid4().hex[:14],
        ]  # fmt: skip


def copy_events(connection, events: Iterable[dict], progress: Callable[[int], None] | None = None) -> int:
    """COPY events into raw.events as one load, in 100k-row chunks (CSV, NULL as unquoted empty), then record the
    load in raw._dlt_loads as dlt does once a load's rows are in: the incremental models read the loads recorded
    there that they have not read yet."""
    load_id = f"{time.time():.6f}"
    total = 0
    rows = _rows(events, load_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = ", ".join(f'"{c}"' for c in RAW_COLUMNS)
    statement = f"copy raw.events ({columns}) from stdin with (format csv)"

    def flush() -> None:
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.copy_expert(statement, buffer)
        connection.commit()
        buffer.seek(0)
        buffer.truncate()

    for row in rows:
        writer.writerow(row)
        total += 1
        if total % 100_000 == 0:
            flush()
            if progress:
                progress(total)
    flush()
    with connection.cursor() as cursor:
        cursor.execute(
            "insert into raw._dlt_loads (load_id, schema_name, status, inserted_at, schema_version_hash) "
            "select %s, schema_name, 0, now(), schema_version_hash from raw._dlt_loads order by load_id desc limit 1",
            (load_id,),
        )
    connection.commit()
    return total


def _create_raw_table(settings, root: Path, sample: list[dict]) -> None:
    """Let the real loader create raw.events (and its dlt state) from a few events."""
    path = Path(settings.events_bucket_url) / "events" / "seed" / "seed.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in sample).encode()))
    load_events(progress=False)


def bench_marts(base_settings, target_events: int, days: int, then: Callable[[object], None] | None = None) -> dict:
    """Runs in a database, bucket and dlt state of its own (removed afterwards); `then(settings)` runs against the
    built marts before they are dropped (the dashboard benchmark)."""
    with own_warehouse("marts", keep=bool(os.environ.get("BENCH_MARTS_KEEP"))) as (settings, root):
        figures = _bench_marts(settings, root, target_events, days)
        if then is not None:
            then(settings)
        return figures


def load_raw_events(
    settings, root: Path, target_events: int, days: int, held_back_hours: int = 1
) -> tuple[int, list[dict], object]:
    """Generate `target_events` events over `days` days ending at 15:00 UTC yesterday and bulk-copy them into
    raw.events (indexed and analyzed); returns how many were copied, the held-back last `held_back_hours` hours (not
    copied; in order of receipt) and the open connection."""
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    now = datetime.combine(last_day, clock(15), UTC)
    new_hour = now - timedelta(hours=held_back_hours)
    held_back: list[dict] = []
    generated = 0

    def base_events() -> Iterable[dict]:
        nonlocal generated
        users = max(1000, target_events // 4)  # more visitors than needed: the loop stops at the target
        for event in iter_events(days=days, users=users, seed=7, end_date=last_day):
            received = datetime.fromisoformat(event["receivedAt"].replace("Z", "+00:00"))
            if received >= now:
                continue
            generated += 1
            if received >= new_hour:
                held_back.append(event)
                continue
            yield event
            if generated >= target_events:
                return

    events = base_events()
    sample = [next(events) for _ in range(100)]
    _create_raw_table(settings, root, sample)
    connection = psycopg2.connect(settings.database_url)
    started = time.perf_counter()
    copied = copy_events(
        connection,
        events,
        progress=lambda n: (
            _say(f"generated and copied {n:,} events ({n / (time.perf_counter() - started):,.0f}/s)")
            if n % 1_000_000 == 0
            else None
        ),
    )
    ensure_raw_indexes(events_pipeline(settings))
    with connection.cursor() as cursor:
        cursor.execute("analyze raw.events")
    connection.commit()
    base = copied + len(sample)
    _say(f"{base:,} events in raw.events ({time.perf_counter() - started:.0f}s)")
    held_back.sort(key=lambda event: event["receivedAt"])
    return base, held_back, connection


def _bench_marts(settings, root: Path, target_events: int, days: int) -> dict:
    import duckdb  # optional: the dev group's embedded engine, only for this comparison figure

    base, held_back, connection = load_raw_events(settings, root, target_events, days)
    _say("full dbt build")

    full_s = _dbt("run")
    tests_s = _dbt("test")
    settle_s = settle(settings.database_url)
    _say(
        f"full build {full_s:.1f}s (tests {tests_s:.1f}s, then VACUUM ANALYZE, CHECKPOINT and sync {settle_s:.0f}s); "
        f"adding one new hour: {len(held_back):,} events"
    )
    copy_events(connection, held_back)
    ensure_raw_indexes(events_pipeline(settings))
    incremental_s = _dbt("run")
    # the tests of an hourly run: the rows the hour's build wrote (test_scope changed, as Dagster's runs for new data)
    incremental_tests_s = _dbt("test", "--vars", '{"test_scope": "changed"}')
    incremental_tests_all_s = _dbt("test")
    _say(
        f"incremental build {incremental_s:.1f}s (tests of the rows it wrote {incremental_tests_s:.1f}s, of every row "
        f"{incremental_tests_all_s:.1f}s)"
    )

    funnel_models = "int_funnel_events int_funnel_persons fct_funnel_steps fct_funnel_breakdown"
    funnel_build_s = _dbt("run", "--full-refresh", "--select", funnel_models)
    _say(f"default funnel marts rebuilt from scratch in {funnel_build_s:.1f}s; ad-hoc funnel queries")

    with connection.cursor() as cursor:
        cursor.execute("select count(*) from analytics.fct_events")
        in_marts = cursor.fetchone()[0]

    with connection.cursor() as cursor:  # the memory the dbt builds get (var work_mem), so sorts stay in RAM
        cursor.execute("set work_mem = '256MB'")

    def postgres_funnel(steps: str) -> tuple:
        with connection.cursor() as cursor:
            cursor.execute(FUNNEL_SQL.format(steps=steps))
            return cursor.fetchone()

    table_steps = (
        "(select person_id, step_index, event_at from intermediate.int_funnel_events where funnel_name = 'default')"
    )
    answer = postgres_funnel(table_steps)
    assert postgres_funnel(FCT_STEPS) == answer, "the step table and fct_events disagree"
    adhoc_ms = median_ms(lambda: postgres_funnel(table_steps), warm=True)
    adhoc_fct_ms = median_ms(lambda: postgres_funnel(FCT_STEPS), runs=1, warm=True)

    # The same rows in Parquet, and the same query in DuckDB: the funnel's step rows, and all events.
    duck = duckdb.connect()

    def to_parquet(query: str, name: str, columns: str) -> Path:
        csv_path, parquet = root / f"{name}.csv", root / f"{name}.parquet"
        with connection.cursor() as cursor, csv_path.open("w") as handle:
            cursor.copy_expert(f"copy {query} to stdout with (format csv, header)", handle)
        duck.execute(f"copy (select {columns} from read_csv_auto('{csv_path}')) to '{parquet}' (format parquet)")
        csv_path.unlink()
        return parquet

    steps_parquet = to_parquet(
        table_steps, "funnel_steps", "person_id, step_index::integer as step_index, event_at::timestamptz as event_at"
    )
    events_parquet = to_parquet(
        "(select person_id, event_type, event_name, page_path, event_at from analytics.fct_events)",
        "events",
        "person_id, event_type, event_name, page_path, event_at::timestamptz as event_at",
    )
    duck_steps = FUNNEL_SQL.format(steps=f"read_parquet('{steps_parquet}')")
    duck_events = FUNNEL_SQL.format(
        steps=FCT_STEPS.replace("analytics.fct_events", f"read_parquet('{events_parquet}')")
    )
    for duck_sql in (duck_steps, duck_events):
        duck_answer = duck.execute(duck_sql).fetchone()
        assert tuple(duck_answer) == tuple(answer), f"DuckDB {duck_answer} != PostgreSQL {answer}"
    duckdb_ms = median_ms(lambda: duck.execute(duck_events).fetchone(), warm=True)
    duckdb_steps_ms = median_ms(lambda: duck.execute(duck_steps).fetchone(), warm=True)
    with connection.cursor() as cursor:
        cursor.execute(f"select count(*) from {table_steps} as steps")
        step_rows = cursor.fetchone()[0]
    connection.close()
    return {
        "events": in_marts,
        "days": days,
        "full_build_s": round(full_s, 1),
        "full_tests_s": round(tests_s, 1),
        "new_hour_events": len(held_back),
        "incremental_build_s": round(incremental_s, 1),
        "incremental_tests_s": round(incremental_tests_s, 1),
        "incremental_tests_all_rows_s": round(incremental_tests_all_s, 1),
        "incremental_ratio": round(incremental_s / full_s, 3),
        "funnel_mart_build_s": round(funnel_build_s, 1),
        "funnel_step_rows": step_rows,
        "funnel_adhoc_ms": round(adhoc_ms, 1),
        "funnel_adhoc_fct_events_ms": round(adhoc_fct_ms, 1),
        "funnel_duckdb_ms": round(duckdb_ms, 1),
        "funnel_adhoc_vs_duckdb": round(adhoc_ms / duckdb_ms, 2),
        "funnel_duckdb_step_rows_ms": round(duckdb_steps_ms, 1),
        "funnel_adhoc_vs_duckdb_step_rows": round(adhoc_ms / duckdb_steps_ms, 2),
        "funnel_persons_by_step": list(answer),
    }


def main() -> None:
    """`python -m bench.marts`: this benchmark alone (prints its figures, writes nothing)."""
    root = Path(tempfile.mkdtemp(prefix="analyticspro-bench-"))
    setup_environment(root)

    events = int(os.environ.get("BENCH_MARTS_EVENTS", "10000000"))
    try:
        result = bench_marts(get_settings(), events, int(os.environ.get("BENCH_MARTS_DAYS", "90")))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
