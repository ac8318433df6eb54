"""Every dbt model, seed and test as Dagster assets and checks (`dbt build`), on the engine ANALYTICSPRO_ENGINE
names (orchestration/engines.py): PostgreSQL, or Spark over the lake."""

import json
import os
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

import dagster as dg
import psycopg2
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from common.locks import DBT_LOCK, advisory_lock
from common.settings import get_settings
from orchestration.defs.transform.project import analyticspro_dbt_project, dbt_executable
from orchestration.engines import check_spark_installed, current_engine, dbt_target, spark_environment
from orchestration.partitions import DAILY, run_scope
from orchestration.retries import retry_if_transient
from warehouse.archive import archived_dates

LAKE_EVENTS = dg.AssetKey(["lake", "events"])


class SchemaTableTranslator(DagsterDbtTranslator):
    """Model asset keys mirror [schema, table] (e.g. analytics/daily_metrics); groups follow the layer. On Spark the
    source raw.events is the lake's events table (asset lake/events, written from raw/events)."""

    def __init__(self, engine: str = "postgres") -> None:
        super().__init__()
        self.engine = engine

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if self.engine == "spark" and props["resource_type"] == "source" and spec.key == dg.AssetKey(["raw", "events"]):
            return spec.replace_attributes(key=LAKE_EVENTS)
        if props["resource_type"] in ("model", "seed", "snapshot"):
            spec = spec.replace_attributes(
                key=dg.AssetKey([props["schema"], props["name"]]), group_name=props["schema"]
            )
        return spec


class DbtBuildConfig(dg.Config):
    """`dbt build` options a run can set from the launchpad or the CLI."""

    full_refresh: bool = False  # rebuild incremental models from all events (dbt --full-refresh)


def dbt_build_args(engine: str, window: tuple[date, date] | None, full_refresh: bool) -> list[str]:
    """The `dbt build` arguments of a run: over a window of days [start, end) (vars start_date/end_date), or for new
    data (window None)."""
    args = ["build", "--full-refresh"] if full_refresh else ["build"]
    if engine == "spark":
        # Spark rebuilds what changed from the lake; unit tests hold PostgreSQL SQL and run on PostgreSQL
        return [*args, "--exclude-resource-type", "unit_test"]
    if window is not None:
        return [*args, "--vars", json.dumps({"start_date": window[0].isoformat(), "end_date": window[1].isoformat()})]
    if not full_refresh:
        # a run for new data (the hourly schedule, the sensors, `analyticspro materialize`) tests the rows it wrote,
        # not every table whole (macros/tests/scoped_tests.sql); a run over days (the daily run after a day closes, a
        # backfill) and a full refresh test every row
        return [*args, "--vars", json.dumps({"test_scope": "changed"})]
    return args


def _archived_days() -> list:
    connection = psycopg2.connect(get_settings().database_url)
    try:
        return archived_dates(connection)
    finally:
        connection.close()


def build_transform_defs() -> dg.Definitions:
    project = analyticspro_dbt_project()
    engine = current_engine()
    target = dbt_target(engine)

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=SchemaTableTranslator(engine),
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig) -> Iterator[Any]:
        # The models are incremental: a run builds what was loaded since the last build, plus (vars) every event
        # of its partition window, so a backfill of any range rebuilds exactly those dates. A new-data run passes
        # no window: what changed is found from the new loads alone.
        window, scope = run_scope(context)
        if config.full_refresh:
            days = _archived_days()
            if days:
                raise dg.Failure(
                    description=f"a full refresh would rebuild the marts without the {len(days)} archived day(s) "
                    f"{days[0]} .. {days[-1]}: restore them first (`analyticspro restore --from {days[0]} --to "
                    f"{days[-1]}`), or run without full_refresh"
                )
        if engine == "spark":
            check_spark_installed()
            os.environ.update(spark_environment())
        args = dbt_build_args(engine, window, config.full_refresh)
        context.log.info(f"dbt {' '.join(args)} --target {target} ({scope})")
        try:
            # one dbt build at a time on this warehouse (an advisory lock, released if this process dies)
            with advisory_lock(get_settings().database_url, DBT_LOCK, context.log.info):
                invocation = dbt.cli(args, context=context, raise_on_error=False)
                yield from invocation.stream()
        except Exception as error:
            retry_if_transient(context, error)
            raise
        if not invocation.is_successful():
            error = invocation.get_error()
            if error is not None:
                # models already built are upserted again on the retry (idempotent); a failing model or test
                # is not transient and fails the step at once
                retry_if_transient(context, error)
                raise error

    return dg.Definitions(
        assets=[dbt_models],
        resources={"dbt": DbtCliResource(project_dir=project, dbt_executable=dbt_executable(), target=target)},
    )
