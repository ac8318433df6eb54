"""The one Dagster entry point loads, and its asset graph connects raw load -> dbt models -> Redis.

test_definitions_snapshot compares everything a data engineer sees in the UI (assets, groups, partitions, checks,
jobs, schedules, sensors) with tests/snapshots/definitions.json, so a change to the graph shows in the diff.
After an intended change: `UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_definitions.py` and commit the file.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from orchestration import definitions
from orchestration.definitions import build_definitions, resolved_materialize_all_job
from orchestration.defs.transform.assets import dbt_build_args
from orchestration.engines import EngineError, celery_config

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return definitions.defs


def key(path: str) -> dg.AssetKey:
    return dg.AssetKey(path.split("/"))


def test_every_asset_and_its_upstream(defs):
    graph = defs.resolve_asset_graph()
    parents = {
        k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
        for k in graph.get_all_asset_keys()
    }
    fct, persons = "analytics/fct_events", ["analytics/fct_events", "intermediate/int_identity_map"]
    assert parents == {
        "raw/events": [],
        "staging/stg_segment__events": ["raw/events"],
        # the loads a model has not read are looked up in raw.events itself (macros/incremental_scope.sql)
        "intermediate/int_identity_map": ["raw/events", "staging/stg_segment__events"],
        fct: ["intermediate/int_identity_map", "raw/events", "staging/stg_segment__events"],
        "intermediate/int_event_days": [fct],
        "intermediate/int_person_days": persons,
        "intermediate/int_cohort_persons": sorted([*persons, "analytics/dim_users", "intermediate/int_person_days"]),
        "intermediate/int_active_coverage": ["intermediate/int_person_days"],
        "intermediate/int_mrr_changes": [fct],
        "intermediate/int_funnel_events": [fct],
        "intermediate/int_funnel_persons": sorted([*persons, "intermediate/int_funnel_events"]),
        "intermediate/int_funnel_breakdown_persons": sorted(
            [*persons, "analytics/dim_users", "intermediate/int_funnel_persons"]
        ),
        "analytics/fct_sessions": persons,
        "analytics/dim_users": [*persons, "ops/person_archive_history"],
        # (the catalogue's days: what dim_event_properties aggregates on Spark; a view on PostgreSQL)
        "intermediate/int_event_property_days": [fct],
        "analytics/dim_event_properties": [fct, "intermediate/int_event_property_days"],
        "ops/person_archive_history": [],
        "analytics/daily_metrics": sorted(
            [
                "analytics/dim_users",
                fct,
                "analytics/fct_sessions",
                "intermediate/int_active_coverage",
                "intermediate/int_event_days",
                "intermediate/int_mrr_changes",
                "intermediate/int_person_days",
            ]
        ),
        "analytics/fct_funnel_steps": ["intermediate/int_event_days", "intermediate/int_funnel_persons"],
        "analytics/fct_funnel_breakdown": ["intermediate/int_funnel_breakdown_persons"],
        "analytics/fct_cohort_retention": ["intermediate/int_cohort_persons", "intermediate/int_event_days"],
        "analytics/fct_mrr": sorted([*persons, "intermediate/int_event_days", "intermediate/int_mrr_changes"]),
        "analytics/revenue_monthly": ["analytics/fct_mrr", "intermediate/int_event_days"],
        "hot_metrics": ["analytics/fct_funnel_steps", "raw/events"],
        "insights_events": ["analytics/dim_event_properties", "analytics/dim_users", fct],
        "archive_partitions": [
            "analytics/daily_metrics",
            "analytics/fct_cohort_retention",
            "analytics/revenue_monthly",
        ],
    }


def test_lineage_runs_from_the_raw_load_to_redis(defs):
    graph = defs.resolve_asset_graph()
    reachable, frontier = set(), [key("raw/events")]
    while frontier:
        current = frontier.pop()
        for child in graph.get(current).child_keys:
            if child not in reachable:
                reachable.add(child)
                frontier.append(child)
    assert dg.AssetKey("hot_metrics") in reachable
    assert key("analytics/daily_metrics") in reachable


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()

    def partitions(node) -> str | None:
        definition = node.partitions_def
        if definition is None:
            return None
        return f"{type(definition).__name__}(start={definition.start:%Y-%m-%d}, end_offset={definition.end_offset})"

    assets = {}
    for asset_key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(asset_key)
        assets[asset_key.to_user_string()] = {
            "group": node.group_name,
            "partitions": partitions(node),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "checks": sorted(c.name for c in graph.asset_check_keys if c.asset_key == asset_key),
        }
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
            "checks": len(job.asset_layer.asset_graph.asset_check_keys),
            "partitioned": job.partitions_def is not None,
        }
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "job": s.job_name,
            "timezone": s.execution_timezone,
            "default": s.default_status.value,
        }
        for s in defs.schedules
    }
    sensors = {
        s.name: {"job": s.job_name, "interval_s": s.minimum_interval_seconds, "default": s.default_status.value}
        for s in defs.sensors
    }
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def test_definitions_snapshot(defs):
    current = describe(defs)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "the Dagster definitions changed; if intended, rerun with UPDATE_SNAPSHOTS=1 and commit the snapshot"
    )


def test_groups_kinds_and_checks(defs):
    graph = defs.resolve_asset_graph()
    assert graph.get(key("raw/events")).group_name == "ingestion"
    assert graph.get(key("analytics/daily_metrics")).group_name == "analytics"
    assert graph.get(dg.AssetKey("hot_metrics")).group_name == "serving"
    check_names = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert ("analytics/fct_events", "unique_fct_events_message_id") in check_names
    assert ("analytics/daily_metrics", "not_null_daily_metrics_value") in check_names


def test_materialize_all_job_covers_every_asset(defs):
    job = defs.resolve_job_def("materialize_all")
    assert job is not None
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= {
        "raw/events",
        "analytics/daily_metrics",
        "hot_metrics",
        "insights_events",
    }


@pytest.mark.parametrize(
    ("name", "executor"),
    [("multiprocess", "multiprocess"), ("in_process", "in_process"), ("celery", "celery_executor"), ("k8s", "k8s")],
)
def test_dagster_executor_selects_the_marts_jobs_executor(monkeypatch, name, executor):
    monkeypatch.setenv("DAGSTER_EXECUTOR", name)
    assert resolved_materialize_all_job().executor_def.name == executor


def test_celery_broker_and_queue_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("DAGSTER_CELERY_QUEUE", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/2")
    config = celery_config()
    assert (config["broker"], config["backend"]) == ("redis://cache.internal:6379/2",) * 2
    assert config["config_source"]["task_default_queue"] == "analyticspro"
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://broker.internal:6379/3")
    monkeypatch.setenv("DAGSTER_CELERY_QUEUE", "marts")
    config = celery_config()
    assert (config["broker"], config["backend"]) == ("redis://broker.internal:6379/3",) * 2
    assert config["config_source"]["task_default_queue"] == "marts"


def test_an_unknown_executor_says_which_exist(monkeypatch):
    monkeypatch.setenv("DAGSTER_EXECUTOR", "dask")
    with pytest.raises(EngineError, match="multiprocess, in_process, celery, k8s"):
        resolved_materialize_all_job()


def test_on_spark_dbt_reads_the_lake(monkeypatch, tmp_path):
    """ANALYTICSPRO_ENGINE=spark: the lake copy of raw.events sits between the load and the dbt models."""
    monkeypatch.setenv("ANALYTICSPRO_ENGINE", "spark")
    monkeypatch.setenv("EVENTS_LAKE_URL", str(tmp_path / "lake"))
    graph = build_definitions().resolve_asset_graph()
    assert graph.get(key("lake/events")).parent_keys == {key("raw/events")}
    assert graph.get(key("staging/stg_segment__events")).parent_keys == {key("lake/events")}


def test_runs_for_new_data_test_the_rows_they_wrote_and_runs_over_days_test_every_row():
    window = (date(2026, 3, 1), date(2026, 3, 3))
    assert dbt_build_args("postgres", None, False) == ["build", "--vars", '{"test_scope": "changed"}']
    assert dbt_build_args("postgres", window, False) == [
        "build", "--vars", '{"start_date": "2026-03-01", "end_date": "2026-03-03"}'
    ]  # fmt: skip
    assert dbt_build_args("postgres", None, True) == ["build", "--full-refresh"]
    assert dbt_build_args("spark", None, False) == ["build", "--exclude-resource-type", "unit_test"]
