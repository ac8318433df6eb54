"""Checks and read-outs of the warehouse that the CLI and tests share (plain psycopg2 and redis)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg2
import redis

from common.db import table_exists
from common.dbt_vars import default_funnel_name
from common.redis_keys import HotKeys
from common.settings import Settings

HOT_METRIC_NAMES = ("signups", "dau", "events")


def read_daily_metrics(connection, day: date, names: Iterable[str] = HOT_METRIC_NAMES) -> dict[str, Decimal]:
    """The day's values from analytics.daily_metrics; a metric with no row (no events yet that day) is 0."""
    names = list(names)
    with connection.cursor() as cursor:
        cursor.execute(
            "select metric_name, value from analytics.daily_metrics where date = %s and metric_name = any(%s)",
            (day, names),
        )
        found = dict(cursor.fetchall())
    return {name: Decimal(found.get(name, 0)) for name in names}


@dataclass
class WarehouseSummary:
    day: date
    raw_events: int = 0
    collector_events: int = 0  # loaded from the objects `analyticspro collector` wrote to the bucket
    rejected_events: int = 0
    people: int = 0
    signups_today: int = 0
    dau_today: int = 0
    mau_today: int = 0
    mrr_today: Decimal = Decimal(0)
    funnel: list[tuple[str, int]] = field(default_factory=list)  # default funnel: (step, persons), all cohorts
    first_day: date | None = None
    last_day: date | None = None
    redis_keys: dict[str, str] = field(default_factory=dict)


def _scalar(cursor, query: str, args: tuple = ()) -> int:
    cursor.execute(query, args)
    row = cursor.fetchone()
    return int(row[0] or 0) if row else 0


def summarize(settings: Settings, day: date | None = None) -> WarehouseSummary:
    day = day or datetime.now(UTC).date()
    summary = WarehouseSummary(day=day)
    with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
        if table_exists(cursor, "raw.events"):
            summary.raw_events = _scalar(cursor, "select count(*) from raw.events")
        if table_exists(cursor, "raw.loaded_objects"):
            summary.collector_events = _scalar(
                cursor,
                "select sum(events) from raw.loaded_objects where object_url like %s",
                ("%/analyticspro-collector-%",),
            )
        if table_exists(cursor, "raw.rejected_events"):
            summary.rejected_events = _scalar(cursor, "select count(*) from raw.rejected_events")
        if table_exists(cursor, "analytics.dim_users"):
            summary.people = _scalar(cursor, "select count(*) from analytics.dim_users")
        if table_exists(cursor, "analytics.daily_metrics"):
            values = read_daily_metrics(connection, day, ("signups", "dau", "mau", "mrr"))
            summary.signups_today = int(values["signups"])
            summary.dau_today = int(values["dau"])
            summary.mau_today = int(values["mau"])
            summary.mrr_today = values["mrr"]
            cursor.execute("select min(date), max(date) from analytics.daily_metrics")
            summary.first_day, summary.last_day = cursor.fetchone()
        if table_exists(cursor, "analytics.fct_funnel_steps"):
            cursor.execute(
                "select step_name, sum(persons) from analytics.fct_funnel_steps where funnel_name = %s "
                "group by step_index, step_name order by step_index",
                (default_funnel_name(),),
            )
            summary.funnel = [(name, int(persons)) for name, persons in cursor.fetchall()]
    connection.close()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = sorted(client.scan_iter(match=HotKeys(settings.redis_key_prefix).published_pattern, count=500))
    dated = re.compile(r":\d{4}-\d{2}-\d{2}$")
    shown = [key for key in keys if key.endswith(day.isoformat()) or not dated.search(key)]
    summary.redis_keys = {key: client.get(key) for key in shown}
    return summary
