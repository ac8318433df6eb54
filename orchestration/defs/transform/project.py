"""The dbt project as Dagster sees it, and how its manifest gets built."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from common.settings import PROJECT_ROOT

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


def dbt_executable() -> str:
    """dbt from the same environment as this interpreter, even when its bin folder is not on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def _put_dbt_on_path() -> None:
    # dagster-dbt's manifest preparer calls plain `dbt`.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def manifest_is_stale(project: DbtProject) -> bool:
    """True when the manifest is missing or older than any model, macro, test or project file."""
    if not project.manifest_path.exists():
        return True
    built = project.manifest_path.stat().st_mtime
    sources = [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    for folder in ("models", "macros", "tests", "seeds", "snapshots"):
        sources.extend(path for path in (DBT_PROJECT_DIR / folder).rglob("*") if path.is_file())
    return any(path.stat().st_mtime > built for path in sources if path.exists())


def analyticspro_dbt_project(*, refresh: bool = False) -> DbtProject:
    """The project with an up-to-date target/manifest.json (`dbt parse` runs if it is missing, or, with
    refresh=True, if any project file changed since it was built)."""
    _put_dbt_on_path()
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    # Not DbtProject.prepare_if_dev(): under `dagster dev` it runs `dbt parse` in every process that loads the
    # definitions, every run and every step included (seconds each, on the real-time path). The manifest is
    # rebuilt when it is missing, or (refresh=True: the CLI; and under `dagster dev`) older than a project file.
    refresh = refresh or bool(os.environ.get("DAGSTER_IS_DEV_CLI"))
    if not project.manifest_path.exists() or (refresh and manifest_is_stale(project)):
        project.preparer.prepare(project)
    return project
