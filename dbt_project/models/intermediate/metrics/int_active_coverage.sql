-- WAU and MAU per UTC date: the persons with an active day (int_person_days) in the 7 and 30 days up to it. One
-- row per date from the first active day to 29 days after the last (coverage runs out as persons fall out of the
-- windows). daily_metrics reads its dates' values from here.
-- A person counts on every date within 6 (29) days after one of their active days, so WAU (MAU) is the running sum
-- of +1 at each active day and -1 where its coverage ends (macros/coverage_changes.sql). Incremental: the running
-- sums of the differences int_person_days recorded since the last build (ops.activity_coverage_changes) are added
-- to the stored dates from the first changed one; from the first erased event's date on (an erasure deletes rows
-- outside dbt) the dates are recounted, and everything after a full build of int_person_days.
-- On Spark, partitioned by date: a run recounts the dates from the first lake day rewritten since its last build on
-- (lake_rewrite_from(): a date's WAU and MAU depend on the 30 days up to it, so from the persons' days of the 29 days
-- before it), and overwrites those partitions alone.
{{ config(
    unique_key='date',
    lake_partition_by='date',
    lake_partition_overwrite=true,
    post_hook=["{{ prune_coverage_changes() }}", "{{ trim_coverage_calendar() }}", "{{ record_lake_days_built() }}",
        "{{ record_identity_built() }}"],
) }}

{%- set lake_from = lake_rewrite_from('date') %}
{%- set since = high_water_mark('_built_at') if is_incremental_in_place() else none %}
{#- recount_from: recount every date from it (none with recount_all: every date) -#}
{%- set recount_all = not is_incremental() or (is_incremental_in_place() and not since) %}
{%- set recount_from = lake_from['from'] if lake_from is not none else none %}
{%- set steps_from = none %}
{%- set steps_to = none %}
{%- if execute and not recount_all and is_incremental_in_place() %}
    {%- set state = run_query(
        "select exists (select from ops.activity_coverage_changes where step_date is null and changed_at > cast('"
        ~ since ~ "' as timestamptz)), "
        ~ "(select min(event_date) from (" ~ erased_events_sql(since) ~ ") as erased)::text, "
        ~ "(select min(step_date) from ops.activity_coverage_changes where changed_at > cast('" ~ since
        ~ "' as timestamptz))::text, "
        ~ "(select max(step_date) from ops.activity_coverage_changes where changed_at > cast('" ~ since
        ~ "' as timestamptz))::text"
    ) %}
    {%- set recount_all = state.columns[0].values()[0] %}
    {%- set recount_from = state.columns[1].values()[0] %}
    {%- set steps_from = state.columns[2].values()[0] %}
    {%- set steps_to = state.columns[3].values()[0] %}
{%- endif %}

with

bounds as (

    select
        min(activity_date) as first_date,
        max(activity_date) + 29 as last_date
    from {{ ref('int_person_days') }}

),

{%- if recount_all or recount_from %}

-- recounted: the running sums over the active days (from 29 days before the first recounted date)
    recount_steps as (

        select
            step_date,
            sum(wau_step) as wau_step,
            sum(mau_step) as mau_step
        from (
        {{ coverage_steps(
            "select person_id, activity_date from " ~ ref('int_person_days')
            ~ ("" if recount_all else " where activity_date >= date '" ~ recount_from ~ "' - 29")
        ) }}
        ) as steps
        group by step_date

    ),

    recount_calendar as (

        select cast(calendar_day.calendar_day as date) as date
        from bounds
        cross join lateral {{ series(
        'bounds.first_date' if recount_all else "greatest(bounds.first_date, date '" ~ recount_from ~ "' - 29)",
        'bounds.last_date', 'calendar_day', step="interval '1 day'"
    ) }}

    ),

    recounted as (

        select
            recount_calendar.date,
            sum(coalesce(recount_steps.wau_step, 0)) over running as wau,
            sum(coalesce(recount_steps.mau_step, 0)) over running as mau
        from recount_calendar
        left join recount_steps on recount_calendar.date = recount_steps.step_date
        window running as (order by recount_calendar.date rows between unbounded preceding and current row)

    ),

{%- endif %}

{%- if not recount_all and steps_from %}

-- the differences recorded since the last build, added to the stored dates from the first one they change
changes as (

    select
        step_date,
        sum(wau_step) as wau_step,
        sum(mau_step) as mau_step
    from ops.activity_coverage_changes
    where step_date is not null and changed_at > cast('{{ since }}' as timestamptz)
    group by step_date

),

changed_calendar as (

    select cast(calendar_day.calendar_day as date) as date
    from bounds
    cross join lateral {{ series(
        "date '" ~ steps_from ~ "'", "least(bounds.last_date, date '" ~ steps_to ~ "')",
        'calendar_day', step="interval '1 day'"
    ) }}

),

applied as (

    select
        changed_calendar.date,
        coalesce(stored.wau, 0) + sum(coalesce(changes.wau_step, 0)) over running as wau,
        coalesce(stored.mau, 0) + sum(coalesce(changes.mau_step, 0)) over running as mau
    from changed_calendar
    left join changes on changed_calendar.date = changes.step_date
    left join {{ this }} as stored on changed_calendar.date = stored.date
    window running as (order by changed_calendar.date rows between unbounded preceding and current row)

),

{%- endif %}

coverage as (

    {%- if recount_all %}
        select
            date,
            wau,
            mau
        from recounted
    {%- else %}
        {%- set parts = [] %}
        {%- if recount_from %}
            {%- do parts.append("select date, wau, mau from recounted where date >= date '" ~ recount_from ~ "'") %}
        {%- endif %}
        {%- if steps_from %}
            {%- do parts.append(
                "select date, wau, mau from applied"
                ~ (" where date < date '" ~ recount_from ~ "'" if recount_from else "")) %}
        {%- endif %}
        {%- if parts %}
            {{ parts | join('\n        union all\n        ') }}
        {%- else %}
            select cast(null as date) as date, 0 as wau, 0 as mau where false
        {%- endif %}
    {%- endif %}

)

select
    cast(coverage.date as date) as date,
    cast(coverage.wau as bigint) as wau,
    cast(coverage.mau as bigint) as mau,
    {{ built_at() }} as _built_at
from coverage
cross join bounds
where coverage.date between bounds.first_date and bounds.last_date
