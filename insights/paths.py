"""Paths: what persons did next (or before). Each person's first anchor event in [from, to] (for `previous`, their
last) starts their path; its
steps are the person's next (previous) `steps` events — any track, page or screen event, a page named by its path —
within the range, in time order (ties by message id). An edge (step i, source -> target) counts the persons whose
(i-1)-th and i-th events are source and target (the anchor is step 0).

Each step keeps its `limit` most common targets by name; the rest become one "other" node, and an "other" source at
the next step stands for them. Every person has exactly one edge per step they reach, so merging is a sum and stays
exact.
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


def answer(spec: PathsSpec, compiler: Compiler, fetch: Callable[[str, list], list[tuple]]) -> dict[str, Any]:
    bind = compiler.params.bind
    start, end = bind(midnight(spec.date_from)), bind(midnight(spec.date_to + timedelta(days=1)))
    later = spec.direction == "next"
    # a person's events in time order (ties by message id) are their events in `rk` order (engine.py)
    pick = "min" if later else "max"
    after = "e.rk > a.r" if later else "e.rk < a.r"
    order = "e.rk" if later else "e.rk desc"
    page = compiler.catalogue.event_ids.get("page", -1)
    statement = f"""
with anchors as (
    select e.person_key, {pick}(e.rk) as r
    from events as e
    where {compiler.selector(spec.anchor)} and e.event_at >= {start} and e.event_at < {end}
    group by e.person_key
),
walked as (
    select a.person_key, e.event_id, case when e.event_id = {bind(page)} then e.page_path end as page_path,
           row_number() over (partition by a.person_key order by {order}) as step
    from anchors as a join events as e on e.person_key = a.person_key
    where e.is_activity and {after} and e.event_at >= {start} and e.event_at < {end}
    qualify step <= {bind(spec.steps)}
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
