"""The overview's marts in the process: daily metrics, the configured funnels' steps, cohort retention and monthly
revenue, read whole from PostgreSQL and answered for any date range without a query.

These marts hold one row per day, cohort or month (a few thousand rows for years of data), and a custom date range
is a slice of them. Read per request, they cost four round trips and PostgreSQL's CPU beside the service on every
uncached overview; held here, a range is a bisect and a sum. The copy is read again, in the background, once it is
older than DASHBOARD_MARTS_REFRESH_SECONDS (5): an answer is at most that much older than the marts (a preset
range's answer may be 60 s old in the Redis cache). The first request of a process waits for the first read. When
PostgreSQL cannot answer a refresh, the last copy keeps serving and the failure is logged; a mart that does not
exist yet is reported to whoever asks for it, with what to do.

Each answer is the one the marts' SQL gave before (dashboards/warehouse.py kept the statements' meaning: sums of
persons and drop-off by step over the cohorts in range, rows ordered by date and metric name, by cohort and period).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

log = logging.getLogger("analyticspro.dashboards")

DAILY = "select metric_name, date, value from analytics.daily_metrics order by metric_name, date"
FUNNELS = (
    "select funnel_name, cohort_date, step_index, step_name, persons, drop_off from analytics.fct_funnel_steps "
    "order by funnel_name, cohort_date, step_index"
)
RETENTION = (
    "select cohort_grain, cohort_start, period_number, cohort_size, retained_persons, retention_rate "
    "from analytics.fct_cohort_retention order by cohort_grain, cohort_start, period_number"
)
REVENUE = "select * from analytics.revenue_monthly order by month"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, Decimal) else float(value or 0)


def _sum(values: list[int | None]) -> int | None:
    """SQL's sum: the nulls left out, null when nothing is left."""
    present = [value for value in values if value is not None]
    return sum(present) if present else None


@dataclass
class Marts:
    """One read of the four marts; `errors` holds why a mart could not be read (it does not exist yet)."""

    daily: dict[str, tuple[list[date], list[float]]] = field(default_factory=dict)  # metric -> (dates, values)
    funnels: dict[str, tuple[list[date], list[tuple[int, str, int | None, int | None]]]] = field(default_factory=dict)
    retention: dict[str, tuple[list[date], list[tuple[date, int, int, int, float]]]] = field(default_factory=dict)
    revenue: tuple[list[date], list[dict[str, Any]]] = ([], [])
    errors: dict[str, Exception] = field(default_factory=dict)

    def _check(self, mart: str) -> None:
        if mart in self.errors:
            raise self.errors[mart]

    def daily_metrics(self, names: list[str], first: date, last: date) -> list[dict[str, Any]]:
        self._check("daily_metrics")
        rows = []
        for name in set(names):
            dates, values = self.daily.get(name, ([], []))
            start, end = bisect.bisect_left(dates, first), bisect.bisect_right(dates, last)
            rows.extend({"date": dates[i], "metric": name, "value": values[i]} for i in range(start, end))
        rows.sort(key=lambda row: (row["date"], row["metric"]))
        return rows

    def funnel_names(self) -> list[str]:
        self._check("fct_funnel_steps")
        return sorted(self.funnels)

    def funnel_steps(self, name: str, first: date, last: date) -> list[tuple[int, str, int | None, int | None]]:
        """(step index, step name, persons, drop-off) summed over the cohorts from `first` to `last`, by step."""
        self._check("fct_funnel_steps")
        dates, rows = self.funnels.get(name, ([], []))
        start, end = bisect.bisect_left(dates, first), bisect.bisect_right(dates, last)
        steps: dict[tuple[int, str], tuple[list[int | None], list[int | None]]] = {}
        for index, step_name, persons, drop_off in rows[start:end]:
            summed = steps.setdefault((index, step_name), ([], []))
            summed[0].append(persons)
            summed[1].append(drop_off)
        return [(index, step, _sum(p), _sum(d)) for (index, step), (p, d) in sorted(steps.items())]

    def retention_rows(self, grain: str, first: date, last: date) -> list[tuple[date, int, int, int, float]]:
        """(cohort start, period, cohort size, retained persons, rate) of the cohorts starting in the range."""
        self._check("fct_cohort_retention")
        dates, rows = self.retention.get(grain, ([], []))
        return rows[bisect.bisect_left(dates, first) : bisect.bisect_right(dates, last)]

    def revenue_months(self, first: date, last: date) -> list[dict[str, Any]]:
        """The months from the one holding `first` to `last`."""
        self._check("revenue_monthly")
        months, rows = self.revenue
        return rows[bisect.bisect_left(months, first.replace(day=1)) : bisect.bisect_right(months, last)]


