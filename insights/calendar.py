"""UTC days, weeks (starting on Monday) and months: the buckets every answer is laid out in."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta


def midnight(day: date) -> datetime:
    """00:00 UTC of `day`, as the engine's naive UTC timestamps."""
    return datetime.combine(day, time())


def period_start(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def next_period(start: date, interval: str, count: int = 1) -> date:
    """The start of the period `count` periods after the one starting on `start`."""
    if interval == "day":
        return start + timedelta(days=count)
    if interval == "week":
        return start + timedelta(weeks=count)
    months = start.year * 12 + start.month - 1 + count
    return date(months // 12, months % 12 + 1, 1)


def periods(first: date, last: date, interval: str) -> list[date]:
    """The start of every period that overlaps [first, last], in order ("all": the range is one period)."""
    if interval == "all":
        return [first]
    found, current = [], period_start(first, interval)
    while current <= last:
        found.append(current)
        current = next_period(current, interval)
    return found


def trunc(interval: str, column: str) -> str:
    """SQL: the start date of `column`'s period (interval is one of spec.INTERVALS, never a request's text)."""
    assert interval in ("day", "week", "month")
    return f"cast(date_trunc('{interval}', {column}) as date)"
