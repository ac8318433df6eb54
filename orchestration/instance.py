"""The Dagster instance AnalyticsPro runs in: DAGSTER_HOME with a dagster.yaml from deploy/.

DAGSTER_PG_URL set -> deploy/dagster.yaml (PostgreSQL run/event/schedule storage); unset ->
deploy/dagster.local.yaml (SQLite inside DAGSTER_HOME). Both bring the run queue limits, run retries, run
monitoring and telemetry off. A dagster.yaml without the `managed-by: analyticspro` line is the operator's own
and is never replaced.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from common.settings import PROJECT_ROOT, get_settings

DEPLOY_DIR = PROJECT_ROOT / "deploy"
MANAGED_MARKER = "managed-by: analyticspro"


def instance_template() -> Path:
    return DEPLOY_DIR / ("dagster.yaml" if os.environ.get("DAGSTER_PG_URL") else "dagster.local.yaml")


def prepare_dagster_home() -> Path:
    """Create DAGSTER_HOME, write (or refresh) its managed dagster.yaml, export DAGSTER_HOME; returns it."""
    home = get_settings().dagster_home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = instance_template().read_text()
    os.environ["DAGSTER_HOME"] = str(home)
    # Processes that start together on a new home (`analyticspro worker` twice, a materialize) would each create
    # the SQLite storages' tables, and alembic ends up with two version rows: one at a time, under a file lock.
    with (home / ".analyticspro.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not config.exists() or (MANAGED_MARKER in config.read_text() and config.read_text() != wanted):
            config.write_text(wanted)
        local = config.read_text() == DEPLOY_DIR.joinpath("dagster.local.yaml").read_text()
        if local and not (home / "history" / "runs.db").exists():
            from dagster import DagsterInstance  # start-up cost: only a new home needs Dagster's storages

            DagsterInstance.get().dispose()  # creates the storages
    return home


if __name__ == "__main__":
    print(prepare_dagster_home())
