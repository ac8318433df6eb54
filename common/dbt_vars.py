"""dbt vars other parts of AnalyticsPro follow, read from dbt_project.yml (yaml only: cheap to import)."""

from __future__ import annotations

from pathlib import Path

import yaml

from common.settings import PROJECT_ROOT

DBT_PROJECT_FILE = PROJECT_ROOT / "dbt_project" / "dbt_project.yml"


def lookback_days(project_file: Path = DBT_PROJECT_FILE) -> int:
    """dbt's var lookback_days (how many days late events are re-checked), read from dbt_project.yml."""
    return int(yaml.safe_load(project_file.read_text())["vars"]["lookback_days"])
