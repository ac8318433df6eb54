"""Fault: PostgreSQL stops and starts again in the middle of `analyticspro materialize`. The step that lost its
connection retries with backoff and the run completes, with every event stored exactly once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import psycopg2
import pytest

from ingestion.generator import generate
from testing.reference import compute


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster serving port 5432, when this machine manages it with pg_ctlcluster."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    for line in subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout.splitlines():
        version, name, port, status, *_ = line.split()
        if port == "5432" and status == "online":
            return version, name
    return None


def _restart(cluster: tuple[str, str], down_seconds: float) -> None:
    version, name = cluster
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "stop", "-m", "fast"], check=True)
    time.sleep(down_seconds)
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"], check=True)


@pytest.mark.serial
@pytest.mark.skipif(_cluster() is None, reason="needs a local PostgreSQL cluster on 5432 managed by pg_ctlcluster")
def test_postgres_restart_during_a_run_retries_and_loses_nothing(own_database, tmp_path, settings):
    bucket = tmp_path / "bucket"
    generate(bucket, days=5, users=1200, seed=23, end_date=datetime.now(UTC).date())
    expected = compute(bucket)
    env = {
        **os.environ,
        "DATABASE_URL": own_database.database_url,
        "EVENTS_BUCKET_URL": str(bucket),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DLT_PIPELINES_DIR": str(tmp_path / "dlt"),
        "REDIS_KEY_PREFIX": f"{settings.redis_key_prefix}:fault",
        "INGEST_MAX_LINES": "4000",  # many small loads: the outage lands in the middle of one
        "RUN_RETRY_LIMIT": "6",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "materialize"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    restarted = threading.Event()

    def watch() -> None:
        for line in process.stdout:
            output.append(line)
            if not restarted.is_set() and "lines committed" in line:
                restarted.set()  # a load has committed: the next ones are in flight
                _restart(_cluster() or ("15", "main"), down_seconds=3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        code = process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
        watcher.join(timeout=30)
    log = "".join(output)
    assert restarted.is_set(), log[-3000:]
    assert code == 0, log[-5000:]
    assert "transient failure" in log, log[-5000:]  # a step did lose its connection and retried

    with psycopg2.connect(own_database.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*), count(distinct message_id) from raw.events")
        total, distinct = cursor.fetchone()
        cursor.execute("select message_id from raw.events")
        stored = {row[0] for row in cursor.fetchall()}
        cursor.execute("select count(*), count(distinct message_id) from analytics.fct_events")
        fct_total, fct_distinct = cursor.fetchone()
    connection.close()
    assert total == distinct == len(expected.events)
    assert stored == set(expected.events)
    assert fct_total == fct_distinct == len(expected.events)
