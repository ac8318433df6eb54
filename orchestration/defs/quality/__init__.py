"""Data-quality checks beyond the dbt tests (which Dagster shows as checks of their models, the MRR bridge
`assert_mrr_bridge_balances` on analytics/revenue_monthly among them).

- raw_events_freshness (raw/events, warning): no event in the last FRESHNESS_WARN_MINUTES (default 60) minutes
  during the active hours FRESHNESS_ACTIVE_HOURS (UTC, default 06-22).
- rejected_events_ratio (raw/events, failure): more than 1% of the lines loaded in the last 24 hours rejected.
- daily_row_count_anomaly (analytics/fct_events, warning): a closed day of the last week with fewer than half the
  events of the median of the 7 days before it; read from where the engine built fct_events (PostgreSQL, or the
  lake's `marts/fct_events` when ANALYTICSPRO_ENGINE=spark).

They run after their asset in materialize_all (hourly, daily, `analyticspro materialize`), not in the sensors'
realtime_load runs, and can be run alone from the asset's Checks tab.
"""

import os
import statistics
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from common.db import table_exists
from orchestration.defs.serving.resources import WarehouseResource
from orchestration.engines import current_engine
from orchestration.retries import retry_if_transient
from warehouse.lake import lake_daily_counts

RAW_EVENTS = dg.AssetKey(["raw", "events"])
FCT_EVENTS = dg.AssetKey(["analytics", "fct_events"])
REJECTED_RATIO_LIMIT = 0.01
ANOMALY_FRACTION = 0.5
TRAILING_DAYS = 7


def freshness_settings() -> tuple[int, tuple[int, int]]:
    """(minutes, (first hour, last hour)) from FRESHNESS_WARN_MINUTES and FRESHNESS_ACTIVE_HOURS."""
    raw_minutes = os.environ.get("FRESHNESS_WARN_MINUTES") or "60"
    raw_hours = os.environ.get("FRESHNESS_ACTIVE_HOURS") or "06-22"
    try:
        minutes = int(raw_minutes)
        first, last = (int(part) for part in raw_hours.split("-"))
        if minutes < 1 or not (0 <= first <= last <= 23):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"FRESHNESS_WARN_MINUTES={raw_minutes!r} / FRESHNESS_ACTIVE_HOURS={raw_hours!r}: give whole minutes "
            "(e.g. 60) and UTC hours as FIRST-LAST (e.g. 06-22), or unset them"
        ) from None
    return minutes, (first, last)


def _retrying(
    context: dg.AssetCheckExecutionContext,
    check: Callable[[WarehouseResource], dg.AssetCheckResult],
    warehouse: WarehouseResource,
) -> dg.AssetCheckResult:
    try:
        return check(warehouse)
    except Exception as error:  # the database restarting: retry the check with backoff
        retry_if_transient(context, error)
        raise


def _one(connection, sql: str, args: tuple = ()) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchone()


