"""Trends: one or more series (an event and its filters, counted as events, unique persons, or the sum, average,
minimum or maximum of a numeric property) per day, week or month, optionally broken down by a property (the 25
values with the most events in the range keep their name, the rest are one "other"), combined by a formula
(`A / B * 100`), and compared with the period just before.

All series are one statement: each series' matching events are tagged with the series' letter and aggregated
together, so the breakdown's top values are the same for every series and a formula can combine them point by point.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from insights.calendar import midnight, periods, trunc
from insights.filters import NONE_LABEL, Compiler
from insights.spec import SpecError, TrendsSpec

TOP_BREAKDOWN_VALUES = 25
OTHER = "other"
LETTERS = "ABCDEFGHIJ"
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def parse_formula(text: str, series: int) -> ast.expr:
    """The formula's syntax tree: numbers, the letters of the series (A is the first), + - * / and parentheses."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise SpecError(f"formula: {text!r} is not a formula; write e.g. A / B * 100") from None
    allowed = LETTERS[:series]
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in allowed:
                raise SpecError(f"formula: {node.id!r} names no series; the series here are {', '.join(allowed)}")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise SpecError(f"formula: {node.value!r} is not a number")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _OPERATORS:
                raise SpecError("formula: only + - * / and parentheses combine series")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub | ast.UAdd):
                raise SpecError("formula: only + - * / and parentheses combine series")
        elif not isinstance(node, ast.operator | ast.unaryop | ast.Load):
            raise SpecError("formula: only numbers, series letters, + - * / and parentheses are allowed")
    return tree


def evaluate(tree: ast.expr, values: dict[str, float | None]) -> float | None:
    """The formula at one point; None where a series has no value or a division is by zero."""
    if isinstance(tree, ast.Constant):
        return float(tree.value)
    if isinstance(tree, ast.Name):
        return values[tree.id]
    if isinstance(tree, ast.UnaryOp):
        inner = evaluate(tree.operand, values)
        return None if inner is None else (-inner if isinstance(tree.op, ast.USub) else inner)
    assert isinstance(tree, ast.BinOp)
    left, right = evaluate(tree.left, values), evaluate(tree.right, values)
    if left is None or right is None or (isinstance(tree.op, ast.Div) and right == 0):
        return None
    return _OPERATORS[type(tree.op)](left, right)


def _label(series_spec: Any) -> str:
    selector = series_spec.selector
    if selector.name:
        return selector.name
    if series_spec.math == "total":
        return selector.label
    if series_spec.math == "persons":
        return f"{selector.label} (persons)"
    return f"{selector.label} ({series_spec.math} of {series_spec.property})"


def _breakdowns(spec: TrendsSpec, compiler: Compiler) -> list[tuple[str, str]]:
    """Each series' breakdown expression and join. A property only some series' events carry is "(none)" for the
    others; one that none of them carries is an error."""
    if not spec.breakdown:
        return [("null", "")] * len(spec.series)
    found: list[tuple[str, str] | None] = []
    errors = []
    for item in spec.series:
        try:
            found.append(compiler.breakdown(spec.breakdown, compiler.event_names(item.selector)))
        except SpecError as error:
            found.append(None)
            errors.append(error)
    if all(item is None for item in found):
        raise errors[0]
    return [item or (compiler.params.bind(NONE_LABEL), "") for item in found]