Fetch = Callable[[str], Awaitable[list[Any]]]


async def read_marts(fetch: Fetch, missing: tuple[type[Exception], ...]) -> Marts:
    """Every mart, read now; a mart whose read raises one of `missing` is recorded as missing, not fatal."""
    marts = Marts()
    try:
        for row in await fetch(DAILY):
            dates, values = marts.daily.setdefault(row["metric_name"], ([], []))
            dates.append(row["date"])
            values.append(_number(row["value"]))
    except missing as error:
        marts.errors["daily_metrics"] = error
    try:
        for row in await fetch(FUNNELS):
            dates, steps = marts.funnels.setdefault(row["funnel_name"], ([], []))
            dates.append(row["cohort_date"])
            steps.append((row["step_index"], row["step_name"], row["persons"], row["drop_off"]))
    except missing as error:
        marts.errors["fct_funnel_steps"] = error
    try:
        for row in await fetch(RETENTION):
            dates, cohorts = marts.retention.setdefault(row["cohort_grain"], ([], []))
            dates.append(row["cohort_start"])
            cohorts.append(
                (
                    row["cohort_start"],
                    row["period_number"],
                    row["cohort_size"],
                    row["retained_persons"],
                    _number(row["retention_rate"]),
                )
            )
    except missing as error:
        marts.errors["fct_cohort_retention"] = error
    try:
        rows = [
            {key: (_number(value) if isinstance(value, Decimal) else value) for key, value in row.items()}
            for row in await fetch(REVENUE)
        ]
        marts.revenue = ([row["month"] for row in rows], rows)
    except missing as error:
        marts.errors["revenue_monthly"] = error
    return marts


class MartsCopy:
    """The process's copy of the marts: `get()` answers at once from the current copy and, when it is older than
    `refresh_seconds`, starts reading a new one in the background (0: read on every call, as a direct query)."""

    def __init__(self, fetch: Fetch, missing: tuple[type[Exception], ...], refresh_seconds: float) -> None:
        self._fetch = fetch
        self._missing = missing
        self.refresh_seconds = refresh_seconds
        self._marts: Marts | None = None
        self._read_at = 0.0
        self._reading: asyncio.Task | None = None
        self._first = asyncio.Lock()

    async def get(self) -> Marts:
        if self._marts is None or self.refresh_seconds <= 0:
            async with self._first:
                if self._marts is None or self.refresh_seconds <= 0:
                    await self._read()
            assert self._marts is not None
            return self._marts
        if time.monotonic() - self._read_at >= self.refresh_seconds and self._reading is None:
            self._reading = asyncio.create_task(self._refresh())
        return self._marts

    async def _read(self) -> None:
        started = time.monotonic()
        self._marts = await read_marts(self._fetch, self._missing)
        self._read_at = started

    async def _refresh(self) -> None:
        try:
            await self._read()
        except Exception as error:  # noqa: BLE001 - the copy keeps serving; the next call tries again
            log.warning("could not read the marts again (%s); answering from the copy read %.0fs ago", error,
                        time.monotonic() - self._read_at)  # fmt: skip
            self._read_at = time.monotonic()  # try again after another interval, not on every request
        finally:
            self._reading = None
