"""dbt vars that other parts of AnalyticsPro follow, read from dbt_project.yml (yaml only: cheap to import): one
home for the event names, activity types, funnels and windows that SQL and Python share."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from common.settings import PROJECT_ROOT

DBT_PROJECT_FILE = PROJECT_ROOT / "dbt_project" / "dbt_project.yml"


def dbt_vars(project_file: Path = DBT_PROJECT_FILE) -> dict[str, Any]:
    """The `vars:` of dbt_project.yml, as written there (the defaults of every dbt run); read again when the file
    changes. Do not modify the dict: it is shared."""
    return _read_vars(str(project_file), project_file.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_vars(path: str, _mtime_ns: int) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())["vars"]


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


def default_funnel_name(project_file: Path = DBT_PROJECT_FILE) -> str | None:
    """The funnel the summary and the hot metrics show: the one named `default`, else the first configured (var
    funnels); None when no funnel is configured."""
    names = [str(funnel["name"]) for funnel in dbt_vars(project_file).get("funnels") or []]
    return "default" if "default" in names else (names[0] if names else None)
