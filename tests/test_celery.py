"""Distributed Dagster: a materialization whose steps run on two Celery worker processes (`analyticspro worker`),
with Redis as the broker, gives the same marts as the independent pandas computation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from common.settings import get_settings
from ingestion.generator import generate
from orchestration.runs import run_materialize
from testing import reference_marts as ref
from testing.db import rows
from testing.reference import compute

TODAY = datetime.now(UTC).date()
WORKERS = ("ap-worker-1", "ap-worker-2")


def _wait_ready(logs: list[Path], processes: list[subprocess.Popen], timeout: float = 90.0) -> None:
    """Until every worker logged `ready` (it has connected to the broker and consumes the queue)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process, log in zip(processes, logs, strict=True):
            if process.poll() is not None:
                pytest.fail(f"worker exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if all(" ready." in log.read_text() for log in logs):
            return
        time.sleep(0.5)
    pytest.fail("workers not ready in time:\n" + "\n".join(log.read_text()[-2000:] for log in logs))


@pytest.fixture
def celery_workers(own_database, settings, tmp_path, monkeypatch):
    """Two worker processes on a queue of this test's own; stopped, and the queue's Redis keys deleted, after."""
    queue = f"analyticspro-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DAGSTER_CELERY_QUEUE", queue)
    monkeypatch.setenv("DAGSTER_EXECUTOR", "celery")
    monkeypatch.setenv("EVENTS_BUCKET_URL", str(tmp_path / "bucket"))
    # its hot metrics are not the session's (today's numbers other tests check)
    monkeypatch.setenv("REDIS_KEY_PREFIX", f"{settings.redis_key_prefix}:{tmp_path.name}")
    env = dict(os.environ)
    processes, logs = [], []
    analyticspro = str(Path(sys.executable).parent / "analyticspro")
    for name in WORKERS:
        log = tmp_path / f"{name}.log"
        log.write_text("")
        logs.append(log)
        with log.open("w") as handle:
            processes.append(
                subprocess.Popen(
                    [analyticspro, "worker", "--name", name, "--concurrency", "1"],
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        _wait_ready(logs, processes)
        yield dict(zip(WORKERS, logs, strict=True))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # warm shutdown: Celery finishes what it runs, then exits
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        client = redis.Redis.from_url(settings.redis_url)
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        # the steps' results (the result backend is the broker's Redis): those of this test's tasks only
        tasks = {task for log in logs for task in re.findall(r"Task execute_plan\[([0-9a-f-]+)\]", log.read_text())}
        if tasks:
            client.delete(*(f"celery-task-meta-{task}" for task in tasks))


def test_materialize_on_two_celery_workers(celery_workers, tmp_path):
    bucket = tmp_path / "bucket"
    generate(bucket, days=21, users=300, seed=23, end_date=TODAY)  # three weeks: some people pay
    assert run_materialize(log_level="WARNING")

    # every step ran on a worker, and both workers took part
    ran = {}
    for name, log in celery_workers.items():
        text = log.read_text()
        assert "Traceback" not in text, text[-4000:]
        ran[name] = len(re.findall(r"Task execute_plan\[[0-9a-f-]+\] succeeded", text))
    assert all(count > 0 for count in ran.values()), ran
    assert sum(ran.values()) >= 3, ran  # load, dbt, hot metrics at least

    # the marts the workers built equal the independent pandas computation over the same files
    settings = get_settings()
    frame = ref.event_frame(compute(bucket).events)
    assert rows(settings, "select count(*) from analytics.fct_events")[0][0] == len(frame)
    users = ref.dim_users(frame)
    session_frame = ref.sessions(frame)
    daily = {
        (d, name): value
        for d, name, value in rows(settings, "select date, metric_name, value from analytics.daily_metrics")
    }
    assert daily == ref.daily_metrics(frame, session_frame, users)
    assert sum(v for (_, name), v in daily.items() if name == "signups") > 0
    session_rows = rows(
        settings,
        "select person_id, session_start, session_end, session_date, event_count, page_views, landing_page, "
        "referrer, utm_source, utm_medium, utm_campaign from analytics.fct_sessions",
    )
    plain = session_frame.astype(object).where(session_frame.notna(), None)
    assert sorted(session_rows) == sorted(tuple(r) for r in plain.itertuples(index=False))
    retention = rows(
        settings,
        "select cohort_grain, cohort_start, period_number, cohort_size, retained_persons, "
        "unbounded_retained_persons from analytics.fct_cohort_retention",
    )
    assert {(g, s, n): (size, kept, unbounded) for g, s, n, size, kept, unbounded in retention} == (
        ref.cohort_retention(frame, users)
    )
    mrr = rows(settings, "select person_id, month, mrr, previous_mrr, change_category from analytics.fct_mrr")
    assert mrr and {(p, m): (value, previous, category) for p, m, value, previous, category in mrr} == (
        ref.fct_mrr(frame)
    )
