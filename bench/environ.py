"""Benchmarks point this process at databases and buckets of their own, then put the environment back."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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
    from common.db import drop_database, ensure_database
    from common.settings import get_settings

    base = get_settings()
    root = Path(tempfile.mkdtemp(prefix=f"analyticspro-bench-{suffix}-"))
    saved = set_environ(
        {
            "DATABASE_URL": base.database_url_for(f"{base.database_name}_{suffix}"),
            "EVENTS_BUCKET_URL": str(root / "bucket"),
            "DLT_PIPELINES_DIR": str(root / "dlt"),
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
