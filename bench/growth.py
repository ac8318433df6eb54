"""The growth benchmark: the same new hour built incrementally, and a full build, over three lengths of history
(BENCH_GROWTH_EVENTS, default 2.5M, 10M and 20M events; the largest generated over BENCH_GROWTH_PER_DAY, default
111,111 a day on average: 180 days). Incremental cost should follow the hour, not the history:
incremental_flatness = the largest history's incremental build / the smallest's.

One dataset is generated, for the largest history (the marts benchmark's generator and bulk copy); each smaller history
is its newest N events, copied into a database of its own, so every size ends at the same moment and takes the same
two held-back hours. Each size gets a full build, is settled (VACUUM ANALYZE and CHECKPOINT, bench.marts.settle: the
state a deployment's warehouse is in when its next hour comes), then takes the first hour (`first_hour_s`) and the
second (`incremental_s`). The second is a deployment's steady state, an hour after the previous hour's run; the first
comes straight after the full build and the settling, which read the whole database (at 20M events, about 30 GB:
more than this machine's memory). Beside each hour's seconds it records what the hour read (`*_pg_read_mb`,
`*_pg_read_s`: PostgreSQL's reads from outside its shared buffers and their time; `*_disk_read_mb`: the disk's reads;
`*_io_stall_s`: seconds some task stalled on I/O), to tell an hour that works more from one that waits on the disk.
`BENCH_ONLY=growth make bench` runs it alone (about an hour at the default sizes) and writes the plot docs/growth.svg.
For profiling, BENCH_GROWTH_KEEP keeps a copy of a size's database taken just before its measured incremental run
(`<database>_before_hour`: the first hour built, the second loaded, not built): `1` for every size, or a
comma-separated list of sizes (the 20M copy alone is about 30 GB).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg2

from bench.marts import RAW_COLUMNS, _create_raw_table, _dbt, copy_events, load_raw_events, settle
from bench.plot import line_chart
from ingestion.pipeline import ensure_raw_indexes, events_pipeline
from testing.db import own_warehouse

PLOT = Path(__file__).resolve().parent.parent / "docs" / "growth.svg"
KEEP = os.environ.get("BENCH_GROWTH_KEEP", "").strip()


def _keeps(size: int) -> bool:
    """Whether BENCH_GROWTH_KEEP asks for this size's before-hour copy (`1`: every size; else a list of sizes)."""
    if KEEP == "1":
        return True
    return size in {int(float(part)) for part in KEEP.split(",") if part.strip()}


def _sizes() -> list[int]:
    text = os.environ.get("BENCH_GROWTH_EVENTS", "2500000,10000000,20000000")
    sizes = sorted({int(float(part)) for part in text.split(",") if part.strip()})
    if len(sizes) < 2:
        raise SystemExit(f"BENCH_GROWTH_EVENTS needs two sizes or more (comma-separated), got {text!r}")
    return sizes


def _copy_history(source_url: str, target_url: str, since) -> int:
    """The raw rows at or after `since` from one database into another, their loads recorded in raw._dlt_loads."""
    columns = ", ".join(f'"{c}"' for c in RAW_COLUMNS)
    with tempfile.TemporaryFile() as buffer:  # gigabytes at the default sizes: on disk, not in memory
        with psycopg2.connect(source_url) as source, source.cursor() as cursor:
            query = cursor.mogrify(f'select {columns} from raw.events where "timestamp" >= %s', (since,)).decode()
            cursor.copy_expert(f"copy ({query}) to stdout", buffer)
        buffer.seek(0)
        with psycopg2.connect(target_url) as target, target.cursor() as cursor:
            cursor.copy_expert(f"copy raw.events ({columns}) from stdin", buffer)
            copied = cursor.rowcount
    with psycopg2.connect(target_url) as target, target.cursor() as cursor:
        # the copied rows keep their load ids: record those loads here too, as the loader would have
        cursor.execute(
            "insert into raw._dlt_loads (load_id, schema_name, status, inserted_at, schema_version_hash) "
            "select loads.load_id, latest.schema_name, 0, now(), latest.schema_version_hash "
            "from (select distinct _dlt_load_id as load_id from raw.events) as loads, "
            "(select * from raw._dlt_loads order by load_id desc limit 1) as latest "
            "where loads.load_id not in (select load_id from raw._dlt_loads)"
        )
        cursor.execute("analyze raw.events")
    return copied