def _statement(spec: TrendsSpec, compiler: Compiler, first: date, last: date) -> str:
    bind = compiler.params.bind
    start, end = bind(midnight(first)), bind(midnight(last + timedelta(days=1)))
    current = bind(midnight(spec.date_from))
    if spec.interval == "all":  # one bucket per window: the range, and the previous period when compared
        bucket = f"case when e.event_at >= {current} then {bind(spec.date_from)} else {bind(first)} end"
    else:
        bucket = trunc(spec.interval, "e.event_at")
    breakdowns = _breakdowns(spec, compiler)
    parts = []
    for index, item in enumerate(spec.series):
        events = compiler.event_names(item.selector)
        value = "null::double"
        if item.property is not None:
            key = item.property.removeprefix("event.")
            expression, _kind, _person = compiler.field(f"event.{key}", events, f"series[{index}].property")
            value = f"try_cast({expression} as double)"
        breakdown, join = breakdowns[index]
        parts.append(
            f"""select {index} as s, e.person_key, e.event_at >= {current} as cur, {bucket} as bucket, {value} as v,
           {breakdown} as b
    from events as e {join}
    where {compiler.selector(item.selector)} and e.event_at >= {start} and e.event_at < {end}"""
        )
    matched = "\n    union all\n    ".join(parts)
    return f"""
with matched as (
    {matched}
),
top as (
    select b from matched where cur and b is not null group by b order by count(*) desc, b limit {TOP_BREAKDOWN_VALUES}
),
labelled as (
    select *, case when b is null then null when b in (select b from top) then b else {bind(OTHER)} end as label
    from matched
)
select s, cur, label, bucket, count(*), count(distinct person_key), sum(v), avg(v), min(v), max(v), count(v)
from labelled
group by all
"""


def _value(math: str, row: tuple) -> float | int | None:
    total, persons, total_sum, average, low, high, counted = row
    if math == "total":
        return int(total)
    if math == "persons":
        return int(persons)
    if not counted:
        return 0 if math == "sum" else None
    number = {"sum": total_sum, "avg": average, "min": low, "max": high}[math]
    return round(float(number), 6)


def answer(spec: TrendsSpec, compiler: Compiler, fetch: Callable[[str, list], list[tuple]]) -> dict[str, Any]:
    formula = parse_formula(spec.formula, len(spec.series)) if spec.formula else None
    length = spec.date_to - spec.date_from + timedelta(days=1)
    first = spec.date_from - length if spec.compare else spec.date_from
    rows = fetch(_statement(spec, compiler, first, spec.date_to), compiler.params.values)
    found: dict[tuple[int, bool, str | None], dict[date, tuple]] = {}
    events_per_label: dict[str | None, int] = {}
    for s, cur, label, bucket, *aggregates in rows:
        found.setdefault((s, cur, label), {})[bucket] = tuple(aggregates)
        if cur:
            events_per_label[label] = events_per_label.get(label, 0) + aggregates[0]
    if spec.breakdown:
        labels: list[str | None] = sorted(
            (v for v in events_per_label if v != OTHER), key=lambda v: (-events_per_label[v], v)
        )
        if OTHER in events_per_label:
            labels.append(OTHER)
    else:
        labels = [None]
    windows = [(True, spec.date_from, spec.date_to)]
    if spec.compare:
        windows.append((False, spec.date_from - length, spec.date_from - timedelta(days=1)))
    result = []
    for cur, window_first, window_last in windows:
        buckets = periods(window_first, window_last, spec.interval)
        for label in labels:
            values = {}
            for index, item in enumerate(spec.series):
                by_bucket = found.get((index, cur, label), {})
                empty = (0, 0, None, None, None, None, 0)
                values[LETTERS[index]] = [_value(item.math, by_bucket.get(day, empty)) for day in buckets]
                result.append(_series(_label(item), label, buckets, values[LETTERS[index]], cur))
            if formula is not None:
                points = [
                    evaluate(formula, {letter: values[letter][i] for letter in values}) for i in range(len(buckets))
                ]
                rounded = [None if v is None else round(v, 6) for v in points]
                result.append(_series(str(spec.formula), label, buckets, rounded, cur))
    return {"series": result}


def _series(label: str, value: str | None, buckets: list[date], points: list, current: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "label": label if current else f"{label} (previous period)",
        "breakdown_value": value,
        "points": [{"date": day.isoformat(), "value": point} for day, point in zip(buckets, points, strict=True)],
    }
    if not current:
        item["compare"] = "previous"
    return item
