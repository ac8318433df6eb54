"""The query builder as a special case of the insights engine's trends, on its own (no database): a question becomes
the trends spec it stands for, nothing a request says reaches a statement's text, and every refusal says what to
change in the API's own names."""

from __future__ import annotations

from datetime import date

import pytest

from dashboards.insight import Filter, Insight, InsightError, api_message, insight_rows, to_trends
from insights import trends
from insights.filters import Catalogue, Compiler
from insights.spec import SpecError

CATALOGUE = Catalogue(
    event_ids={"purchase_completed": 1, "page": 2},
    properties={
        "purchase_completed": {"plan": "string", "revenue": "number", "note": "number,string"},
        "page": {"path": "string"},
    },
)
FIRST, LAST = date(2026, 11, 1), date(2026, 11, 28)
HOSTILE = "x'); drop table events; --"


def question(**changes) -> Insight:
    base = {"event": "purchase_completed", "date_from": FIRST, "date_to": LAST}
    return Insight(**{**base, **changes})


def compile_question(item: Insight) -> tuple[str, list]:
    """The statement and values the engine would run for the question."""
    compiler, seen = Compiler(CATALOGUE), []

    def fetch(statement: str, params: list) -> list:
        seen.append((statement, list(params)))
        return []

    try:
        trends.answer(to_trends(item, 366), compiler, fetch)
    except SpecError as error:  # what the engine raises at compile time; the API words it in its own names
        raise InsightError(str(error)) from None
    return seen[0]


def test_a_question_is_two_trends_series():
    spec = to_trends(question(filters=(Filter("event.plan", "=", "pro"),), group_by="week"), 366)
    assert [s.math for s in spec.series] == ["total", "persons"] and spec.interval == "week"
    assert spec.series[0].selector.where[0].value == "pro" and spec.breakdown is None
    grouped = to_trends(question(group_by="user.plan", sample=0.1), 366)  # a sample is accepted and ignored
    assert grouped.interval == "all" and grouped.breakdown == "user.plan"


@pytest.mark.parametrize(
    "item",
    [
        Filter("event.plan", "=", HOSTILE),
        Filter("event.plan", "!=", HOSTILE),
        Filter("event.plan", "contains", HOSTILE),
        Filter("user.plan", "=", HOSTILE),
        Filter("user.email", "contains", HOSTILE),
        Filter("event.utm_source", "=", HOSTILE),
    ],
)
def test_values_are_bound_never_written_into_the_statement(item):
    statement, params = compile_question(question(filters=(item,)))
    assert HOSTILE not in statement and "drop" not in statement.lower()
    assert HOSTILE in params


def test_property_keys_and_event_names_are_bound_too():
    statement, params = compile_question(question(group_by="event.plan", filters=(Filter("event.revenue", ">", "10"),)))
    assert "plan" not in statement and "revenue" not in statement and "purchase_completed" not in statement
    assert "/plan" in params and "/revenue" in params and 1 in params  # JSON pointers; the event's id


def test_rows_are_read_off_the_series():
    answer = {
        "series": [
            {"label": "e", "breakdown_value": "pro", "points": [{"date": "2026-11-01", "value": 5}]},
            {"label": "p", "breakdown_value": "pro", "points": [{"date": "2026-11-01", "value": 3}]},
            {"label": "e", "breakdown_value": "other", "points": [{"date": "2026-11-01", "value": 2}]},
            {"label": "p", "breakdown_value": "other", "points": [{"date": "2026-11-01", "value": 2}]},
        ]
    }
    rows = insight_rows(question(group_by="event.plan"), answer)
    assert [(r["group"], r["events"], r["persons"]) for r in rows["rows"]] == [("pro", 5, 3), ("other", 2, 2)]
    assert rows["truncated"] and not rows["estimated"]
    days = ("2026-11-01", "2026-11-02")
    daily = {
        "series": [
            {"breakdown_value": None, "points": [{"date": d, "value": v} for d, v in zip(days, values, strict=True)]}
            for values in ((0, 4), (0, 1))
        ]
    }
    assert insight_rows(question(), daily)["rows"] == [
        {"bucket": date(2026, 11, 2), "group": None, "events": 4, "persons": 1, "events_margin": 0}
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event": "purchase_complete"}, "event: unknown event 'purchase_complete'; did you mean 'purchase_completed'"),
        ({"event": HOSTILE}, "unknown event"),
        ({"filters": (Filter("event.plann", "=", "pro"),)}, "filters[0].field: unknown property 'plann'"),
        ({"filters": (Filter("user.shoe_size", "=", "9"),)}, "unknown person field"),
        ({"filters": (Filter("plan", "=", "pro"),)}, "event.<property> or user.<field>"),
        ({"filters": (Filter("event.plan", "like", "pro"),)}, "filters[0].op: unknown operator 'like'"),
        ({"filters": (Filter("event.plan", ">", "3"),)}, "holds no numbers"),
        ({"filters": (Filter("event.revenue", ">", "ten"),)}, "is not a number"),
        ({"filters": (Filter("event.revenue", ">", "Infinity"),)}, "not a finite number"),
        ({"filters": (Filter("event.revenue", "<", "1e400"),)}, "not a finite number"),
        ({"filters": (Filter("user.signup_date", ">", "yesterday"),)}, "not a date"),
        ({"filters": (Filter("user.is_identified", "=", "maybe"),)}, "true or false"),
        ({"filters": (Filter("event.plan", "="),)}, "filters[0].value is required"),
        ({"filters": (Filter("event.plan", "=", "a\x00b"),)}, "NUL"),
        ({"filters": (Filter("event.plan", "=", "x" * 1001),)}, "longer than 1000"),
        ({"filters": (Filter("event.plan", "is set"),) * 11}, "filters: 11 given"),
        ({"group_by": "hour"}, "groupBy: 'hour' must be event.<property> or user.<field>"),
        ({"date_from": date(2024, 1, 1)}, "at most 366"),
        ({"date_to": date(2026, 10, 1)}, "ends (2026-10-01) before it starts"),
    ],
)
def test_refusals_say_what_to_change(changes, message):
    with pytest.raises(InsightError) as refused:
        compile_question(question(**changes))
    assert message in api_message(str(refused.value))


def test_mixed_type_properties_compare_only_their_numbers():
    statement, _ = compile_question(question(filters=(Filter("event.note", ">", "5"),)))
    assert "try_cast" in statement  # a string value is not compared (and cannot fail the cast)