def _copy_database(settings, name: str, say: Callable[[str], None]) -> None:
    """A copy of the database (CREATE DATABASE … TEMPLATE: no one else may be connected to it meanwhile)."""
    connection = psycopg2.connect(settings.database_url_for("postgres"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
                (settings.database_name,),
            )
            cursor.execute(f'drop database if exists "{name}"')
            cursor.execute(f'create database "{name}" template "{settings.database_name}"')
    finally:
        connection.close()
    say(f"kept a copy before the incremental run: {settings.database_url_for(name)}")


def _load_hour(settings, events: list[dict]) -> None:
    """Load an hour's events into raw.events, a load of their own."""
    connection = psycopg2.connect(settings.database_url)
    try:
        copy_events(connection, events)
    finally:
        connection.close()
    ensure_raw_indexes(events_pipeline(settings))


def _io_counters(database_url: str) -> dict[str, float]:
    """Cumulative read counters: PostgreSQL's for the database (blocks it read from outside its shared buffers: the
    kernel's cache or the disk, and the milliseconds those reads took; track_io_timing is on for the benchmark's
    databases) and the kernel's for the machine (kilobytes read from disk; seconds some task stalled on I/O, from
    /proc/pressure/io where the kernel has it)."""
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select blks_read, blk_read_time from pg_stat_database where datname = current_database()")
        blocks_read, read_ms = cursor.fetchone()
    connection.close()
    counters = {"blocks_read": float(blocks_read), "read_ms": float(read_ms)}
    vmstat = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines() if line.count(" ") == 1)
    counters["disk_read_kb"] = float(vmstat.get("pgpgin", 0))
    pressure = Path("/proc/pressure/io")
    if pressure.exists():  # "some avg10=… total=<microseconds>"
        some = pressure.read_text().splitlines()[0]
        counters["io_stall_s"] = int(some.rsplit("total=", 1)[1]) / 1e6
    return counters


def _reads_by_table(database_url: str) -> dict[int, tuple[str, int]]:
    """By table (relid: a table a run replaces is a new one), its name and the blocks it read from outside
    PostgreSQL's buffers so far: heap, indexes and TOAST (pg_statio)."""
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "select relid, schemaname || '.' || relname, coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0) "
            "+ coalesce(toast_blks_read, 0) + coalesce(tidx_blks_read, 0) from pg_statio_user_tables"
        )
        found = {relid: (name, blocks) for relid, name, blocks in cursor.fetchall()}
    connection.close()
    return found


def _measured_run(settings, say: Callable[[str], None]) -> tuple[float, dict[str, float]]:
    """One incremental dbt run: its seconds and what it read (the counters' differences, _io_counters); says which
    tables it read most from outside PostgreSQL's buffers (a day partition of fct_events counts as fct_events)."""
    before, tables_before = _io_counters(settings.database_url), _reads_by_table(settings.database_url)
    seconds = _dbt("run")
    after, tables_after = _io_counters(settings.database_url), _reads_by_table(settings.database_url)
    by_table: dict[str, int] = {}
    for relid, (table, blocks) in tables_after.items():
        name = table.split("_p20")[0] if "fct_events_p" in table else table
        by_table[name] = by_table.get(name, 0) + blocks - tables_before.get(relid, (table, 0))[1]
    most = sorted(by_table.items(), key=lambda item: -item[1])[:8]
    say("read most: " + ", ".join(f"{table} {blocks * 8 / 1024:,.0f} MB" for table, blocks in most if blocks))
    return seconds, {key: after[key] - before[key] for key in after if key in before}


def _io_line(io: dict[str, float]) -> str:
    text = (
        f"PostgreSQL read {io['blocks_read'] * 8 / 1024:,.0f} MB from outside its buffers in "
        f"{io['read_ms'] / 1000:.1f} s; the disk gave {io['disk_read_kb'] / 1024:,.0f} MB"
    )
    if "io_stall_s" in io:
        text += f"; tasks stalled on I/O {io['io_stall_s']:.1f} s"
    return text


def _build(
    settings, hours: tuple[list[dict], list[dict]], say: Callable[[str], None], keep: bool
) -> tuple[float, float, float, dict[str, float], dict[str, float]]:
    """A full dbt run, the warehouse settled (bench.marts.settle: as a deployment's would be an hour later), then the
    first held-back hour and the second, each loaded and built incrementally: the three runs' seconds and the two
    hours' reads (_io_counters)."""
    _track_io_timing(settings)
    full_s = _dbt("run")
    settle_s = settle(settings.database_url)
    say(f"full build {full_s:.1f} s; VACUUM ANALYZE, CHECKPOINT and sync {settle_s:.0f} s")
    _load_hour(settings, hours[0])
    first_hour_s, first_io = _measured_run(settings, say)
    say(f"the first hour: {_io_line(first_io)}")
    _load_hour(settings, hours[1])
    if keep:  # the second hour loaded, not built
        _copy_database(settings, f"{settings.database_name}_before_hour", say)
    incremental_s, second_io = _measured_run(settings, say)
    say(f"the second hour: {_io_line(second_io)}")
    say(
        f"full build {full_s:.1f} s; the first hour after it ({len(hours[0]):,} events) {first_hour_s:.1f} s, "
        f"the next ({len(hours[1]):,} events) {incremental_s:.1f} s"
    )
    return full_s, first_hour_s, incremental_s, first_io, second_io


