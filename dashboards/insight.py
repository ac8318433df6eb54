"""The no-code query builder: "Show me [event] where [filters] grouped by [date or property]".

A question compiles to parameterized SQL only. Identifiers never come from the request: the event name
and every property key are checked against the catalogue (analytics.dim_event_properties) and then bound
as values like everything else; person fields map to a fixed list of dim_users columns; the date grain is
chosen from a fixed list. So no input can change the statement's shape, let alone inject SQL.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

OPERATORS = ("=", "!=", ">", "<", "contains", "is set", "is not set")
DATE_GRAINS = ("day", "week", "month")
MAX_FILTERS = 10
MAX_VALUE_LENGTH = 1000
MAX_GROUPS = 50
EXPORT_MAX_DAYS = 3660  # an export runs in the background: ten years is fine
SAMPLE_SEED = 20260101

# person fields: the dim_users column and the kind of comparison it supports
PERSON_FIELDS: dict[str, str] = {
    "plan": "text",
    "country": "text",
    "email": "text",
    "user_id": "text",
    "mrr": "numeric",
    "signup_date": "date",
    "is_identified": "boolean",
}
# typed columns of fct_events that a question may also filter or group on (when no property has the name)
EVENT_COLUMNS = ("page_path", "referrer", "utm_source", "utm_medium", "utm_campaign")


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
    sample: float | None = None  # None or 1.0: exact

    @property
    def estimated(self) -> bool:
        return self.sample is not None and self.sample < 1.0


@dataclass
class Catalogue:
    """Event names and the property keys each has carried (analytics.dim_event_properties)."""

    properties: dict[str, set[str]] = field(default_factory=dict)
    value_types: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[Mapping]) -> Catalogue:
        catalogue = cls()
        for row in rows:
            catalogue.properties.setdefault(row["event_name"], set()).add(row["property_key"])
            catalogue.value_types[(row["event_name"], row["property_key"])] = row["value_types"]
        return catalogue

    @property
    def events(self) -> list[str]:
        return sorted(self.properties)


@dataclass(frozen=True)
class Compiled:
    sql: str
    params: tuple
    scale: float  # multiply sampled counts by this


class _Params:
    def __init__(self) -> None:
        self.values: list = []

    def bind(self, value: object, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{cast}"


def _closest(name: str, known: list[str]) -> str:
    near = difflib.get_close_matches(name, known, n=3)
    if near:
        return f"did you mean {', '.join(repr(n) for n in near)}?"
    shown = ", ".join(known[:15]) + (" ..." if len(known) > 15 else "")
    return f"known: {shown or '(none yet: build the marts first)'}"


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InsightError(f"{what} must be a string")
    if len(value) > MAX_VALUE_LENGTH:
        raise InsightError(f"{what} is longer than {MAX_VALUE_LENGTH} characters")
    if "\x00" in value:
        raise InsightError(f"{what} contains a NUL character")
    return value


def _number(value: str | None, field_name: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InsightError(f"{field_name}: {value!r} is not a number; > and < compare numbers") from None
    if not number.is_finite():
        raise InsightError(f"{field_name}: {value!r} is not a finite number")
    if number and not -100 <= number.adjusted() <= 100:
        raise InsightError(f"{field_name}: {value!r} is out of range (at most 100 digits either side of the point)")
    return number


def validate(question: Insight, catalogue: Catalogue, max_days: int) -> None:
    _check_text(question.event, "event")
    if question.event not in catalogue.properties:
        raise InsightError(f"unknown event {question.event!r}: {_closest(question.event, catalogue.events)}")
    if question.date_to < question.date_from:
        raise InsightError(f"the date range ends ({question.date_to}) before it starts ({question.date_from})")
    days = (question.date_to - question.date_from).days + 1
    if days > max_days and not question.estimated:
        raise InsightError(
            f"the date range spans {days} days; an exact question may span at most {max_days}: narrow the range, "
            "ask for a sample (sample: 0.1), or export it (exportInsight runs in the background)"
        )
    if question.sample is not None and not (0.0 < question.sample <= 1.0):
        raise InsightError(f"sample must be in (0, 1], e.g. 0.1 for 10%; got {question.sample}")
    if question.sample is not None and question.sample < 0.001:
        raise InsightError("sample must be at least 0.001 (0.1%)")
    if len(question.filters) > MAX_FILTERS:
        raise InsightError(f"at most {MAX_FILTERS} filters; got {len(question.filters)}")


def _field_sql(field_name: str, question: Insight, catalogue: Catalogue, params: _Params) -> tuple[str, str, bool]:
    """(SQL expression, kind, needs the person join) for event.<key> or user.<field>."""
    _check_text(field_name, "field")
    scope, _, name = field_name.partition(".")
    if scope == "event" and name:
        keys = catalogue.properties.get(question.event, set())
        if name in keys:
            types = catalogue.value_types.get((question.event, name), "").split(",")
            # only numbers compare with > and <: all-number properties cast, mixed ones compare their numbers
            kind = "numeric" if types == ["number"] else ("json" if "number" in types else "text")
            return f"(e.properties ->> {params.bind(name)})", kind, False
        if name in EVENT_COLUMNS:
            return f"e.{name}", "text", False
        raise InsightError(
            f"unknown property {name!r} of event {question.event!r}: "
            f"{_closest(name, sorted(keys | set(EVENT_COLUMNS)))}"
        )
    if scope == "user" and name:
        if name not in PERSON_FIELDS:
            raise InsightError(f"unknown person field {name!r}: {_closest(name, sorted(PERSON_FIELDS))}")
        return f"u.{name}", PERSON_FIELDS[name], True
    raise InsightError(f"field {field_name!r} must be event.<property> or user.<field> (e.g. event.plan, user.plan)")


def _condition(item: Filter, question: Insight, catalogue: Catalogue, params: _Params) -> tuple[str, bool]:
    if item.op not in OPERATORS:
        raise InsightError(f"unknown operator {item.op!r}; use one of {', '.join(OPERATORS)}")
    expression, kind, person = _field_sql(item.field, question, catalogue, params)
    if item.op == "is set":
        return f"{expression} is not null", person
    if item.op == "is not set":
        return f"{expression} is null", person
    if item.value is None:
        raise InsightError(f"filter {item.field} {item.op} needs a value")
    value = _check_text(item.value, f"the value of {item.field}")
    if item.op in (">", "<"):
        if kind == "date":
            try:
                bound = date.fromisoformat(value)
            except ValueError:
                raise InsightError(f"{item.field}: {value!r} is not a date (YYYY-MM-DD)") from None
            return f"{expression} {item.op} {params.bind(bound)}", person
        if kind == "text" or kind == "boolean":
            raise InsightError(f"{item.field} holds no numbers: > and < compare numbers; use = or contains")
        number = _number(value, item.field)
        if kind == "json":  # only values that are JSON numbers compare
            key = params.values[-1]
            is_number = f"jsonb_typeof(e.properties -> {params.bind(key)}) = 'number'"
            numeric = f"(case when {is_number} then {expression}::numeric end)"
            return f"{numeric} {item.op} {params.bind(number)}", person
        return f"{expression}::numeric {item.op} {params.bind(number)}", person
    if item.op == "contains":
        return f"strpos(lower({expression}::text), lower({params.bind(value)})) > 0", person
    text = f"{expression}::text"
    if kind == "boolean":
        if value.lower() not in ("true", "false"):
            raise InsightError(f"{item.field} is true or false; got {value!r}")
        value = value.lower()
    if kind == "numeric" and item.op in ("=", "!="):
        number = _number(value, item.field)
        operator = "=" if item.op == "=" else "is distinct from"
        return f"{expression}::numeric {operator} {params.bind(number)}", person
    operator = "=" if item.op == "=" else "is distinct from"
    return f"{text} {operator} {params.bind(value)}", person


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def compile_insight(question: Insight, catalogue: Catalogue, max_days: int = 366) -> Compiled:
    """The question as one parameterized statement: rows of (bucket date, group, events, persons)."""
    validate(question, catalogue, max_days)
    params = _Params()
    where = [
        f"e.event_name = {params.bind(question.event)}",
        f"e.event_date between {params.bind(question.date_from)} and {params.bind(question.date_to)}",
        # the same bounds on event_at let the (event_name, event_at, person_id, event_date) index answer alone
        f"e.event_at >= {params.bind(_midnight(question.date_from))}",
        f"e.event_at < {params.bind(_midnight(question.date_to + timedelta(days=1)))}",
    ]
    person_where: list[str] = []
    for item in question.filters:
        condition, person = _condition(item, question, catalogue, params)
        (person_where if person else where).append(condition)

    join = ""
    if question.group_by in DATE_GRAINS:
        bucket = (
            "e.event_date" if question.group_by == "day" else f"date_trunc('{question.group_by}', e.event_date)::date"
        )
        group = "null::text"
    else:
        group_sql, _kind, person = _field_sql(question.group_by, question, catalogue, params)
        group = f"coalesce({group_sql}::text, '(none)')"
        bucket = "null::date"
        if person:
            join = "left join analytics.dim_users as u on u.person_id = e.person_id"
    if person_where:
        if join:
            where.extend(person_where)
        else:
            where.append(
                "e.person_id in (select u.person_id from analytics.dim_users as u where "
                + " and ".join(person_where)
                + ")"
            )

    source = "analytics.fct_events as e"
    scale = 1.0
    if question.estimated:
        assert question.sample is not None
        source += f" tablesample system ({params.bind(question.sample * 100)}::real) repeatable ({SAMPLE_SEED})"
        scale = 1.0 / question.sample

    # property groups: the MAX_GROUPS largest, and how many there were in all
    limit = f"limit {MAX_GROUPS}" if question.group_by not in DATE_GRAINS else ""
    order = "bucket" if question.group_by in DATE_GRAINS else "events desc, grp"
    if question.estimated:
        # SYSTEM sampling keeps each page with probability p: the estimate of a count is sum(y) / p over the
        # sampled pages' counts y, and its variance (1 - p) / p^2 * sum(y^2) (Horvitz-Thompson), so every
        # row carries sum(y^2) for its margin of error. Distinct persons cannot be scaled: not estimated.
        aggregate = """
