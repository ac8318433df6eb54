"""`hot_metrics`: Redis kept current from the newest events (warehouse/realtime.py holds the logic and the
key layout). It runs after every load, on every sensor-triggered run, so an event put in the bucket reaches the
dashboards within a minute, without waiting for the marts."""

import dagster as dg

from common.locks import HOT_METRICS_LOCK, advisory_lock
from common.settings import get_settings
from orchestration.defs.serving.insights import insights_events
from orchestration.defs.serving.resources import RedisResource, WarehouseResource
from orchestration.retries import retry_if_transient
from warehouse.realtime import update_hot_metrics

RAW_EVENTS = dg.AssetKey(["raw", "events"])
FUNNEL_STEPS = dg.AssetKey(["analytics", "fct_funnel_steps"])


@dg.asset(
    deps=[RAW_EVENTS, FUNNEL_STEPS],
    group_name="serving",
    kinds={"redis"},
    description="Real-time numbers in Redis, folded in from the raw.events rows loaded since the last run: today's "
    "and yesterday's signups, DAU, activity events and revenue, the last hour's, the people active in the last 5 "
    "minutes, and the default funnel of the latest marts build. Keys <REDIS_KEY_PREFIX>:metrics:v1:*, each with "
    "a TTL (README, 'Hot metrics').",
)
def hot_metrics(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, redis: RedisResource
) -> dg.MaterializeResult:
    try:
        # one writer of the Redis state at a time (an advisory lock, released if this process dies)
        with advisory_lock(warehouse.database_url, HOT_METRICS_LOCK, context.log.info):
            connection = warehouse.connect()
            try:
                update = update_hot_metrics(connection, redis.client(), redis.key_prefix, redis.ttl_seconds)
            finally:
                connection.close()
    except Exception as error:  # Postgres restarting, Redis unreachable: retry with backoff
        retry_if_transient(context, error)
        raise
    context.log.info(
        f"folded {update.rows_counted:,} of {update.rows_read:,} raw rows of {update.loads_read:,} new loads "
        f"(newest {update.cursor})" + (" after rebuilding the state from the last two days" if update.rebuilt else "")
    )
    return dg.MaterializeResult(
        metadata={
            "rows_read": update.rows_read,
            "rows_counted": update.rows_counted,
            "loads_read": update.loads_read,
            "newest_load": update.cursor or "",
            "rebuilt_state": update.rebuilt,
            "keys": dg.MetadataValue.json(update.published),
        }
    )


def build_serving_defs() -> dg.Definitions:
    settings = get_settings()
    return dg.Definitions(
        assets=[hot_metrics, insights_events],
        resources={
            "warehouse": WarehouseResource(database_url=settings.database_url),
            "redis": RedisResource(
                url=settings.redis_url,
                key_prefix=settings.redis_key_prefix,
                ttl_seconds=settings.hot_metrics_ttl_seconds,
            ),
        },
    )
