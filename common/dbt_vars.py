"""dbt vars that other parts of AnalyticsPro follow, read from dbt_project.yml (yaml only: cheap to import): one
home for the event names, activity types, funnels and windows that SQL and Python share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from common.settings import PROJECT_ROOT

DBT_PROJECT_FILE = PROJECT_ROOT / "dbt_project" / "dbt_project.yml"


def dbt_vars(project_file: Path = DBT_PROJECT_FILE) -> dict[str, Any]:
    """The `vars:` of dbt_project.yml, as written there (the defaults of every dbt run)."""
    return yaml.safe_load(project_file.read_text())["vars"]


def lookback_days(project_file: Path = DBT_PROJECT_FILE) -> int:
    """dbt's var lookback_days (how many days late events are re-checked), read from dbt_project.yml."""
    return int(dbt_vars(project_file)["lookback_days"])


def activity_event_types(project_file: Path = DBT_PROJECT_FILE) -> tuple[str, ...]:
    """The Segment call types that count as activity (var activity_event_types)."""
    return tuple(dbt_vars(project_file)["activity_event_types"])


def metric_events(project_file: Path = DBT_PROJECT_FILE) -> dict[str, str]:
    """The track events the metrics are defined on, by role (var metric_events): signup, purchase,
    subscription_changed, subscription_canceled."""
    return {str(role): str(name) for role, name in dbt_vars(project_file)["metric_events"].items()}
