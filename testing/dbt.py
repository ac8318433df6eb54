"""dbt run straight from tests (no Dagster): a build into the current DATABASE_URL, with its own target folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestration.defs.transform.project import DBT_PROJECT_DIR, dbt_executable


def dbt_paths(root: Path) -> list[str]:
    """The project, profiles, target and log folders of a test's dbt commands (target and logs under `root`)."""
    return [
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(root / "dbt_target"),
        "--log-path",
        str(root / "dbt_logs"),
    ]


def dbt(root: Path, *args: str) -> str:
    """Run `dbt <args>` against DATABASE_URL with target and logs under `root`; its output, or AssertionError."""
    command = [dbt_executable(), *args, *dbt_paths(root)]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result.stdout


def dbt_build(root: Path, *args: str) -> str:
    return dbt(root, "build", *args)
