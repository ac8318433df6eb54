"""Benchmarks point this process at databases and buckets of their own, then put the environment back."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from common.db import drop_database, ensure_database
from common.settings import get_settings


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


def set_environ(values: dict[str, str]) -> dict[str, str | None]:
    """Set `values` in os.environ; returns what they replaced, for restore_environ."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    return saved


def restore_environ(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def own_warehouse(suffix: str, keep: bool = False) -> Iterator[tuple[Any, Path]]:
    """A database `<DATABASE_URL's name>_<suffix>`, a bucket and dlt state in a temporary folder, pointed at by this
    process's environment; yields (settings, folder). Dropped afterwards unless `keep` (the database is then
    named on stdout), and the environment put back."""
    base = get_settings()
    root = Path(tempfile.mkdtemp(prefix=f"analyticspro-bench-{suffix}-"))
    saved = set_environ(
        {
            "DATABASE_URL": base.database_url_for(f"{base.database_name}_{suffix}"),
            "EVENTS_BUCKET_URL": str(root / "bucket"),
            "DLT_PIPELINES_DIR": str(root / "dlt"),
            "INSIGHTS_DIR": str(root / "insights"),
        }
    )
    settings = get_settings()
    ensure_database(settings)
    try:
        yield settings, root
    finally:
        if keep:
            print(f"kept the database: DATABASE_URL={settings.database_url}", flush=True)
        else:
            drop_database(settings)
        shutil.rmtree(root, ignore_errors=True)
        restore_environ(saved)


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
