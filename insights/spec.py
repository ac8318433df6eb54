"""A question as JSON (the CLI's SPEC file, GraphQL's `spec` argument, the query builder page) -> a typed spec.

Only the shape and the literal values are checked here; whether an event or a property exists is checked against
the engine's catalogue when the question is compiled (filters.py). Every error names the field it is about
(`steps[2].where[0].op: ...`), so a person or a script can fix the spec without reading a stack trace.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

OPERATORS = ("=", "!=", ">", "<", "contains", "is set", "is not set")
KINDS = ("funnel", "trends", "retention", "paths", "stickiness", "lifecycle")
MATHS = ("total", "persons", "sum", "avg", "min", "max")
INTERVALS = ("day", "week", "month")
MAX_STEPS = 10
MAX_SERIES = 10
MAX_FILTERS = 10
MAX_VALUE_LENGTH = 1000
MAX_WINDOW_DAYS = 365
MAX_PERIODS = 60
MAX_PATH_STEPS = 10
ANY = "any"  # retention's and lifecycle's "any activity": any track, page or screen event


class SpecError(ValueError):
    """The spec cannot be answered as written; the message names the field and says what to change."""


@dataclass(frozen=True)
class Condition:
    field: str  # event.<property or column> | user.<person field>
    op: str
    value: str | None = None


@dataclass(frozen=True)
class Selector:
    """Which events: a named event, a page path (`page` events of that path) or any activity; all `where` hold."""

    event: str | None = None
    page: str | None = None
    where: tuple[Condition, ...] = ()
    path: str = ""  # where it sits in the spec, for error messages
    name: str | None = None  # the label a person gave it

    @property
    def any_activity(self) -> bool:
        return self.event == ANY and self.page is None

    @property
    def label(self) -> str:
        if self.page is not None:
            return f"page {self.page}"
        return "any event" if self.any_activity else str(self.event)


@dataclass(frozen=True)
class Exclusion:
    selector: Selector
    after_step: int  # 1-based
    before_step: int


@dataclass(frozen=True)
class FunnelSpec:
    date_from: date
    date_to: date
    steps: tuple[Selector, ...]
    window_days: int = 14
    exclusions: tuple[Exclusion, ...] = ()
    breakdown: str | None = None
    interval: str = "day"  # conversion over time: by day or week of entry
    kind: str = "funnel"


@dataclass(frozen=True)
class Series:
    selector: Selector
    math: str = "total"
    property: str | None = None  # sum/avg/min/max: a numeric event property


@dataclass(frozen=True)
class TrendsSpec:
    date_from: date
    date_to: date
    series: tuple[Series, ...]
    interval: str = "day"
    breakdown: str | None = None
    formula: str | None = None
    compare: bool = False
    kind: str = "trends"


@dataclass(frozen=True)
class RetentionSpec:
    date_from: date
    date_to: date
    start: Selector
    returning: Selector
    period: str = "week"
    periods: int = 8
    mode: str = "first_time"
    kind: str = "retention"


@dataclass(frozen=True)
class PathsSpec:
    date_from: date
    date_to: date
    anchor: Selector
    direction: str = "next"
    steps: int = 5
    limit: int = 10  # most common targets kept per step; the rest are one "other" node
    kind: str = "paths"


@dataclass(frozen=True)
class StickinessSpec:
    date_from: date
    date_to: date
    selector: Selector
    interval: str = "day"
    kind: str = "stickiness"


@dataclass(frozen=True)
class LifecycleSpec:
    date_from: date
    date_to: date
    selector: Selector
    interval: str = "day"
    kind: str = "lifecycle"


Spec = FunnelSpec | TrendsSpec | RetentionSpec | PathsSpec | StickinessSpec | LifecycleSpec


class _Reader:
    """Reads one JSON object, remembering where it is for messages and refusing keys it does not know."""

    def __init__(self, data: object, path: str, known: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{path or 'the spec'}: expected a JSON object, got {_kind_of(data)}")
        unknown = sorted(set(data) - set(known))
        if unknown:
            where = f"{path}: " if path else ""
            raise SpecError(f"{where}unknown key {unknown[0]!r}; the keys here are {', '.join(known)}")
        self.data, self.path = data, path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: object = None) -> Any:
        value = self.data.get(key, default)
        return default if value is None else value

    def required(self, key: str) -> Any:
        if self.data.get(key) is None:
            raise SpecError(f"{self.at(key)} is required")
        return self.data[key]

    def text(self, key: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str | None:
        value = self.get(key, default)
        if value is None:
            return None
        value = _text(value, self.at(key))
        if choices and value not in choices:
            raise SpecError(f"{self.at(key)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{self.at(key)}: expected a whole number from {low} to {high}, got {_kind_of(value)}")
        if not low <= value <= high:
            raise SpecError(f"{self.at(key)}: {value} is out of range; use {low} to {high}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise SpecError(f"{self.at(key)}: expected true or false, got {_kind_of(value)}")
        return value

    def day(self, key: str) -> date:
        value = _text(self.required(key), self.at(key))
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise SpecError(f"{self.at(key)}: {value!r} is not a date; write YYYY-MM-DD") from None

    def items(self, key: str, low: int, high: int) -> list[tuple[str, object]]:
        value = self.get(key, [])
        if not isinstance(value, list):
            raise SpecError(f"{self.at(key)}: expected a list, got {_kind_of(value)}")
        if not low <= len(value) <= high:
            raise SpecError(f"{self.at(key)}: {len(value)} given; a question takes {low} to {high}")
        return [(f"{self.at(key)}[{index}]", item) for index, item in enumerate(value)]


def _kind_of(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{path}: expected a string, got {_kind_of(value)}")
    if len(value) > MAX_VALUE_LENGTH:
        raise SpecError(f"{path}: longer than {MAX_VALUE_LENGTH} characters")
    if "\x00" in value:
        raise SpecError(f"{path}: contains a NUL character")
    return value


def _value(value: object, path: str) -> str:
    """A filter's value as the text it is compared as: strings as they are, numbers and booleans as JSON writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{path}: {value} is not a finite number")
        return str(value)
    return _text(value, path)


