"""Benchmarks point this process at databases and buckets of their own, then put the environment back."""

from __future__ import annotations

import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import redis

from common.db import drop_database


def say(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


def setup_environment(root: Path) -> None:
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/analytics").rsplit("/", 1)[0]
    run = uuid.uuid4().hex[:8]
    os.environ.update(
        DATABASE_URL=f"{base}/analyticspro_bench_{run}",
        REDIS_KEY_PREFIX=f"analyticspro_bench_{run}",
        EVENTS_BUCKET_URL=str(root / "bucket"),
        DAGSTER_HOME=str(root / "dagster_home"),
        DLT_PIPELINES_DIR=str(root / "dlt"),
    )


def cleanup(settings, root: Path) -> None:
    """Drop the benchmark's database, delete its Redis keys and its folder."""
    drop_database(settings)
    client = redis.Redis.from_url(settings.redis_url)
    stale = list(client.scan_iter(match=f"{settings.redis_key_prefix}:*"))
    if stale:
        client.delete(*stale)
    shutil.rmtree(root, ignore_errors=True)


def timings(fn: Callable[[], object], runs: int, unit: float = 1000.0) -> list[float]:
    """`fn` timed `runs` times, sorted, in seconds × `unit` (1000: milliseconds, 1e6: microseconds)."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * unit)
    return sorted(samples)


def median_ms(fn: Callable[[], object], runs: int = 5, warm: bool = False) -> float:
    """The median of `runs` timings of `fn`, in milliseconds (after one untimed call when `warm`)."""
    if warm:
        fn()
    return statistics.median(timings(fn, runs))


def say_for(benchmark: str) -> Callable[[str], None]:
    """`say`, each line marked with the benchmark's name."""
    return lambda message: say(f"{benchmark}: {message}")
