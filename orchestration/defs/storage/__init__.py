"""The cold tier in the UI: `archive_partitions` moves fct_events days older than WARM_DAYS to Parquet in the bucket
(warehouse/archive.py), daily at 02:00 UTC or on demand; each file it wrote is in the materialization's
metadata and in ops.archived_partitions. `analyticspro restore --from D --to D` brings days back."""

import json
from datetime import UTC, datetime

import dagster as dg
import psycopg2

from common.settings import get_settings
from orchestration.defs.transform.project import analyticspro_dbt_project
from orchestration.triggers import utc_schedule
from warehouse.archive import archivable_dates, archive_date, last_change

ARCHIVE_JOB = "archive_cold_partitions"
MARTS_GROUPS = ("intermediate", "analytics")


def mart_keys() -> list[dg.AssetKey]:
    """Every dbt model downstream of fct_events that keeps history: the intermediate and analytics models."""
    manifest = json.loads(analyticspro_dbt_project().manifest_path.read_text())
    return sorted(
        (
            dg.AssetKey([node["schema"], node["name"]])
            for node in manifest["nodes"].values()
            if node["resource_type"] == "model" and node["schema"] in MARTS_GROUPS and node["name"] != "fct_events"
        ),
        key=lambda key: key.to_user_string(),
    )


def _marts_built_at(context: dg.AssetExecutionContext) -> tuple[datetime | None, list[str]]:
    """The time by which every mart had been built (the oldest of their latest materializations), and the marts
    never built."""
    never, oldest = [], None
    for key in mart_keys():
        event = context.instance.get_latest_materialization_event(key)
        if event is None:
            never.append(key.to_user_string())
            continue
        built = datetime.fromtimestamp(event.timestamp, UTC)
        oldest = built if oldest is None or built < oldest else oldest
    return oldest, never


@dg.asset(
    deps=[dg.AssetKey(["analytics", name]) for name in ("daily_metrics", "fct_cohort_retention", "revenue_monthly")],
    group_name="storage",
    kinds={"parquet", "s3"},
    description="Moves every fct_events day older than WARM_DAYS (default 90) from PostgreSQL to Parquet under "
    "<EVENTS_BUCKET_URL>/archive/events/date=YYYY-MM-DD/, verified (row count, checksum) before the partition and "
    "the day's raw rows are dropped, and never before every mart was built after the day last changed.",
)
def archive_partitions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    settings = get_settings()
    today = datetime.now(UTC).date()
    built, never = _marts_built_at(context)
    archived, waiting = [], []
    connection = psycopg2.connect(settings.database_url)
    try:
        for day in archivable_dates(connection, settings.warm_days, today):
            changed = last_change(connection, day)
            if never or built is None or (changed is not None and changed >= built):
                waiting.append(day.isoformat())
                continue
            files = archive_date(settings, connection, day)
            archived.append({"date": day.isoformat(), "files": {f.table: f.url for f in files}, "rows": files[0].rows})
            context.log.info(f"archived {day}: {files[0].rows:,} fct_events rows, {files[1].rows:,} raw rows")
    finally:
        connection.close()
    if waiting:
        context.log.warning(
            f"not archived yet, the marts have not consumed their latest changes: {', '.join(waiting)}"
            + (f" (never built: {', '.join(never)})" if never else "")
            + "; the next run after a marts build archives them"
        )
    return dg.MaterializeResult(
        metadata={
            "warm_days": settings.warm_days,
            "archived_days": len(archived),
            "archived": dg.MetadataValue.json(archived),
            "waiting_for_marts": dg.MetadataValue.json(waiting),
        }
    )


archive_job = dg.define_asset_job(
    ARCHIVE_JOB,
    selection=dg.AssetSelection.assets(archive_partitions),
    description="Move fct_events days older than WARM_DAYS to the cold tier (Parquet in the bucket).",
    tags={"analyticspro/pipeline": "marts"},  # never beside a marts build
)


@utc_schedule("0 2 * * *", job=archive_job)
def daily_archive(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"archive-{context.scheduled_execution_time:%Y-%m-%d}")


def build_storage_defs() -> dg.Definitions:
    return dg.Definitions(assets=[archive_partitions], jobs=[archive_job], schedules=[daily_archive])