def _condition(path: str, data: object) -> Condition:
    reader = _Reader(data, path, ("field", "op", "value"))
    field = reader.text("field")
    if field is None:
        raise SpecError(f"{reader.at('field')} is required (event.<property> or user.<field>)")
    op = reader.text("op", "=")
    assert op is not None
    if op not in OPERATORS:
        raise SpecError(f"{reader.at('op')}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    raw = reader.data.get("value")
    if op in ("is set", "is not set"):
        return Condition(field, op)
    if raw is None:
        raise SpecError(f"{reader.at('value')} is required for the operator {op!r}")
    return Condition(field, op, _value(raw, reader.at("value")))


def _selector(
    path: str, data: object, extra: tuple[str, ...] = (), allow_any: bool = False
) -> tuple[Selector, _Reader]:
    reader = _Reader(data, path, ("event", "page", "where", "label", *extra))
    event, page = reader.text("event"), reader.text("page")
    if (event is None) == (page is None):
        raise SpecError(f"{path or 'the spec'}: give exactly one of event (an event name) or page (a path)")
    if event == ANY and not allow_any:
        raise SpecError(f"{reader.at('event')}: 'any' (any activity) is allowed only in retention and lifecycle")
    where = tuple(_condition(p, item) for p, item in reader.items("where", 0, MAX_FILTERS))
    return Selector(event=event, page=page, where=where, path=path, name=reader.text("label")), reader


def _range(reader: _Reader, max_days: int) -> tuple[date, date]:
    first, last = reader.day("from"), reader.day("to")
    if last < first:
        raise SpecError(f"to: the range ends ({last}) before it starts ({first})")
    days = (last - first).days + 1
    if days > max_days:
        raise SpecError(
            f"to: the range spans {days} days; a question may span at most {max_days} (INSIGHT_MAX_DAYS): narrow it"
        )
    return first, last


def _funnel(reader: _Reader, first: date, last: date) -> FunnelSpec:
    steps = tuple(_selector(p, item)[0] for p, item in reader.items("steps", 2, MAX_STEPS))
    exclusions = []
    for path, item in reader.items("exclusions", 0, MAX_STEPS):
        selector, inner = _selector(path, item, extra=("after_step", "before_step"))
        after = inner.integer("after_step", 1, 1, len(steps) - 1)
        before = inner.integer("before_step", len(steps), 2, len(steps))
        if before <= after:
            raise SpecError(f"{inner.at('before_step')}: {before} must come after after_step ({after})")
        exclusions.append(Exclusion(selector, after, before))
    return FunnelSpec(
        date_from=first,
        date_to=last,
        steps=steps,
        window_days=reader.integer("window_days", 14, 1, MAX_WINDOW_DAYS),
        exclusions=tuple(exclusions),
        breakdown=reader.text("breakdown"),
        interval=reader.text("interval", "day", ("day", "week")) or "day",
    )


def _trends(reader: _Reader, first: date, last: date) -> TrendsSpec:
    series = []
    for path, item in reader.items("series", 1, MAX_SERIES):
        selector, inner = _selector(path, item, extra=("math", "property"))
        math_name = inner.text("math", "total", MATHS) or "total"
        prop = inner.text("property")
        if math_name in ("sum", "avg", "min", "max") and prop is None:
            raise SpecError(f"{inner.at('property')} is required for math {math_name!r} (a numeric event property)")
        if math_name in ("total", "persons") and prop is not None:
            raise SpecError(f"{inner.at('property')}: math {math_name!r} takes no property; use sum, avg, min or max")
        series.append(Series(selector, math_name, prop))
    return TrendsSpec(
        date_from=first,
        date_to=last,
        series=tuple(series),
        # "all": one point for the whole range (what the query builder's grouping by a property asks)
        interval=reader.text("interval", "day", (*INTERVALS, "all")) or "day",
        breakdown=reader.text("breakdown"),
        formula=reader.text("formula"),
        compare=reader.boolean("compare", False),
    )


def parse_spec(data: object, max_days: int = 366) -> Spec:
    """The spec of `data` (a parsed JSON object), or SpecError naming what is wrong."""
    if not isinstance(data, Mapping):
        raise SpecError(f"the spec: expected a JSON object, got {_kind_of(data)}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise SpecError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    common = ("kind", "from", "to")
    keys = {
        "funnel": ("steps", "window_days", "exclusions", "breakdown", "interval"),
        "trends": ("series", "interval", "breakdown", "formula", "compare"),
        "retention": ("start", "return", "period", "periods", "mode"),
        "paths": ("start", "direction", "steps", "limit"),
        "stickiness": ("event", "page", "where", "interval"),
        "lifecycle": ("event", "page", "where", "interval"),
    }[kind]
    reader = _Reader(data, "", (*common, *keys))
    first, last = _range(reader, max_days)
    if kind == "funnel":
        return _funnel(reader, first, last)
    if kind == "trends":
        return _trends(reader, first, last)
    if kind == "retention":
        return RetentionSpec(
            date_from=first,
            date_to=last,
            start=_selector("start", reader.required("start"))[0],
            returning=_selector("return", reader.required("return"), allow_any=True)[0],
            period=reader.text("period", "week", INTERVALS) or "week",
            periods=reader.integer("periods", 8, 1, MAX_PERIODS),
            mode=reader.text("mode", "first_time", ("first_time", "recurring")) or "first_time",
        )
    if kind == "paths":
        return PathsSpec(
            date_from=first,
            date_to=last,
            anchor=_selector("start", reader.required("start"))[0],
            direction=reader.text("direction", "next", ("next", "previous")) or "next",
            steps=reader.integer("steps", 5, 1, MAX_PATH_STEPS),
            limit=reader.integer("limit", 10, 1, 50),
        )
    selector_data = {key: data[key] for key in ("event", "page", "where") if key in data}
    selector = _selector("", selector_data, allow_any=kind == "lifecycle")[0]
    if kind == "stickiness":
        interval = reader.text("interval", "day", ("day", "week")) or "day"
        return StickinessSpec(first, last, selector, interval)
    return LifecycleSpec(first, last, selector, reader.text("interval", "day", INTERVALS) or "day")


def load_spec(text: str, max_days: int = 366) -> Spec:
    """parse_spec of JSON text, with JSON syntax errors reported as SpecError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(
            f"the spec is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    return parse_spec(data, max_days)
