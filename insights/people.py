"""Stickiness and lifecycle: how often persons come back, and how the active persons of each interval divide.

stickiness: persons by the number of distinct intervals (days or weeks) of [from, to] in which they did the event;
`counts` has a key for every possible number, 1 to the number of intervals, zeros included.

lifecycle: for each interval of [from, to], the persons active in it (did the event; `any`: any track, page or screen
event) are `new` (their first such event ever falls in it), `returning` (active in the interval before too) or
`resurrecting` (not active in the interval before, active some time earlier); `dormant` counts the persons active
in the interval before and not in this one (a positive count; charts draw it below zero).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from insights.calendar import midnight, period_start, periods, trunc
from insights.filters import Compiler
from insights.spec import LifecycleSpec, StickinessSpec


def stickiness(spec: StickinessSpec, compiler: Compiler, fetch: Callable[[str, list], list[tuple]]) -> dict[str, Any]:
    bind = compiler.params.bind
    start, end = bind(midnight(spec.date_from)), bind(midnight(spec.date_to + timedelta(days=1)))
    statement = f"""
select intervals, count(*) from (
    select e.person_key, count(distinct {trunc(spec.interval, "e.event_at")}) as intervals
    from events as e
    where {compiler.selector(spec.selector)} and e.event_at >= {start} and e.event_at < {end}
    group by e.person_key
)
group by intervals
"""
    found = {int(n): int(persons) for n, persons in fetch(statement, compiler.params.values)}
    possible = len(periods(spec.date_from, spec.date_to, spec.interval))
    return {"counts": {str(n): found.get(n, 0) for n in range(1, possible + 1)}}


def lifecycle(spec: LifecycleSpec, compiler: Compiler, fetch: Callable[[str, list], list[tuple]]) -> dict[str, Any]:
    bind = compiler.params.bind
    end = bind(midnight(spec.date_to + timedelta(days=1)))
    one = f"interval 1 {spec.interval}"
    first_bucket = bind(period_start(spec.date_from, spec.interval))
    statement = f"""
with active as (
    -- every interval in which each person was active, over all history up to `to` (a first event may be years back)
    select distinct e.person_key, {trunc(spec.interval, "e.event_at")} as bucket
    from events as e where {compiler.selector(spec.selector)} and e.event_at < {end}
),
marked as (
    select person_key, bucket,
           lag(bucket) over (partition by person_key order by bucket) as previous,
           lead(bucket) over (partition by person_key order by bucket) as following
    from active
),
labelled as (
    select bucket, case
            when previous is null then 'new'
            when previous = cast(bucket - {one} as date) then 'returning'
            else 'resurrecting'
        end as status
    from marked
    union all
    select cast(bucket + {one} as date), 'dormant'
    from marked where following is null or following <> cast(bucket + {one} as date)
)
select bucket, status, count(*) from labelled where bucket >= {first_bucket} group by all
"""
    found = {(bucket, status): int(n) for bucket, status, n in fetch(statement, compiler.params.values)}
    statuses = ("new", "returning", "resurrecting", "dormant")
    return {
        "intervals": [
            {"date": day.isoformat(), **{status: found.get((day, status), 0) for status in statuses}}
            for day in periods(spec.date_from, spec.date_to, spec.interval)
        ]
    }
