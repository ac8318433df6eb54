"""The ingestion benchmark (part of `make bench`; alone: `python -m bench.ingest`).

It generates BENCH_INGEST_EVENTS (default 1,000,000) events as gzipped batch files, then, in one run:
- **pipeline**: `analyticspro load` of the folder into a fresh database (validation, enrichment, dedup,
  dlt, insert-only merge and the raw indexes), in a process of its own so its peak memory is measured;
- **copy**: the same lines loaded with a plain psycopg `COPY` into a typed table with jsonb columns (each
  line parsed with orjson, no validation) -- measured before and after the pipeline, and averaged,
  because this machine is noisy;
- **memory**: the pipeline's peak resident memory for a tenth of the events and for all of them.

Figures go to bench/results.json under `ingest`: pipeline_events_per_s, copy_events_per_s, ratio (target
at least 0.5), and the memory figures.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import orjson
import psycopg2

from common.db import drop_database, ensure_database
from common.settings import get_settings
from ingestion.generator import generate

PROJECT = Path(__file__).resolve().parent.parent

TYPED_TABLE = """
create table {table} (
    message_id text, type text, event text, name text, user_id text, anonymous_id text,
    "timestamp" timestamptz, sent_at timestamptz, received_at timestamptz,
    properties jsonb, traits jsonb, context jsonb
)"""


def _json(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def copy_baseline(database_url: str, files: list[Path], table: str = "public.bench_copy_baseline") -> tuple[float, int]:
    """Plain psycopg COPY of every line, parsed into typed columns and jsonb: (seconds, rows)."""
    connection = psycopg2.connect(database_url)
    with connection, connection.cursor() as cursor:
        cursor.execute(f"drop table if exists {table}")
        cursor.execute(TYPED_TABLE.format(table=table))
    rows = 0
    started = time.perf_counter()
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush(cursor) -> None:
        buffer.seek(0)
        cursor.copy_expert(f"copy {table} from stdin with (format csv)", buffer)
        buffer.seek(0)
        buffer.truncate()

    with connection, connection.cursor() as cursor:
        for path in files:
            with gzip.open(path, "rb") as handle:
                for line in handle:
                    e = orjson.loads(line)
                    writer.writerow(
                        (
                            e["messageId"], e["type"], e.get("event"), e.get("name"), e.get("userId"),
                            e.get("anonymousId"), e.get("timestamp"), e.get("sentAt"), e.get("receivedAt"),
                            _json(e.get("properties")), _json(e.get("traits")), _json(e.get("context")),
                        )
                    )  # fmt: skip
                    rows += 1
            if buffer.tell() > 32 * 1024 * 1024:
                flush(cursor)
        flush(cursor)
    seconds = time.perf_counter() - started
    with connection, connection.cursor() as cursor:
        cursor.execute(f"drop table {table}")
    connection.close()
    return seconds, rows


# Peak memory is VmHWM, which exec resets (ru_maxrss would report the forking parent's size).
PIPELINE_CHILD = """
import json, sys, warnings
warnings.filterwarnings("ignore")
from ingestion.events import load_events
summary = load_events(sys.argv[1], progress=False, say=lambda message: print(message, file=sys.stderr, flush=True))
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({
    "lines": summary.lines_read, "stored": summary.stored, "seconds": summary.seconds, "peak_rss_mb": hwm / 1024,
}))
"""


def checkpoint(database_url: str) -> None:
    """Flush the previous step's writes first, so one measurement does not pay for another's checkpoint."""
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("checkpoint")
    connection.close()


def run_pipeline(folder: Path, database_url: str, pipelines_dir: Path) -> dict:
    """`load_events` over `folder` into a fresh database, in a child process: its figures and peak memory."""
    env = {**os.environ, "DATABASE_URL": database_url, "DLT_PIPELINES_DIR": str(pipelines_dir)}
    os.environ["DATABASE_URL"] = database_url
    settings = get_settings()
    drop_database(settings)
    ensure_database(settings)
    try:
        done = subprocess.run(
            [sys.executable, "-c", PIPELINE_CHILD, str(folder)],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the pipeline failed:\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        drop_database(settings)


def _generate(folder: Path, events: int) -> list[Path]:

    # about 8 events per visitor over 30 days with this generator
    dataset = generate(folder, days=30, users=max(100, events // 8), seed=11, end_date=date(2026, 11, 20))
    return dataset.files


def bench_ingest(database_url: str, say: Callable[[str], None] = print) -> dict:
    events = int(os.environ.get("BENCH_INGEST_EVENTS", "1000000"))
    base = database_url.rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="analyticspro-bench-ingest-") as tmp:
        root = Path(tmp)
        say(f"ingest: generating {events:,} and {events // 10:,} events")
        files = _generate(root / "full", events)
        small = root / "tenth"
        _generate(small, events // 10)
        copy_db = f"{base}/analyticspro_bench_copy_{os.getpid()}"

        saved = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = copy_db
        ensure_database(get_settings())
        try:
            say("ingest: psycopg COPY baseline")
            checkpoint(copy_db)
            copy_before, lines = copy_baseline(copy_db, files)
            say(f"ingest: the pipeline over {lines:,} lines")
            checkpoint(copy_db)
            full = run_pipeline(root / "full", f"{base}/analyticspro_bench_pipe_{os.getpid()}", root / "dlt1")
            say("ingest: psycopg COPY baseline again")
            checkpoint(copy_db)
            copy_after, _ = copy_baseline(copy_db, files)
            say("ingest: the pipeline over a tenth of the events (memory)")
            tenth = run_pipeline(small, f"{base}/analyticspro_bench_pipe_{os.getpid()}", root / "dlt2")
        finally:
            os.environ["DATABASE_URL"] = copy_db
            drop_database(get_settings())
            if saved is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = saved
    copy_seconds = (copy_before + copy_after) / 2
    pipeline_rate = full["lines"] / full["seconds"]
    copy_rate = lines / copy_seconds
    return {
        "events": lines,
        "pipeline_s": round(full["seconds"], 2),
        "pipeline_events_per_s": round(pipeline_rate),
        "copy_s": round(copy_seconds, 2),
        "copy_events_per_s": round(copy_rate),
        "ratio": round(pipeline_rate / copy_rate, 3),
        "peak_rss_mb_tenth": round(tenth["peak_rss_mb"]),
        "peak_rss_mb_full": round(full["peak_rss_mb"]),
        "memory_ratio_for_10x_events": round(full["peak_rss_mb"] / tenth["peak_rss_mb"], 2),
    }


if __name__ == "__main__":
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/analytics")
    print(json.dumps(bench_ingest(url), indent=2))
