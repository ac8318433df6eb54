"""Paths: what persons did next (or before). Each person's first anchor event in [from, to] (for `previous`, their
last) starts their path; its
steps are the person's next (previous) `steps` events — any track, page or screen event, a page named by its path —
within the range, in time order (ties by message id). An edge (step i, source -> target) counts the persons whose
(i-1)-th and i-th events are source and target (the anchor is step 0).

Each step keeps its `limit` most common targets by name; the rest become one "other" node, and an "other" source at
the next step stands for them. Every person has exactly one edge per step they reach, so merging is a sum and stays
exact.

Most persons do their next (previous) few events on the anchor's own day, so the walk joins the anchors with their
events of that day first, and with the rest of the range only those who had fewer than `steps` there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from insights.calendar import midnight
from insights.filters import Compiler
from insights.spec import PathsSpec

OTHER = "other"
DAY = 1 << 32  # rk's days (engine.py)


def _candidates(later: bool, start: str, end: str, steps: str) -> str:
    """The CTEs ending in `candidates(person_key, rk, event_id, page_path)`: each anchored person's activity events
    after (before) their anchor in the range, enough of them for the walk's `steps`.

    Next: the anchor's own day first (a join on person and day); who has `steps` events there needs nothing later,
    and only the others are joined with the rest of the range (rk's high half is the day: engine.py). Previous: one
    join; the split measured slower there (most persons have fewer than `steps` events before the anchor on its
    day)."""
    before = f"e.is_activity and e.event_at >= {start} and e.event_at < {end}"
    if not later:
        return f"""candidates as (
    select a.person_key, e.rk, e.event_id, e.page_path
    from anchors as a join events as e on e.person_key = a.person_key
    where e.rk < a.r and {before}
),"""
    return f"""near as (
    select a.person_key, e.rk, e.event_id, e.page_path
    from anchors as a join events as e on e.person_key = a.person_key and e.event_date = a.d
    where e.rk > a.r and {before}
),
enough as (
    select person_key from near group by person_key having count(*) >= {steps}
),
short as (
    select * from anchors as a where not exists (select 1 from enough as n where n.person_key = a.person_key)
),
far as (
    select a.person_key, e.rk, e.event_id, e.page_path
    from short as a join events as e on e.person_key = a.person_key
    where e.rk >= a.r - a.r % {DAY} + {DAY} and {before}
),
candidates as (
    select * from near union all select * from far
),"""


def answer(spec: PathsSpec, compiler: Compiler, fetch: Callable[[str, list], list[tuple]]) -> dict[str, Any]:
    bind = compiler.params.bind
    start, end = bind(midnight(spec.date_from)), bind(midnight(spec.date_to + timedelta(days=1)))
    later = spec.direction == "next"
    # a person's events in time order (ties by message id) are their events in `rk` order (engine.py)
    pick = "min" if later else "max"
    order = "rk" if later else "rk desc"
    steps = bind(spec.steps)
    page = compiler.catalogue.event_ids.get("page", -1)
    statement = f"""
with anchors as (
    select e.person_key, {pick}(e.rk) as r, {pick}(e.event_date) as d
    from events as e
    where {compiler.selector(spec.anchor)} and e.event_at >= {start} and e.event_at < {end}
    group by e.person_key
),
{_candidates(later, start, end, steps)}
walked as (
    select person_key, event_id, case when event_id = {bind(page)} then page_path end as page_path,
           row_number() over (partition by person_key order by {order}) as step
    from candidates
    qualify step <= {steps}
),
edges as (
    select w.step, p.event_id as source_id, p.page_path as source_page, w.event_id as target_id,
           w.page_path as target_page
    from walked as w
    left join walked as p on p.person_key = w.person_key and p.step = w.step - 1
)
select step, source_id, source_page, target_id, target_page, count(*) from edges group by all
union all
select 0, null, null, null, null, count(*) from anchors
"""
    rows = fetch(statement, compiler.params.values)
    names = {event_id: name for name, event_id in compiler.catalogue.event_ids.items()}

    def node(event_id: int | None, page_path: str | None) -> str:
        if event_id is None:
            return spec.anchor.name or spec.anchor.label
        if event_id == page:
            return f"page {page_path}" if page_path is not None else "page"
        return names.get(event_id, str(event_id))

    persons = 0
    counts: dict[int, Counter] = {}
    for step, source_id, source_page, target_id, target_page, n in rows:
        if step == 0:
            persons = int(n)
            continue
        key = (node(source_id, source_page), node(target_id, target_page))
        counts.setdefault(int(step), Counter())[key] += int(n)
    edges = []
    kept_before: set[str] | None = None
    for step in sorted(counts):
        targets = Counter()
        for (_, target), n in counts[step].items():
            targets[target] += n
        kept = {name for name, _ in sorted(targets.items(), key=lambda item: (-item[1], item[0]))[: spec.limit]}
        merged = Counter()
        for (source, target), n in counts[step].items():
            source = source if kept_before is None or source in kept_before else OTHER
            merged[(source, target if target in kept else OTHER)] += n
        edges += [
            {"step": step, "source": source, "target": target, "persons": n}
            for (source, target), n in sorted(merged.items(), key=lambda item: (-item[1], item[0]))
        ]
        kept_before = kept
    return {
        "start": spec.anchor.name or spec.anchor.label,
        "direction": spec.direction,
        "persons": persons,
        "edges": edges,
    }
