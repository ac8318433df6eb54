"""Freshness: how long from an event put in the bucket to its number in Redis, as `make dev` runs things.

`dagster dev` (webserver and daemon) runs on a free port against the benchmark's database, bucket and Redis
prefix. Each sample writes one new batch file of SAMPLE_EVENTS page views dated now into the bucket and polls
Redis every 50 ms until today's `events` has grown by that many. Two ways, in the same run:
- the baseline, Dagster alone: its bucket sensor (a tick every 15 s) starts a realtime_load run per new object;
- the figure, with `analyticspro realtime` beside it (what `make dev` starts): a look every REALTIME_POLL_SECONDS
  (1 s), the load and the hot metrics in its own long-lived process.
Each is the median of the samples (and the worst).

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
from common.redis_keys import HotKeys, follower_heartbeat
from common.settings import PROJECT_ROOT, Settings, get_settings
from orchestration.instance import prepare_dagster_home
from testing.dashboard_server import free_port

SAMPLES = int(os.environ.get("BENCH_FRESHNESS_SAMPLES", "5"))
SAMPLE_EVENTS = 50
TIMEOUT_S = 240.0
POLL_SECONDS = 1.0  # analyticspro realtime's default (REALTIME_POLL_SECONDS)


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
    follower: subprocess.Popen | None = None
    try:
        say(f"dagster dev on port {port}; a warm-up batch, then waiting for the sensor to load it (and any backlog)")
        before = _events_today(client, keys)
        _write_batch(bucket, -1)
        _wait(lambda: _events_today(client, keys) >= before + SAMPLE_EVENTS, TIMEOUT_S * 4, "warm-up events", process)
        sensor = _samples(bucket, client, keys, [process], "Dagster's sensor alone", say)
        follower = subprocess.Popen(
            [str(Path(sys.executable).parent / "analyticspro"), "realtime", "--interval", str(POLL_SECONDS)],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        heartbeat = follower_heartbeat(settings.redis_key_prefix)
        _wait(lambda: client.exists(heartbeat) == 1, TIMEOUT_S, "the follower's heartbeat", follower)
        followed = _samples(bucket, client, keys, [process, follower], "with analyticspro realtime", say)
    finally:
        for running in (follower, process):
            if running is not None:
                _stop(running)
        log.close()
    return {
        "event_to_redis_s": round(statistics.median(followed), 1),
        "event_to_redis_max_s": round(max(followed), 1),
        "sensor_only_s": round(statistics.median(sensor), 1),
        "sensor_only_max_s": round(max(sensor), 1),
        "poll_s": POLL_SECONDS,
        "s3_list_calls_per_day": round(86_400 / POLL_SECONDS),
        "samples": len(followed),
        "target_s": 5,
    }


def _samples(
    bucket: Path, client: redis.Redis, keys: HotKeys, processes: list[subprocess.Popen], how: str, say
) -> list[float]:
    samples = []
    for sample in range(SAMPLES):
        before = _events_today(client, keys)
        _write_batch(bucket, sample)
        started = time.perf_counter()
        while _events_today(client, keys) < before + SAMPLE_EVENTS:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited with {process.returncode} ({how})")
            if time.perf_counter() - started > TIMEOUT_S:
                raise TimeoutError(f"no new events in Redis after {TIMEOUT_S:.0f} s ({how})")
            time.sleep(0.05)
        samples.append(time.perf_counter() - started)
        say(f"freshness ({how}) {sample + 1}/{SAMPLES}: {samples[-1]:.1f} s from the bucket to Redis")
        time.sleep(1 + sample % 3)  # writes at no fixed phase to the polls
    return samples


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends: dagster dev stops its daemon and webserver
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def freshness_alone(say: Callable[[str], None] = say) -> dict:
    """The benchmark in a database, bucket and Redis prefix of its own, removed afterwards (the environment put
    back)."""
    saved = dict(os.environ)
    root = Path(tempfile.mkdtemp(prefix="analyticspro-freshness-"))
    setup_environment(root)
    settings = get_settings()
    ensure_database(settings)
    try:
        return bench_freshness(settings, say)
    finally:
        cleanup(settings, root)
        os.environ.clear()
        os.environ.update(saved)


def main() -> int:
    print(json.dumps(freshness_alone(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
