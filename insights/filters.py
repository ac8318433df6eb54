"""Selectors, filters and breakdowns as SQL over the engine's tables, with every value bound.

Identifiers never come from a request: an event name becomes the integer id the engine gave it (after checking the
catalogue), a property key becomes a bound JSON pointer, a person field one of a fixed list of columns, a typed
event column one of a fixed list. So no spec can change a statement's shape.

The engine's tables (engine.py): events(person_key, rk, event_at, event_date, event_id, is_activity, page_path,
referrer, utm_source, utm_medium, utm_campaign, revenue, properties) and persons(person_key, <PERSON_FIELDS>).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import date

from insights.spec import Condition, Selector, SpecError

# person fields (user.<field>): the dim_users column and how it compares
PERSON_FIELDS: dict[str, str] = {
    "plan": "text",
    "country": "text",
    "email": "text",
    "user_id": "text",
    "mrr": "numeric",
    "signup_date": "date",
    "is_identified": "boolean",
}
# typed columns of fct_events a question may filter or break down by (when no property has the name)
EVENT_COLUMNS = ("page_path", "referrer", "utm_source", "utm_medium", "utm_campaign")
NONE_LABEL = "(none)"


@dataclass
class Catalogue:
    """Event names with their ids in the engine, and the property keys (and JSON value types) each has carried."""

    event_ids: dict[str, int] = field(default_factory=dict)
    properties: dict[str, dict[str, str]] = field(default_factory=dict)  # event -> key -> "number,string"

    @property
    def events(self) -> list[str]:
        return sorted(self.event_ids)


class Params:
    """Bound values, referenced as $1, $2, ... in the statement."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def bind(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def closest(name: str, known: list[str]) -> str:
    near = difflib.get_close_matches(name, known, n=3)
    if near:
        return f"did you mean {', '.join(repr(n) for n in near)}?"
    shown = ", ".join(known[:15]) + (" ..." if len(known) > 15 else "")
    return f"known: {shown or '(none yet: build the marts first)'}"


def json_pointer(key: str) -> str:
    """RFC 6901 pointer to a top-level key: any key, '/' and '~' included, reads as itself."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _number(value: str, path: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SpecError(f"{path}: {value!r} is not a number; > and < compare numbers") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise SpecError(f"{path}: {value!r} is not a finite number")
    return number


class Compiler:
    """Builds the SQL pieces of one statement; all values go to `params`."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.params = Params()

    # -- which events ---------------------------------------------------------------------------------------------
    def event_names(self, selector: Selector) -> list[str]:
        if selector.any_activity:
            return list(self.catalogue.event_ids)
        return ["page" if selector.page is not None else str(selector.event)]

    def selector(self, selector: Selector, alias: str = "e") -> str:
        """The condition an event row must meet to be `selector`'s event, filters included."""
        if selector.any_activity:
            parts = [f"{alias}.is_activity"]
        elif selector.page is not None:
            parts = [f"{alias}.event_id = {self.params.bind(self.event_id('page', selector))}"]
            parts.append(f"{alias}.page_path = {self.params.bind(selector.page)}")
        else:
            parts = [f"{alias}.event_id = {self.params.bind(self.event_id(str(selector.event), selector))}"]
        for index, condition in enumerate(selector.where):
            parts.append(self.condition(condition, selector, f"{selector.path}.where[{index}]", alias))
        return "(" + " and ".join(parts) + ")"

    def event_id(self, name: str, selector: Selector) -> int:
        if name in self.catalogue.event_ids:
            return self.catalogue.event_ids[name]
        if name == "page":  # no page view yet: a page step matches nothing, which is the true answer
            return -1
        at = f"{selector.path}.event" if selector.path else "event"
        raise SpecError(f"{at}: unknown event {name!r}; {closest(name, self.catalogue.events)}")

    # -- fields -------------------------------------------------------------------------------------------------------
    def field(self, name: str, events: list[str], path: str, alias: str = "e") -> tuple[str, str, bool]:
        """(SQL expression, kind, is a person field) of event.<key> / user.<field> for rows of `events`."""
        scope, _, key = name.partition(".")
        if scope == "event" and key:
            types: set[str] = set()
            known: set[str] = set()
            for event in events:
                keys = self.catalogue.properties.get(event, {})
                known |= set(keys)
                if key in keys:
                    types |= set(keys[key].split(","))
            if types:
                kind = "numeric" if types == {"number"} else ("mixed" if "number" in types else "text")
                return f"json_extract_string({alias}.properties, {self.params.bind(json_pointer(key))})", kind, False
            if key in EVENT_COLUMNS:
                return f"{alias}.{key}", "text", False
            of = f"of {events[0]!r}" if len(events) == 1 else "of these events"
            raise SpecError(
                f"{path}: unknown property {key!r} {of}; {closest(key, sorted(known | set(EVENT_COLUMNS)))}"
            )
        if scope == "user" and key:
            if key not in PERSON_FIELDS:
                raise SpecError(f"{path}: unknown person field {key!r}; {closest(key, sorted(PERSON_FIELDS))}")
            return f"p.{key}", PERSON_FIELDS[key], True
        raise SpecError(f"{path}: {name!r} must be event.<property> or user.<field> (e.g. event.plan, user.country)")

    def condition(self, condition: Condition, selector: Selector, path: str, alias: str = "e") -> str:
        expression, kind, person = self.field(condition.field, self.event_names(selector), f"{path}.field", alias)
        test = self._test(expression, kind, condition, path)
        if person:
            return f"{alias}.person_key in (select p.person_key from persons as p where {test})"
        return test

    def _test(self, expression: str, kind: str, condition: Condition, path: str) -> str:
        op, value = condition.op, condition.value
        if op == "is set":
            return f"{expression} is not null"
        if op == "is not set":
            return f"{expression} is null"
        assert value is not None
        at = f"{path}.value"
        if op == "contains":
            return f"contains(lower(cast({expression} as varchar)), lower({self.params.bind(value)}))"
        if kind == "date":
            try:
                day = date.fromisoformat(value)
            except ValueError:
                raise SpecError(f"{at}: {value!r} is not a date (YYYY-MM-DD)") from None
            operator = {"=": "=", "!=": "is distinct from"}.get(op, op)
            return f"{expression} {operator} {self.params.bind(day)}"
        if op in (">", "<"):
            if kind in ("text", "boolean"):
                raise SpecError(f"{at}: {condition.field} holds no numbers: > and < compare numbers; use = or contains")
            # a property of mixed types compares the values that are numbers, as numbers
            return f"try_cast({expression} as double) {op} {self.params.bind(_number(value, at))}"
        operator = "=" if op == "=" else "is distinct from"
        if kind == "numeric":
            return f"try_cast({expression} as double) {operator} {self.params.bind(_number(value, at))}"
        if kind == "boolean":
            if value.lower() not in ("true", "false"):
                raise SpecError(f"{at}: {condition.field} is true or false; got {value!r}")
            return f"{expression} {operator} {self.params.bind(value.lower() == 'true')}"
        return f"{expression} {operator} {self.params.bind(value)}"

    def breakdown(self, name: str, events: list[str], path: str = "breakdown", alias: str = "e") -> tuple[str, str]:
        """(the breakdown value of an event row as text, '(none)' when it has none; the join it needs, or '')."""
        expression, _kind, person = self.field(name, events, path, alias)
        join = f"left join persons as p on p.person_key = {alias}.person_key" if person else ""
        return f"coalesce(cast({expression} as varchar), {self.params.bind(NONE_LABEL)})", join
