"""`insights_events`: the insights engine's columnar copy (insights/store.py) kept current after every marts build,
day by day: only the days whose rows changed (new events, late events, re-stitched persons, erasures, days moved to
the cold tier) are written again, so a new hour costs one day's export."""

import dagster as dg

from common.settings import get_settings
from insights.store import store_dir, sync_store
from orchestration.retries import retry_if_transient

UPSTREAM = [dg.AssetKey(["analytics", name]) for name in ("fct_events", "dim_users", "dim_event_properties")]


@dg.asset(
    deps=UPSTREAM,
    group_name="serving",
    kinds={"duckdb", "parquet"},
    description="Every event of fct_events (and of archived days, from the cold tier) as Parquet, one file per UTC day "
    "sorted by person and time, with the persons' fields and the event catalogue: what `analyticspro query`, the "
    "GraphQL `insight` field and the query builder page answer from (README, 'Insights'). Folder: INSIGHTS_DIR, "
    "default .analyticspro/insights/<database>.",
)
def insights_events(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    settings = get_settings()
    try:
        result = sync_store(settings, say=context.log.info)
    except Exception as error:  # PostgreSQL restarting: retry with backoff
        retry_if_transient(context, error)
        raise
    context.log.info(result.describe())
    return dg.MaterializeResult(
        metadata={
            "folder": str(store_dir(settings)),
            "days_written": result.days_written,
            "events_written": result.rows_written,
            "days_removed": result.days_removed,
            "persons_refreshed": result.persons_written,
            "seconds": round(result.seconds, 2),
        }
    )
