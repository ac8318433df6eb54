"""Today's headline numbers, copied from the marts into Redis for sub-second dashboards.

Keys (documented in the README): `<prefix>:metrics:<name>:<YYYY-MM-DD>` holds the value as a
decimal string, and `<prefix>:metrics:updated_at` the time of the last push (ISO-8601, UTC).
Every key expires after HOT_METRICS_TTL_SECONDS, so a stopped pipeline never serves stale numbers
for long.
"""

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal

import dagster as dg
from redis import Redis

from ingestion.settings import get_settings
from orchestration.defs.serving.resources import RedisResource, WarehouseResource
from orchestration.warehouse import hot_metric_key, read_daily_metrics

DAILY_METRICS = dg.AssetKey(["analytics", "daily_metrics"])


def _format(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)


def push_hot_metrics(
    client: Redis, prefix: str, day: date, values: Mapping[str, Decimal], ttl_seconds: int
) -> dict[str, str]:
    """Write every value (and updated_at) in one transaction; returns what was written, by key."""
    written = {hot_metric_key(prefix, name, day): _format(value) for name, value in values.items()}
    written[f"{prefix}:metrics:updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    with client.pipeline(transaction=True) as pipe:
        for key, value in written.items():
            pipe.set(key, value, ex=ttl_seconds)
        pipe.execute()
    return written


class HotMetricsConfig(dg.Config):
    day: str | None = None
    """UTC date (YYYY-MM-DD) to push; defaults to today."""


@dg.asset(
    deps=[DAILY_METRICS],
    group_name="serving",
    kinds={"redis"},
    description="Today's signups, DAU and activity events from analytics.daily_metrics, pushed to Redis "
    "under <REDIS_KEY_PREFIX>:metrics:<name>:<date> with a TTL.",
)
def hot_metrics(
    context: dg.AssetExecutionContext,
    config: HotMetricsConfig,
    warehouse: WarehouseResource,
    redis: RedisResource,
) -> dg.MaterializeResult:
    day = date.fromisoformat(config.day) if config.day else datetime.now(UTC).date()
    with warehouse.connect() as connection:
        values = read_daily_metrics(connection, day)
    connection.close()
    ttl = redis.ttl_seconds
    written = push_hot_metrics(redis.client(), redis.key_prefix, day, values, ttl)
    context.log.info(f"pushed {len(written)} keys to Redis for {day}: {written}")
    return dg.MaterializeResult(
        metadata={
            "day": day.isoformat(),
            "ttl_seconds": ttl,
            "keys": dg.MetadataValue.json(written),
            **{name: float(value) for name, value in values.items()},
        }
    )


def build_serving_defs() -> dg.Definitions:
    settings = get_settings()
    return dg.Definitions(
        assets=[hot_metrics],
        resources={
            "warehouse": WarehouseResource(database_url=settings.database_url),
            "redis": RedisResource(
                url=settings.redis_url,
                key_prefix=settings.redis_key_prefix,
                ttl_seconds=settings.hot_metrics_ttl_seconds,
            ),
        },
    )
