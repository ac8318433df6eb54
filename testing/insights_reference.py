"""The insights engine's answers computed a second way: plain Python over the events as PostgreSQL holds them,
written from the definitions in docs/metrics.md ("Insights") and not from the engine's SQL. Tests compare the two.

Events are dicts with person_id, message_id, event_at (aware datetime), event_name, event_type, page_path,
properties (dict) and is_activity; persons map person_id to their dim_users fields.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg2

from common.ratios import ratio


def read_events(database_url: str) -> tuple[list[dict], dict[str, dict]]:
    """Every fct_events row and every dim_users person, sorted by (person, time, message id)."""
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "select person_id, message_id, event_at, event_name, event_type, page_path, properties, is_activity, "
            "utm_source from analytics.fct_events"
        )
        names = [d[0] for d in cursor.description]
        events = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        cursor.execute(
            "select person_id, plan, country, email, user_id, mrr, signup_date, is_identified from analytics.dim_users"
        )
        names = [d[0] for d in cursor.description]
        persons = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
    connection.close()
    for event in events:
        event["properties"] = event["properties"] or {}
    events.sort(key=lambda e: (e["person_id"], e["event_at"], e["message_id"]))
    return events, persons


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _field(event: dict, persons: dict, name: str) -> Any:
    scope, _, key = name.partition(".")
    if scope == "user":
        return (persons.get(event["person_id"]) or {}).get(key)
    if key in event["properties"]:
        return event["properties"][key]
    return event.get(key)


def _holds(event: dict, persons: dict, condition: dict) -> bool:
    value = _field(event, persons, condition["field"])
    op, wanted = condition.get("op", "="), condition.get("value")
    if op == "is set":
        return value is not None
    if op == "is not set":
        return value is None
    if op == "contains":
        return value is not None and str(wanted).lower() in _text(value).lower()
    if op in (">", "<"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return number > float(wanted) if op == ">" else number < float(wanted)
    if isinstance(value, int | float) and not isinstance(value, bool):
        equal = float(value) == float(wanted)
    else:
        equal = _text(value) == _text(wanted)
    return equal if op == "=" else not equal


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def matches(event: dict, selector: dict, persons: dict) -> bool:
    if "page" in selector:
        if event["event_type"] != "page" or event["page_path"] != selector["page"]:
            return False
    elif selector["event"] == "any":
        if not event["is_activity"]:
            return False
    elif event["event_name"] != selector["event"]:
        return False
    return all(_holds(event, persons, c) for c in selector.get("where", []))


def by_person(events: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        grouped[event["person_id"]].append(event)
    return grouped


def _lower_median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[(len(ordered) + 1) // 2 - 1]


def funnel(spec: dict, events: list[dict], persons: dict, value_of: str | None = None) -> dict:
    """Per step: persons, conversion from step 1 and from the previous step, lower median seconds to convert; with
    `value_of` (a breakdown field), only the persons whose entry event has that value (the answer's "breakdown")."""
    steps, window = spec["steps"], timedelta(days=spec.get("window_days", 14))
    first, end = _start(date.fromisoformat(spec["from"])), _start(date.fromisoformat(spec["to"]) + timedelta(days=1))
    reached: list[list[datetime]] = []  # per kept person: the time of each step they reached
    for _person, mine in by_person(events).items():
        entry = next((e for e in mine if first <= e["event_at"] < end and matches(e, steps[0], persons)), None)
        if entry is None:
            continue
        if value_of is not None:
            raw = _field(entry, persons, spec["breakdown"])
            if ("(none)" if raw is None else _text(raw)) != value_of:
                continue
        times, used, deadline = [entry["event_at"]], {entry["message_id"]}, entry["event_at"] + window
        for step in steps[1:]:
            found = next(
                (
                    e
                    for e in mine
                    if e["message_id"] not in used
                    and times[-1] <= e["event_at"] <= deadline
                    and matches(e, step, persons)
                ),
                None,
            )
            if found is None:
                break
            times.append(found["event_at"])
            used.add(found["message_id"])
        excluded = False
        for exclusion in spec.get("exclusions", []):
            i, j = exclusion["after_step"], exclusion["before_step"]
            if len(times) < i:
                continue
            until = times[j - 1] if len(times) >= j else deadline
            selector = {k: v for k, v in exclusion.items() if k not in ("after_step", "before_step")}
            if any(times[i - 1] < e["event_at"] < until and matches(e, selector, persons) for e in mine):
                excluded = True
        if not excluded:
            reached.append(times)
    result = []
    counts = [sum(1 for times in reached if len(times) > k) for k in range(len(steps))]
    for k in range(len(steps)):
        seconds = [(t[k] - t[0]).total_seconds() for t in reached if len(t) > k]
        result.append(
            {
                "persons": counts[k],
                "conversion": ratio(counts[k], counts[0]),
                "conversion_from_previous": ratio(counts[k], counts[max(k - 1, 0)]),
                "median_seconds_to_convert": _lower_median(seconds) if k else None,
            }
        )
    return {"steps": result}


def _period(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def trends(spec: dict, events: list[dict], persons: dict) -> dict[tuple[int, str | None], dict[date, Any]]:
    """(series index, breakdown value) -> period start -> value, over [from, to] (no formula, no comparison)."""
    first, end = _start(date.fromisoformat(spec["from"])), _start(date.fromisoformat(spec["to"]) + timedelta(days=1))
    breakdown = spec.get("breakdown")
    tagged = []
    for index, series in enumerate(spec["series"]):
        for e in events:
            if first <= e["event_at"] < end and matches(e, series, persons):
                value = None
                if breakdown:
                    raw = _field(e, persons, breakdown)
                    value = "(none)" if raw is None else _text(raw)
                tagged.append((index, value, e))
    if breakdown:
        counts = Counter(value for _, value, _ in tagged)
        top = {v for v, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:25]}
        tagged = [(i, v if v in top else "other", e) for i, v, e in tagged]
    cells: dict[tuple[int, str | None], dict[date, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for index, value, e in tagged:
        cells[(index, value)][_period(e["event_at"].date(), spec.get("interval", "day"))].append(e)
    result: dict[tuple[int, str | None], dict[date, Any]] = {}
    for (index, value), buckets in cells.items():
        series = spec["series"][index]
        math = series.get("math", "total")
        out = {}
        for bucket, matched in buckets.items():
            if math == "total":
                out[bucket] = len(matched)
            elif math == "persons":
                out[bucket] = len({e["person_id"] for e in matched})
            else:
                numbers = [
                    n for n in (_float(e["properties"].get(series["property"])) for e in matched) if n is not None
                ]
                if not numbers:
                    out[bucket] = 0 if math == "sum" else None
                else:
                    out[bucket] = {"sum": sum, "min": min, "max": max, "avg": lambda n: sum(n) / len(n)}[math](numbers)
        result[(index, value)] = out
    return result


def retention(spec: dict, events: list[dict], persons: dict) -> dict[date, tuple[int, list[int]]]:
    """cohort start -> (size, returned per period)."""
    period, n = spec.get("period", "week"), spec.get("periods", 8)
    first, end = _start(date.fromisoformat(spec["from"])), _start(date.fromisoformat(spec["to"]) + timedelta(days=1))

    def offset(cohort: date, day: date) -> int:
        if period == "month":
            return (day.year - cohort.year) * 12 + day.month - cohort.month
        return (day - cohort).days // (7 if period == "week" else 1)

    members: dict[date, dict[str, datetime]] = defaultdict(dict)  # cohort -> person -> first start event in it
    returned: dict[date, list[set]] = defaultdict(lambda: [set() for _ in range(n)])
    for person, mine in by_person(events).items():
        starts = [e["event_at"] for e in mine if first <= e["event_at"] < end and matches(e, spec["start"], persons)]
        if not starts:
            continue
        if spec.get("mode", "first_time") == "first_time":
            starts = starts[:1]
        for at in starts:
            cohort = _period(at.date(), period)
            members[cohort].setdefault(person, at)
        for cohort, t0 in [(c, m[person]) for c, m in members.items() if person in m]:
            for e in mine:
                if e["event_at"] < first or not matches(e, spec["return"], persons):
                    continue
                k = offset(cohort, _period(e["event_at"].date(), period))
                if 0 <= k < n and (k > 0 or e["event_at"] >= t0):
                    returned[cohort][k].add(person)
    return {c: (len(m), [len(s) for s in returned[c]]) for c, m in members.items()}


def stickiness(spec: dict, events: list[dict], persons: dict) -> Counter:
    first, end = _start(date.fromisoformat(spec["from"])), _start(date.fromisoformat(spec["to"]) + timedelta(days=1))
    active: dict[str, set] = defaultdict(set)
    for e in events:
        if first <= e["event_at"] < end and matches(e, spec, persons):
            active[e["person_id"]].add(_period(e["event_at"].date(), spec.get("interval", "day")))
    return Counter(len(days) for days in active.values())


def lifecycle(spec: dict, events: list[dict], persons: dict) -> dict[date, dict[str, int]]:
    interval = spec.get("interval", "day")
    end = _start(date.fromisoformat(spec["to"]) + timedelta(days=1))
    active: dict[str, set] = defaultdict(set)
    for e in events:
        if e["event_at"] < end and matches(e, spec, persons):
            active[e["person_id"]].add(_period(e["event_at"].date(), interval))

    def before(day: date) -> date:
        if interval == "month":
            return (day.replace(day=1) - timedelta(days=1)).replace(day=1)
        return day - timedelta(days=7 if interval == "week" else 1)

    result: dict[date, dict[str, int]] = {}
    day = _period(date.fromisoformat(spec["from"]), interval)
    last = date.fromisoformat(spec["to"])
    while day <= last:
        counts = Counter()
        for buckets in active.values():
            if day in buckets:
                if min(buckets) == day:
                    counts["new"] += 1
                elif before(day) in buckets:
                    counts["returning"] += 1
                else:
                    counts["resurrecting"] += 1
            elif before(day) in buckets:
                counts["dormant"] += 1
        result[day] = {k: counts[k] for k in ("new", "returning", "resurrecting", "dormant")}
        day = _period(day + timedelta(days=32 if interval == "month" else (7 if interval == "week" else 1)), interval)
    return result


def paths(spec: dict, events: list[dict], persons: dict) -> Counter:
    """(step, source, target) -> persons, before any merging into "other"."""
    first, end = _start(date.fromisoformat(spec["from"])), _start(date.fromisoformat(spec["to"]) + timedelta(days=1))
    later = spec.get("direction", "next") == "next"

    def name(e: dict) -> str:
        return f"page {e['page_path']}" if e["event_type"] == "page" else e["event_name"]

    anchor_name = spec["start"].get("label") or (
        f"page {spec['start']['page']}" if "page" in spec["start"] else spec["start"]["event"]
    )
    edges: Counter = Counter()
    for mine in by_person(events).values():
        in_range = [e for e in mine if first <= e["event_at"] < end]
        ordered = in_range if later else list(reversed(in_range))
        position = next((i for i, e in enumerate(ordered) if matches(e, spec["start"], persons)), None)
        if position is None:
            continue
        walk = [e for e in ordered[position + 1 :] if e["is_activity"]][: spec.get("steps", 5)]
        previous = anchor_name
        for step, e in enumerate(walk, start=1):
            edges[(step, previous, name(e))] += 1
            previous = name(e)
    return edges