@dg.asset_check(asset=RAW_EVENTS, description="Warns when no event arrived for a while during the active hours.")
def raw_events_freshness(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return _retrying(context, measure_raw_events_freshness, warehouse)


def measure_raw_events_freshness(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    minutes, (first_hour, last_hour) = freshness_settings()
    now = datetime.now(UTC)
    with warehouse.connect() as connection:
        latest = _one(connection, 'select max("timestamp") from raw.events where "timestamp" <= %s', (now,))[0]
    connection.close()
    age = (now - latest).total_seconds() / 60 if latest else None
    active = first_hour <= now.hour <= last_hour
    passed = not active or (age is not None and age <= minutes)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if passed else f"no event in the last {minutes} minutes; is the collector or sink down?",
        metadata={
            "latest_event_at": latest.isoformat() if latest else "none",
            "minutes_since_latest_event": round(age, 1) if age is not None else -1,
            "warn_after_minutes": minutes,
            "active_hours_utc": f"{first_hour:02d}-{last_hour:02d}",
            "within_active_hours": active,
        },
    )


@dg.asset_check(asset=RAW_EVENTS, description="Fails when over 1% of the lines loaded in the last 24 h were rejected.")
def rejected_events_ratio(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return _retrying(context, measure_rejected_events_ratio, warehouse)


def measure_rejected_events_ratio(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    since = datetime.now(UTC) - timedelta(hours=24)
    with warehouse.connect() as connection, connection.cursor() as cursor:
        rejected = stored = 0
        if table_exists(cursor, "raw.rejected_events"):
            cursor.execute("select count(*) from raw.rejected_events where rejected_at >= %s", (since,))
            rejected = cursor.fetchone()[0]
        if table_exists(cursor, "raw._dlt_loads"):
            cursor.execute(
                "select count(*) from raw.events where _dlt_load_id in "
                "(select load_id from raw._dlt_loads where inserted_at >= %s)",
                (since,),
            )
            stored = cursor.fetchone()[0]
    connection.close()
    total = stored + rejected
    ratio = rejected / total if total else 0.0
    passed = ratio <= REJECTED_RATIO_LIMIT
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None
        if passed
        else f"{ratio:.2%} of the lines loaded in the last 24 h were rejected (limit 1%): see the reasons with "
        "`select reason, count(*) from raw.rejected_events group by 1 order by 2 desc`",
        metadata={"rejected": rejected, "stored_events": stored, "ratio": round(ratio, 6), "limit": 0.01},
    )


def row_count_anomalies(counts: dict[date, int], days: list[date]) -> dict[str, dict]:
    """For each day, its count against the median of the TRAILING_DAYS days before it (a missing day counts 0);
    the days below ANOMALY_FRACTION of that median. Days without a full trailing week are not judged."""
    found = {}
    first = min(counts) if counts else None
    for day in days:
        trailing = [day - timedelta(days=offset) for offset in range(1, TRAILING_DAYS + 1)]
        if first is None or trailing[-1] < first:
            continue
        median = statistics.median(counts.get(other, 0) for other in trailing)
        if counts.get(day, 0) < ANOMALY_FRACTION * median:
            found[day.isoformat()] = {"events": counts.get(day, 0), "trailing_week_median": median}
    return found


@dg.asset_check(
    asset=FCT_EVENTS,
    description="Warns about a closed day of the last week with under half the events of the trailing-week median.",
)
def daily_row_count_anomaly(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    return _retrying(context, measure_daily_row_count_anomaly, warehouse)


def measure_daily_row_count_anomaly(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    today = datetime.now(UTC).date()
    first = today - timedelta(days=2 * TRAILING_DAYS + 1)
    if current_engine() == "spark":  # the Spark engine builds fct_events in the lake, not in PostgreSQL
        counts = lake_daily_counts("fct_events", first, today)
    else:
        with warehouse.connect() as connection, connection.cursor() as cursor:
            cursor.execute(
                "select event_date, count(*) from analytics.fct_events where event_date >= %s and event_date < %s "
                "group by event_date",
                (first, today),
            )
            counts = {day: int(n) for day, n in cursor.fetchall()}
        connection.close()
    judged = [today - timedelta(days=offset) for offset in range(TRAILING_DAYS, 0, -1)]
    anomalies = row_count_anomalies(counts, judged)
    return dg.AssetCheckResult(
        passed=not anomalies,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if not anomalies
        else f"{len(anomalies)} day(s) with < 50% of the trailing-week median: {', '.join(anomalies)}; a lost "
        "batch? `analyticspro load --rescan` re-reads the bucket",
        metadata={"anomalies": dg.MetadataValue.json(anomalies), "days_judged": len(judged)},
    )


def build_quality_defs() -> dg.Definitions:
    return dg.Definitions(asset_checks=[raw_events_freshness, rejected_events_ratio, daily_row_count_anomaly])
