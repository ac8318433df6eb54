"""The one Dagster entry point: every asset, resource, job, schedule and sensor of AnalyticsPro (see
workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.automation import MATERIALIZE_ALL_JOB, REALTIME_JOB, build_automation_defs
from orchestration.defs.exports import build_export_defs
from orchestration.defs.ingestion.assets import build_ingestion_defs
from orchestration.defs.privacy import build_privacy_defs
from orchestration.defs.quality import build_quality_defs
from orchestration.defs.serving.hot_metrics import build_serving_defs
from orchestration.defs.storage import build_storage_defs
from orchestration.defs.transform.assets import build_transform_defs

__all__ = ["MATERIALIZE_ALL_JOB", "REALTIME_JOB", "build_definitions", "defs", "resolved_materialize_all_job"]


def build_definitions() -> dg.Definitions:
    return dg.Definitions.merge(
        build_ingestion_defs(),
        build_transform_defs(),
        build_serving_defs(),
        build_quality_defs(),
        build_automation_defs(),
        build_storage_defs(),
        build_privacy_defs(),
        build_export_defs(),
    )


defs = build_definitions()


def resolved_materialize_all_job() -> dg.JobDefinition:
    """The marts job, resolved: what dg.reconstructable points step processes and Celery workers at (they rebuild
    it from the environment they inherit)."""
    return build_definitions().resolve_job_def(MATERIALIZE_ALL_JOB)
