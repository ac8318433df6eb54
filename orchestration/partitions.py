"""The daily partitions of the load-and-transform assets, and the windows they stand for.

One partition per UTC day of event data, from PARTITIONS_START_DATE (default 2024-01-01) to today. A run of a
partition range [start, end) loads the bucket objects of those days and passes the window to dbt as the vars
`start_date` / `end_date`, so a backfill of any range is one run that rebuilds exactly those dates.

A run tagged `analyticspro/scope=new-data` (the bucket sensor's, the hourly schedule's, `analyticspro materialize`
without dates) is today's partition and folds in whatever is new instead: every object not loaded yet, whatever
day it belongs to, and dbt without a window (the models find new loads and the persons and days they touch). Late
data for any number of old days is one run whose cost follows the new events, not a run per stretch of days
re-reading each whole day; the load records a materialization of `raw/events` for each old day it touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from common.settings import get_settings, utc_today

__all__ = [
    "DAILY",
    "NEW_DATA_TAGS",
    "daily_partitions",
    "partition_range_tags",
    "run_scope",
    "run_windows",
    "window_label",
    "window_of",
]

SCOPE_TAG = "analyticspro/scope"
NEW_DATA_TAGS = {SCOPE_TAG: "new-data"}


def daily_partitions() -> dg.DailyPartitionsDefinition:
    # end_offset=1: today's partition exists while the day is still running (the hourly and real-time runs fill it)
    return dg.DailyPartitionsDefinition(
        start_date=get_settings().partitions_start_date.isoformat(), end_offset=1, timezone="UTC"
    )


DAILY = daily_partitions()


def window_of(context: dg.AssetExecutionContext) -> tuple[date, date] | None:
    """The run's partition window as UTC dates [start, end), or None for a run without partitions."""
    if not context.has_partition_key_range and not context.has_partition_key:
        return None
    window = context.partition_time_window
    return _as_date(window.start), _as_date(window.end)


def run_scope(context: dg.AssetExecutionContext) -> tuple[tuple[date, date] | None, str]:
    """What a run works on, and how to say it: the window of dates it re-reads (its partitions'), or None for a
    new-data run (NEW_DATA_TAGS), which folds in everything new instead."""
    if context.run.tags.get(SCOPE_TAG) == NEW_DATA_TAGS[SCOPE_TAG]:
        return None, "everything new"
    window = window_of(context)
    return window, window_label(window)


def _as_date(moment: datetime) -> date:
    return moment.date()


def partition_range_tags(first: date, last: date) -> dict[str, str]:
    """Run tags that make one run cover the daily partitions first..last (inclusive): a single-run backfill."""
    return {ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()}


def run_windows(days: Iterable[date]) -> list[tuple[date, date]]:
    """The days given (clamped to the partitions that exist) as runs of consecutive days [(first, last), ...]: one
    run per stretch, so a late object under an old date does not make a run span every day in between (a run
    records a materialization per asset and partition)."""
    first_partition = get_settings().partitions_start_date
    today = utc_today()
    clamped = sorted({min(max(day, first_partition), today) for day in days})
    windows: list[tuple[date, date]] = []
    for day in clamped:
        if windows and day - windows[-1][1] <= timedelta(days=1):
            windows[-1] = (windows[-1][0], day)
        else:
            windows.append((day, day))
    return windows


def window_label(window: tuple[date, date] | None) -> str:
    if window is None:
        return "all dates"
    start, end = window
    last = end - timedelta(days=1)
    return start.isoformat() if start == last else f"{start} .. {last}"
