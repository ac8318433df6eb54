"""Retention: of the persons who did the start event in a period (their cohort), how many did the return event in
each following period.

first_time: a person's cohort is the period of their first start event in [from, to]; recurring: a person belongs to
the cohort of every period in which they did the start event. returned[k] counts the cohort's persons with a return
event in the k-th period after the cohort's (k = 0 is the cohort's own period, counting only return events at or
after the person's first start event in it); `any` returns on any track, page or screen event. Return events are
read past `to`, up to the last period a cohort asks for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from insights.calendar import midnight, next_period, period_start, periods, trunc
from insights.filters import Compiler
from insights.spec import RetentionSpec


def _offset(period: str) -> str:
    """SQL: how many periods the return's period is after the cohort's (both are period starts)."""
    if period == "month":
        return "date_diff('month', c.cohort, r.bucket)"
    days = "date_diff('day', c.cohort, r.bucket)"
    return f"({days} // 7)" if period == "week" else days


def answer(spec: RetentionSpec, compiler: Compiler, fetch: Callable[[str, list], list[tuple]]) -> dict[str, Any]:
    bind = compiler.params.bind
    start, end = bind(midnight(spec.date_from)), bind(midnight(spec.date_to + timedelta(days=1)))
    last_cohort = period_start(spec.date_to, spec.period)
    horizon = bind(midnight(next_period(last_cohort, spec.period, spec.periods)))
    starts = f"""select e.person_key, {trunc(spec.period, "e.event_at")} as bucket, e.event_at
        from events as e where {compiler.selector(spec.start)} and e.event_at >= {start} and e.event_at < {end}"""
    if spec.mode == "first_time":
        cohorts = f"""select person_key, {trunc(spec.period, "min(event_at)")} as cohort, min(event_at) as t0
        from ({starts}) group by person_key"""
    else:
        cohorts = (
            f"select person_key, bucket as cohort, min(event_at) as t0 from ({starts}) group by person_key, bucket"
        )
    statement = f"""
with cohorts as (
    {cohorts}
),
returns as (
    -- a person's latest return event in each period is enough: k = 0 asks only whether one is at or after t0
    select e.person_key, {trunc(spec.period, "e.event_at")} as bucket, max(e.event_at) as last_at
    from events as e
    where {compiler.selector(spec.returning)} and e.event_at >= {start} and e.event_at < {horizon}
      and e.person_key in (select person_key from cohorts)
    group by all
),
cells as (
    select c.cohort, {_offset(spec.period)} as k, count(distinct c.person_key) as persons
    from cohorts as c join returns as r on r.person_key = c.person_key and r.bucket >= c.cohort
    where r.bucket > c.cohort or r.last_at >= c.t0
    group by all
)
select cohort, -1 as k, count(*) from cohorts group by cohort
union all
select cohort, k, persons from cells where k < {bind(spec.periods)}
"""
    rows = fetch(statement, compiler.params.values)
    sizes: dict = {}
    returned: dict = {}
    for cohort, k, persons in rows:
        if k < 0:
            sizes[cohort] = int(persons)
        else:
            returned[(cohort, int(k))] = int(persons)
    return {
        "cohorts": [
            {
                "start": cohort.isoformat(),
                "size": sizes.get(cohort, 0),
                "returned": [returned.get((cohort, k), 0) for k in range(spec.periods)],
            }
            for cohort in periods(spec.date_from, spec.date_to, spec.period)
        ]
    }
