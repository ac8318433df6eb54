"""The query builder's compiler on its own (no database): nothing a request says reaches the SQL text, and every
refusal says what to change."""

from __future__ import annotations

from datetime import date

import pytest

from dashboards.insight import Catalogue, Filter, Insight, InsightError, compile_insight, to_psycopg

CATALOGUE = Catalogue.from_rows(
    [
        {"event_name": "purchase_completed", "property_key": "plan", "value_types": "string"},
        {"event_name": "purchase_completed", "property_key": "revenue", "value_types": "number"},
        {"event_name": "purchase_completed", "property_key": "note", "value_types": "number,string"},
        {"event_name": "page", "property_key": "path", "value_types": "string"},
    ]
)
FIRST, LAST = date(2026, 11, 1), date(2026, 11, 28)
HOSTILE = "x'); drop table analytics.fct_events; --"


def question(**changes) -> Insight:
    base = {"event": "purchase_completed", "date_from": FIRST, "date_to": LAST}
    return Insight(**{**base, **changes})


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
def test_values_are_bound_never_written_into_the_sql(item):
    compiled = compile_insight(question(filters=(item,)), CATALOGUE)
    assert HOSTILE not in compiled.sql and "drop" not in compiled.sql.lower()
    assert HOSTILE in compiled.params
    statement, params = to_psycopg(compiled)
    assert "$" not in statement and params[f"p{compiled.params.index(HOSTILE) + 1}"] == HOSTILE


def test_property_keys_and_event_names_are_bound_too():
    filters = (Filter("event.revenue", ">", "10"),)
    compiled = compile_insight(question(group_by="event.plan", filters=filters), CATALOGUE)
    assert "'plan'" not in compiled.sql and "'revenue'" not in compiled.sql and "purchase_completed" not in compiled.sql
    assert compiled.params[:1] == ("purchase_completed",) and "plan" in compiled.params


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event": "purchase_complete"}, "did you mean 'purchase_completed'"),
        ({"event": HOSTILE}, "unknown event"),
        ({"filters": (Filter("event.plann", "=", "pro"),)}, "did you mean 'plan'"),
        ({"filters": (Filter("user.shoe_size", "=", "9"),)}, "unknown person field"),
        ({"filters": (Filter("plan", "=", "pro"),)}, "event.<property> or user.<field>"),
        ({"filters": (Filter("event.plan", "like", "pro"),)}, "unknown operator"),
        ({"filters": (Filter("event.plan", ">", "3"),)}, "holds no numbers"),
        ({"filters": (Filter("event.revenue", ">", "ten"),)}, "is not a number"),
        ({"filters": (Filter("event.revenue", ">", "Infinity"),)}, "not a finite number"),
        ({"filters": (Filter("event.revenue", "<", "1e400"),)}, "out of range"),
        ({"filters": (Filter("user.signup_date", ">", "yesterday"),)}, "not a date"),
        ({"filters": (Filter("user.is_identified", "=", "maybe"),)}, "true or false"),
        ({"filters": (Filter("event.plan", "="),)}, "needs a value"),
        ({"filters": (Filter("event.plan", "=", "a\x00b"),)}, "NUL"),
        ({"filters": (Filter("event.plan", "=", "x" * 1001),)}, "longer than 1000"),
        ({"filters": (Filter("event.plan", "is set"),) * 11}, "at most 10 filters"),
        ({"group_by": "hour"}, "event.<property> or user.<field>"),
        ({"date_from": date(2024, 1, 1)}, "at most 366"),
        ({"date_to": date(2026, 10, 1)}, "ends (2026-10-01) before it starts"),
        ({"sample": 0.0}, "sample must be in (0, 1]"),
        ({"sample": 1.5}, "sample must be in (0, 1]"),
        ({"sample": 0.0001}, "at least 0.001"),
    ],
)
def test_refusals_say_what_to_change(changes, message):
    with pytest.raises(InsightError) as refused:
        compile_insight(question(**changes), CATALOGUE)
    assert message in str(refused.value)


def test_a_sample_reads_pages_and_scales_an_exact_question_does_not():
    sampled = compile_insight(question(sample=0.1, date_from=date(2024, 1, 1)), CATALOGUE)  # wide is fine sampled
    assert "tablesample system" in sampled.sql and sampled.scale == pytest.approx(10.0)
    assert "ctid" in sampled.sql  # per-page counts for the margin of error
    exact = compile_insight(question(sample=1.0), CATALOGUE)
    assert "tablesample" not in exact.sql and exact.scale == 1.0


def test_mixed_type_properties_compare_only_their_numbers():
    compiled = compile_insight(question(filters=(Filter("event.note", ">", "5"),)), CATALOGUE)
    assert "jsonb_typeof" in compiled.sql  # a string value is not compared (and cannot fail the cast)
