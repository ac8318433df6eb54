"""Freshness: how long from an event put in the bucket to its number in Redis, with `dagster dev` running.

`dagster dev` (webserver and daemon) runs on a free port against the benchmark's database, bucket and Redis
prefix; its bucket sensor starts a realtime_load run when new objects arrive. Each sample writes one new batch
file of SAMPLE_EVENTS page views dated now into the bucket and polls Redis every 50 ms until today's `events`
has grown by that many. The figure is the median of the samples (and the worst).

    python -m bench.freshness        # alone, in a database and prefix of its own
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench.environ import cleanup, say, setup_environment
from common.db import ensure_database
from common.redis_keys import HotKeys
from common.settings import PROJECT_ROOT, Settings, get_settings
from orchestration.instance import prepare_dagster_home
from testing.dashboard_server import free_port

SAMPLES = int(os.environ.get("BENCH_FRESHNESS_SAMPLES", "5"))
SAMPLE_EVENTS = 50
TIMEOUT_S = 240.0


def _write_batch(bucket: Path, sample: int) -> None:
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    folder = bucket / "events" / f"{now:%Y/%m/%d/%H}"
    folder.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    lines = [
        json.dumps(
            {
                "type": "page",
                "messageId": f"fresh-{run}-{i}",
                "anonymousId": f"fresh-visitor-{run}-{i}",
                "timestamp": stamp,
                "properties": {"path": "/freshness"},
            }
        )
        for i in range(SAMPLE_EVENTS)
    ]
    temporary = folder / f".freshness-{sample}-{run}.tmp"
    temporary.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    temporary.rename(folder / f"freshness-{sample}-{run}.jsonl.gz")  # appears whole, as an S3 PUT does


def _events_today(client: redis.Redis, keys: HotKeys) -> int:
    value = client.get(keys.metric("events", datetime.now(UTC).date()))
    return int(value) if value is not None else -1


def _wait(predicate: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen) -> float:
    started = time.perf_counter()
    while not predicate():
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode} while waiting for {what}")
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - started


def bench_freshness(settings: Settings, say: Callable[[str], None] = print) -> dict:
    home = prepare_dagster_home()
    bucket = Path(settings.events_bucket_url)
    bucket.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = HotKeys(settings.redis_key_prefix)

    port = free_port()
    log = open(home / "dagster-dev.log", "w")  # noqa: SIM115 (closed below)
    dagster = str(Path(sys.executable).parent / "dagster")
    process = subprocess.Popen(
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    samples: list[float] = []
    try:
        say(f"dagster dev on port {port}; a warm-up batch, then waiting for the sensor to load it (and any backlog)")
        before = _events_today(client, keys)
        _write_batch(bucket, -1)
        _wait(lambda: _events_today(client, keys) >= before + SAMPLE_EVENTS, TIMEOUT_S * 4, "warm-up events", process)
        for sample in range(SAMPLES):
            before = _events_today(client, keys)
            _write_batch(bucket, sample)
            seconds = _wait(
                lambda before=before: _events_today(client, keys) >= before + SAMPLE_EVENTS,
                TIMEOUT_S,
                "new events in Redis",
                process,
            )
            samples.append(seconds)
            say(f"freshness sample {sample + 1}/{SAMPLES}: {seconds:.1f} s from the bucket to Redis")
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends: dagster dev stops its daemon and webserver
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    return {
        "event_to_redis_s": round(statistics.median(samples), 1),
        "event_to_redis_max_s": round(max(samples), 1),
        "samples": len(samples),
        "target_s": 60,
    }


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="analyticspro-freshness-"))
    setup_environment(root)
    settings = get_settings()
    ensure_database(settings)
    try:
        print(json.dumps(bench_freshness(settings, say), indent=2))
    finally:
        cleanup(settings, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
