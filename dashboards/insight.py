"""The no-code query builder: "Show me [event] where [filters] grouped by [date or property]".

It is a special case of the insights engine's trends, not a second code path: a question becomes two series of the
event with its filters, `total` (events) and `persons`, by day, week or month, or over the whole range (`all`)
broken down by a property; the engine answers, and the rows the API has always given are read off its series.
Everything a request says is checked and bound by the engine (insights/filters.py), so no input can change the shape
of a statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from insights.filters import PERSON_FIELDS
from insights.spec import OPERATORS, SpecError, TrendsSpec, parse_spec

__all__ = ["OPERATORS", "PERSON_FIELDS", "Filter", "Insight", "InsightError", "insight_rows", "to_trends"]

DATE_GRAINS = ("day", "week", "month")
EXPORT_MAX_DAYS = 3660  # an export runs in the background: ten years is fine
OTHER = "other"


class InsightError(ValueError):
    """The question cannot be answered as asked; the message says what to change."""


@dataclass(frozen=True)
class Filter:
    field: str  # event.<property key or column> | user.<dim_users column>
    op: str
    value: str | None = None


@dataclass(frozen=True)
class Insight:
    event: str
    date_from: date
    date_to: date  # inclusive
    filters: tuple[Filter, ...] = ()
    group_by: str = "day"
    sample: float | None = None  # accepted for older clients; every answer is exact


def to_trends(question: Insight, max_days: int) -> TrendsSpec:
    """The question as the engine's trends spec; InsightError (naming the field as this API calls it) if it cannot
    be asked."""
    if question.date_to < question.date_from:
        raise InsightError(f"the date range ends ({question.date_to}) before it starts ({question.date_from})")
    days = (question.date_to - question.date_from).days + 1
    if days > max_days:
        raise InsightError(
            f"the date range spans {days} days; a question may span at most {max_days} (INSIGHT_MAX_DAYS): narrow "
            "the range, or export it (exportInsight runs in the background, over up to ten years)"
        )
    where = []
    for item in question.filters:
        condition = {"field": item.field, "op": item.op}
        if item.value is not None:
            condition["value"] = item.value
        where.append(condition)
    by_date = question.group_by in DATE_GRAINS
    series = {"event": question.event, "where": where}
    data = {
        "kind": "trends",
        "from": question.date_from.isoformat(),
        "to": question.date_to.isoformat(),
        "series": [{**series, "math": "total"}, {**series, "math": "persons"}],
        "interval": question.group_by if by_date else "all",
        "breakdown": None if by_date else question.group_by,
    }
    try:
        return parse_spec(data, max_days)  # type: ignore[return-value]
    except SpecError as error:
        raise InsightError(api_message(str(error))) from None


def api_message(message: str) -> str:
    """An engine message about the trends spec, in the query builder's own names (event, filters[i], groupBy)."""
    return message.replace("series[0].where", "filters").replace("series[0].", "").replace("breakdown", "groupBy")


def insight_rows(question: Insight, answer: dict[str, Any]) -> dict[str, Any]:
    """The rows of the query builder's answer from the engine's series: buckets (or groups, largest first, the rest
    as one "other") with at least one event, each with its events and distinct persons."""
    by_date = question.group_by in DATE_GRAINS
    rows = []
    series = answer["series"]
    for events, persons in zip(series[0::2], series[1::2], strict=True):
        for event_point, person_point in zip(events["points"], persons["points"], strict=True):
            if not event_point["value"]:
                continue
            rows.append(
                {
                    "bucket": date.fromisoformat(event_point["date"]) if by_date else None,
                    "group": None if by_date else events["breakdown_value"],
                    "events": event_point["value"],
                    "persons": person_point["value"],
                    "events_margin": 0,
                }
            )
    truncated = any(row["group"] == OTHER for row in rows)
    return {
        "rows": rows,
        "estimated": False,
        "sample_rate": 1.0,
        "groups_total": len(rows),
        "truncated": truncated,
    }
