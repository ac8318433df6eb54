"""Every test run gets its own PostgreSQL database, Redis key prefix, Dagster home, dlt state and bucket.

The environment is set in pytest_configure, before any test module is imported, because the Dagster
definitions read their settings when they are built. Everything is removed again at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path

import pytest
import redis
from moto.server import ThreadedMotoServer

from common.db import drop_database, ensure_database, ensure_redis
from common.settings import get_settings
from orchestration.defs.transform.project import analyticspro_dbt_project
from testing.dashboard_server import free_port

RUN_ID = uuid.uuid4().hex[:10]
_saved_env: dict[str, str | None] = {}
_tmp_root: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _tmp_root
    warnings.filterwarnings("ignore", message=r"sqlglot\[rs\] is deprecated")
    base_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/analytics")
    server = base_url.rsplit("/", 1)[0]
    _tmp_root = Path(tempfile.mkdtemp(prefix=f"analyticspro-test-{RUN_ID}-"))
    overrides = {
        "DATABASE_URL": f"{server}/analyticspro_test_{RUN_ID}",
        "REDIS_KEY_PREFIX": f"analyticspro_test_{RUN_ID}",
        "EVENTS_BUCKET_URL": str(_tmp_root / "bucket"),
        "DAGSTER_HOME": str(_tmp_root / "dagster_home"),
        "DLT_PIPELINES_DIR": str(_tmp_root / "dlt"),
        "INSIGHTS_DIR": str(_tmp_root / "insights"),
        # every run's steps in the run's own process: a process per step costs seconds each (the default,
        # multiprocess, is tested where it matters: the Spark sequence in test_incremental_spark, test_celery)
        "DAGSTER_EXECUTOR": "in_process",
        # the tests' Spark jobs are small and short: the JVMs they start (dbt's Spark sessions, the insights engine)
        # compile with the quick C1 compiler only, a larger code cache for Spark's generated code
        "JAVA_TOOL_OPTIONS": " ".join(
            filter(
                None, [os.environ.get("JAVA_TOOL_OPTIONS"), "-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=256m"]
            )
        ),
        "ANALYTICSPRO_ENGINE": "postgres",
    }
    for key, value in overrides.items():
        _saved_env[key] = os.environ.get(key)
        os.environ[key] = value

    settings = get_settings()
    ensure_database(settings)
    ensure_redis(settings)
    # the Dagster definitions read dbt's manifest: build it now if any model changed since (dbt parse); with
    # pytest-xdist, once, in the controlling process, before its workers start (they would race on dbt's target)
    if "PYTEST_XDIST_WORKER" not in os.environ:
        analyticspro_dbt_project(refresh=True)


# The longest test files (minutes each), first: with pytest-xdist (make test) a worker takes a file at a time, in
# collection order (make test passes --no-loadscope-reorder: xdist would start the files with the most tests first),
# so starting them early keeps one worker from running a long file alone at the end.
LONGEST_FIRST = (
    "test_incremental_spark.py",
    "test_incremental.py",
    "test_dashboards.py",
    "test_end_to_end.py",
    "test_lake.py",
    "test_orchestration.py",
    "test_tiers.py",
    "test_insights.py",
)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_unconfigure(config: pytest.Config) -> None:
    settings = get_settings()
    try:
        drop_database(settings)
        client = redis.Redis.from_url(settings.redis_url)
        keys = list(client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        for key, value in _saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if _tmp_root is not None:
            shutil.rmtree(_tmp_root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings():
    return get_settings()


@pytest.fixture(scope="session")
def bucket(settings) -> Path:
    path = Path(settings.events_bucket_url)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def aws_endpoint(monkeypatch):
    """A real moto server (S3 and Kinesis) on a free loopback port, reached through the standard AWS variables."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def own_database(request, monkeypatch, tmp_path):
    """A database and dlt folder of this test's own, so its loads do not touch other tests' counts."""
    base = get_settings().database_url
    monkeypatch.setenv("DATABASE_URL", f"{base}_{request.node.name[:20].lower()}".replace("[", "_").replace("]", ""))
    monkeypatch.setenv("DLT_PIPELINES_DIR", str(tmp_path / "dlt"))
    ensure_database(get_settings())
    try:
        yield get_settings()
    finally:
        drop_database(get_settings())