def _track_io_timing(settings) -> None:
    """Time PostgreSQL's reads in the benchmark's own database (pg_stat_database.blk_read_time), for new sessions."""
    connection = psycopg2.connect(settings.database_url_for("postgres"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'alter database "{settings.database_name}" set track_io_timing = on')
    finally:
        connection.close()


def bench_growth(say: Callable[[str], None]) -> dict:
    sizes = _sizes()
    per_day = int(os.environ.get("BENCH_GROWTH_PER_DAY", "111111"))
    largest = sizes[-1]
    days = math.ceil(largest / per_day)
    say(f"sizes {', '.join(f'{n:,}' for n in sizes)} events at {per_day:,} a day; generating {days} days")
    measured: dict[int, tuple] = {}
    with own_warehouse("growth") as (settings, root):
        base, held_back, connection = load_raw_events(settings, root, largest, days, held_back_hours=2)
        second_hour = max(event["receivedAt"] for event in held_back)[:13]
        hours = (
            [event for event in held_back if event["receivedAt"][:13] < second_hour],
            [event for event in held_back if event["receivedAt"][:13] == second_hour],
        )
        with connection.cursor() as cursor:
            cursor.execute('select max("timestamp") from raw.events')
            (last,) = cursor.fetchone()
            # each smaller history is the newest `size` events (the generator's volume grows over time, so a
            # fixed number of days would not hold `size` events)
            starts = {}
            for size in sizes[:-1]:
                cursor.execute(
                    'select "timestamp" from raw.events order by "timestamp" desc offset %s limit 1', (size,)
                )
                starts[size] = cursor.fetchone()[0]
        connection.close()
        for size in sizes[:-1]:
            since = starts[size]
            with own_warehouse(f"growth_{size}") as (small, small_root):
                # the loader's raw.events and dlt state, from a few of the hour's events (removed: the hour comes later)
                _create_raw_table(small, small_root, held_back[:100])
                with psycopg2.connect(small.database_url) as seeded, seeded.cursor() as cursor:
                    cursor.execute("delete from raw.events")
                copied = _copy_history(settings.database_url, small.database_url, since)
                ensure_raw_indexes(events_pipeline(small))
                say(f"{copied:,} events ({(last - since) / timedelta(days=1):.1f} days of history)")
                measured[size] = (copied, *_build(small, hours, say, _keeps(size)))
        say(f"{base:,} events ({days} days of history)")
        measured[largest] = (base, *_build(settings, hours, say, _keeps(largest)))

    events = [measured[size][0] for size in sizes]
    full = [round(measured[size][1], 1) for size in sizes]
    first_hour = [round(measured[size][2], 1) for size in sizes]
    incremental = [round(measured[size][3], 1) for size in sizes]
    PLOT.write_text(
        line_chart(
            "Build time as history grows (same hourly volume)",
            "events in history (millions)",
            "seconds",
            [n / 1e6 for n in events],
            {
                "full build": full,
                "a new hour, incremental": incremental,
                "hour after a full build": first_hour,
            },
        )
    )
    say(f"plot written to {PLOT}")

    def per_size(hour: int, key: str, scale: float) -> list[float]:
        return [round(measured[size][hour][key] * scale, 1) if key in measured[size][hour] else None for size in sizes]

    return {
        "events": events,
        "full_build_s": full,
        "incremental_s": incremental,
        "hour_events": len(hours[1]),
        "incremental_flatness": round(incremental[-1] / incremental[0], 2),
        "first_hour_s": first_hour,
        "first_hour_events": len(hours[0]),
        "first_hour_flatness": round(first_hour[-1] / first_hour[0], 2),
        "full_build_growth": round(full[-1] / full[0], 2),
        "events_growth": round(events[-1] / events[0], 2),
        # what each hour read (_io_counters): PostgreSQL's reads from outside its buffers, in MB and in seconds,
        # the disk's reads (MB, the whole machine) and the seconds tasks stalled on I/O
        "incremental_pg_read_mb": per_size(5, "blocks_read", 8 / 1024),
        "incremental_pg_read_s": per_size(5, "read_ms", 1 / 1000),
        "incremental_disk_read_mb": per_size(5, "disk_read_kb", 1 / 1024),
        "incremental_io_stall_s": per_size(5, "io_stall_s", 1),
        "first_hour_pg_read_mb": per_size(4, "blocks_read", 8 / 1024),
        "first_hour_pg_read_s": per_size(4, "read_ms", 1 / 1000),
        "first_hour_disk_read_mb": per_size(4, "disk_read_kb", 1 / 1024),
        "first_hour_io_stall_s": per_size(4, "io_stall_s", 1),
    }
