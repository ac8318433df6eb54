"""The one Dagster entry point: every asset, resource and job of AnalyticsPro (see workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.ingestion.assets import build_ingestion_defs
from orchestration.defs.serving.hot_metrics import build_serving_defs
from orchestration.defs.transform.assets import build_transform_defs

MATERIALIZE_ALL_JOB = "materialize_all"


def build_definitions() -> dg.Definitions:
    materialize_all = dg.define_asset_job(
        MATERIALIZE_ALL_JOB,
        selection=dg.AssetSelection.all(),
        description="Load new events, build every dbt model and test, push hot metrics to Redis.",
    )
    return dg.Definitions.merge(
        build_ingestion_defs(),
        build_transform_defs(),
        build_serving_defs(),
        dg.Definitions(jobs=[materialize_all]),
    )


defs = build_definitions()
