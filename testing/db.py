"""What tests and benchmarks share about databases: a query helper, and a warehouse of one's own (a database, a
bucket, dlt state and an insights copy, pointed at by this process's environment)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

from common.db import drop_database, ensure_database
from common.settings import get_settings


def rows(settings, sql: str, args: tuple = ()) -> list[tuple]:
    """The rows of `sql` (none for a statement that returns none), on a connection of its own."""
    connection = psycopg2.connect(settings.database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, args or None)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


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
def own_warehouse(suffix: str, root: Path | None = None, keep: bool = False) -> Iterator[tuple[Any, Path]]:
    """A database `<DATABASE_URL's name>_<suffix>`, a bucket, dlt state and an insights copy in `root` (default: a new
    temporary folder), pointed at by this process's environment; yields (settings, root). Dropped afterwards unless
    `keep` (the database is then named on stdout), and the environment put back."""
    base = get_settings()
    root = root or Path(tempfile.mkdtemp(prefix=f"analyticspro-{suffix}-"))
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