pages as (
    select bucket, grp, tableoid, (ctid::text::point)[0] as page, count(*) as y
    from matched
    group by bucket, grp, tableoid, page
),
grouped as (
    select bucket, grp, sum(y)::bigint as events, null::bigint as persons, sum(y * y)::float8 as y2
    from pages
    group by bucket, grp
)"""
        matched_columns = "e.tableoid, e.ctid"
    else:
        aggregate = """
grouped as (
    select bucket, grp, count(*) as events, count(distinct person_id) as persons, 0::float8 as y2
    from matched
    group by bucket, grp
)"""
        matched_columns = "e.person_id"
    statement = f"""
with matched as (
    select {bucket} as bucket, {group} as grp, {matched_columns}
    from {source}
    {join}
    where {" and ".join(where)}
),{aggregate}
select bucket, grp, events, persons, y2, count(*) over () as groups_total
from grouped
order by {order}
{limit}
"""
    return Compiled(sql=statement, params=tuple(params.values), scale=scale)


def to_psycopg(compiled: Compiled) -> tuple[str, dict[str, object]]:
    """The same statement for psycopg2: $n placeholders become named %(pn)s ones."""
    statement = re.sub(r"\$(\d+)", r"%(p\1)s", compiled.sql)
    return statement, {f"p{n}": value for n, value in enumerate(compiled.params, start=1)}
