"""Funnels: persons through 2-10 steps within a conversion window, with exclusions, a breakdown and conversion over
time (docs/metrics.md, "Insights: funnels", has the definitions this follows).

One statement: step 1 is each person's first step-1 event in [from, to] (their entry); step k is, for the persons who
reached step k-1, their earliest step-k event at or after that step's time and no later than entry + window, other
than the rows that reached earlier steps. "Earliest" is the smallest `rk`: among one person's events, the engine's
row key orders by time, then message id (engine.py), so one integer minimum replaces comparing (time, message id).
Each step is a hash join of that step's rows with the persons still in the funnel, so the work follows the steps'
events, not the whole table. Exclusions then remove the persons with an excluded event strictly between the two
steps' times.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from common.ratios import ratio
from insights.calendar import midnight, periods, trunc
from insights.filters import Compiler
from insights.spec import FunnelSpec

TOP_BREAKDOWN_VALUES = 25
OTHER = "other"


def _statement(spec: FunnelSpec, compiler: Compiler) -> str:
    bind = compiler.params.bind
    n = len(spec.steps)
    start, end = bind(midnight(spec.date_from)), bind(midnight(spec.date_to + timedelta(days=1)))
    horizon = bind(midnight(spec.date_to + timedelta(days=1 + spec.window_days)))
    window = bind(timedelta(days=spec.window_days))
    first_events = compiler.event_names(spec.steps[0])
    # a person's rows in `rk` order are in time order, so the time of their smallest rk is their smallest time: a
    # plain min, cheaper than arg_min (the entries' aggregate has a group per person)
    breakdown, join, b = "", "", "null"
    if spec.breakdown:
        value, join = compiler.breakdown(spec.breakdown, first_events)
        breakdown, b = f", arg_min({value}, e.rk) as b", "b"
    ctes = [
        f"""entries as (
    select e.person_key, min(e.rk) as r1, min(e.event_at) as t1{breakdown}
    from events as e {join}
    where {compiler.selector(spec.steps[0])} and e.event_at >= {start} and e.event_at < {end}
    group by e.person_key
)""",
        f"""f1 as (
    select person_key, t1, r1, {b} as b, t1 + {window} as deadline from entries
)""",
    ]
    for k in range(2, n + 1):
        used = " and ".join(f"e.rk <> f.r{j}" for j in range(1, k))
        ctes.append(
            f"""s{k} as (
    select f.person_key, min(e.rk) as r, min(e.event_at) as t
    from f{k - 1} as f
    join events as e on e.person_key = f.person_key
    where f.t{k - 1} is not null and {compiler.selector(spec.steps[k - 1])}
      and e.event_at >= f.t{k - 1} and e.event_at <= f.deadline and {used}
      and e.event_at >= {start} and e.event_at <= {horizon}
    group by f.person_key
)"""
        )
        ctes.append(
            f"""f{k} as (
    select f.*, s.t as t{k}, s.r as r{k} from f{k - 1} as f left join s{k} as s using (person_key)
)"""
        )
    excluded = []
    for exclusion in spec.exclusions:
        i, j = exclusion.after_step, exclusion.before_step
        excluded.append(
            f"""select f.person_key
    from f{n} as f join events as e on e.person_key = f.person_key
    where f.t{i} is not null and {compiler.selector(exclusion.selector)}
      and e.event_at > f.t{i} and e.event_at < coalesce(f.t{j}, f.deadline)
      and e.event_at >= {start} and e.event_at <= {horizon}"""
        )
    kept = f"f{n}"
    if excluded:
        ctes.append("excluded as (\n    " + "\n    union\n    ".join(excluded) + "\n)")
        ctes.append(  # an anti join on both engines (Spark plans `not in` as a nested loop: it must mind nulls)
            f"""kept as (
    select * from f{n} as f where not exists (select 1 from excluded as x where x.person_key = f.person_key)
)"""
        )
        kept = "kept"
    # the breakdown's most common values (by persons entering) keep their name; the rest are one "other"
    ctes.append(
        f"""top as (
    select b from {kept} where b is not null group by b order by count(*) desc, b limit {TOP_BREAKDOWN_VALUES}
)"""
    )
    ctes.append(
        f"""labelled as (
    select *, case when b is null then null when b in (select b from top) then b else {bind(OTHER)} end as label,
           {trunc(spec.interval, "t1")} as entered_on
    from {kept}
)"""
    )
    counts = ", ".join(f"count(t{k})" for k in range(1, n + 1))
    medians = ", ".join(f"quantile_disc(date_diff('microsecond', t1, t{k}), 0.5)" for k in range(2, n + 1))
    return (
        "with "
        + ",\n".join(ctes)
        + f"""
select grouping(label) as by_label, grouping(entered_on) as by_date, label, entered_on, {counts}, {medians}
from labelled
group by grouping sets ((), (label), (entered_on))
"""
    )


def _steps(spec: FunnelSpec, counts: tuple, medians: tuple) -> list[dict[str, Any]]:
    steps = []
    for index, selector in enumerate(spec.steps):
        persons = int(counts[index])
        median = medians[index - 1] if index else None
        steps.append(
            {
                "name": selector.name or selector.label,
                "persons": persons,
                "conversion": ratio(persons, counts[0]),
                "conversion_from_previous": ratio(persons, counts[max(index - 1, 0)]),
                "median_seconds_to_convert": None if median is None else median / 1_000_000,
            }
        )
    return steps


def answer(spec: FunnelSpec, compiler: Compiler, fetch: Callable[[str, list], list[tuple]]) -> dict[str, Any]:
    statement = _statement(spec, compiler)
    n = len(spec.steps)
    rows = fetch(statement, compiler.params.values)
    total: tuple = (0,) * n
    total_medians: tuple = (None,) * (n - 1)
    by_label: dict[str, tuple[tuple, tuple]] = {}
    by_date: dict = {}
    for row in rows:
        is_label, is_date, label, entered_on = row[:4]
        counts, medians = tuple(row[4 : 4 + n]), tuple(row[4 + n :])
        if is_label and is_date:
            total, total_medians = counts, medians
        elif not is_label:
            by_label[label] = (counts, medians)
        else:
            by_date[entered_on] = counts
    result: dict[str, Any] = {"steps": _steps(spec, total, total_medians)}
    result["conversion_over_time"] = []
    for day in periods(spec.date_from, spec.date_to, spec.interval):
        counts = by_date.get(day, (0,) * n)
        entered, converted = int(counts[0]), int(counts[-1])
        result["conversion_over_time"].append(
            {
                "date": day.isoformat(),
                "entered": entered,
                "converted": converted,
                "conversion": ratio(converted, entered),
            }
        )
    if spec.breakdown:
        ordered = sorted(
            (label for label in by_label if label is not None and label != OTHER), key=lambda v: (-by_label[v][0][0], v)
        )
        if OTHER in by_label:
            ordered.append(OTHER)
        result["breakdown"] = [{"value": value, "steps": _steps(spec, *by_label[value])} for value in ordered]
    return result
