-- Cohort retention by week (weeks start on Monday) and by month. A person's cohort is the period
-- of their signup, or of their first activity event if they never signed up. Period n counts the
-- persons of the cohort with an activity event in period cohort_start + n (retention_rate); the
-- unbounded rate counts those active in period n or any later period. Rows run from period 0 to the
-- period containing the last event date, zeros included. Counted from int_cohort_persons (one row
-- per grain, person and active period). Incremental: the differences int_cohort_persons
-- recorded per cell since the last build (ops.cohort_changes) are added to the stored cells; what they cannot
-- see is recounted whole (pre-hook rebuild_changed_cohorts: a cohort whose size no longer matches its members,
-- counted only after an erasure; every cohort when a new week or month begins or after a full build of
-- int_cohort_persons).
-- macros/cohort_changes.sql says why that is exact.
-- On Spark, partitioned by cohort_start: a run recounts the cohorts whose start int_cohort_persons logged as changed
-- (its merge-on-read build compares the recomputed persons' rows before and after), and those whose last period is
-- no longer the one holding the last event date (a new week or month began); every cohort after a full build of
-- int_cohort_persons or an erasure.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['cohort_grain', 'cohort_start', 'period_number'],
    lake_partition_by='cohort_start',
    lake_partition_overwrite=true,
    pre_hook=["{{ rebuild_changed_cohorts() }}"],
    post_hook=["{{ prune_cohort_changes() }}", "{{ record_lake_touched_read() }}"],
) }}

{%- set behind -%}
    select distinct cast(stored.cohort_start as string) as value
    from (
        select cohort_grain, cohort_start, max(period_number) as last_period
        from {{ this }}
        group by cohort_grain, cohort_start
    ) as stored
    cross join (select max(event_date) as last_day from {{ ref('int_event_days') }}) as last_day
    where stored.last_period <> {{ cohort_last_period('stored.cohort_grain', 'stored.cohort_start', 'last_day.last_day') }}
{%- endset %}
{%- set lake_cohorts = lake_touched_partitions(ref('int_cohort_persons'), 'cohort_start', extra=behind) %}

with

persons as (

    select cohort_persons.* from {{ ref('int_cohort_persons') }} as cohort_persons
    {%- if lake_cohorts is not none %}
        -- on Spark, the cohorts this run recounts
        where {{ lake_days_condition('cohort_persons.cohort_start', lake_cohorts) }}
    {%- elif is_incremental_in_place() %}
        where exists (
            select 1 from {{ adapter.quote(this.identifier ~ '__scope') }} as scope
            where
                scope.cohort_grain = cohort_persons.cohort_grain
                and scope.cohort_start = cohort_persons.cohort_start
        )
    {%- endif %}

),

last_day as (

    select max(event_date) as last_day from {{ ref('int_event_days') }}

),

cohort_sizes as (

    select
        cohort_grain,
        cohort_start,
        count(*) as cohort_size
    from persons
    where period_number = 0
    group by cohort_grain, cohort_start

),

periods as (

    select
        cohort_sizes.cohort_grain,
        cohort_sizes.cohort_start,
        cohort_sizes.cohort_size,
        cast(period_number as integer) as period_number
    from cohort_sizes
    cross join last_day
    cross join lateral {{ series(
        '0', cohort_last_period('cohort_sizes.cohort_grain', 'cohort_sizes.cohort_start', 'last_day.last_day'),
        'period_number') }}

),

retained as (

    select
        cohort_grain,
        cohort_start,
        period_number,
        count(*) as retained_persons
    from persons
    where is_active
    group by cohort_grain, cohort_start, period_number

),

last_period_counts as (

    -- per cohort and last active period, how many persons
    select
        cohort_grain,
        cohort_start,
        last_period,
        count(*) as persons
    from (
        select
            cohort_grain,
            cohort_start,
            person_id,
            max(period_number) as last_period
        from persons
        where is_active
        group by cohort_grain, cohort_start, person_id
    ) as last_active
    group by cohort_grain, cohort_start, last_period

),

unbounded as (

    -- persons active in period n or later = persons whose last active period is >= n
    select
        periods.cohort_grain,
        periods.cohort_start,
        periods.period_number,
        coalesce(sum(last_period_counts.persons), 0) as unbounded_retained_persons
    from periods
    left join last_period_counts
        on
            periods.cohort_grain = last_period_counts.cohort_grain
            and periods.cohort_start = last_period_counts.cohort_start
            and periods.period_number <= last_period_counts.last_period
    group by periods.cohort_grain, periods.cohort_start, periods.period_number

),

recounted as (

    select
        periods.cohort_grain,
        periods.cohort_start,
        periods.period_number,
        periods.cohort_size,
        unbounded.unbounded_retained_persons,
        coalesce(retained.retained_persons, 0) as retained_persons
    from periods
    left join retained
        on
            periods.cohort_grain = retained.cohort_grain
            and periods.cohort_start = retained.cohort_start
            and periods.period_number = retained.period_number
    inner join unbounded
        on
            periods.cohort_grain = unbounded.cohort_grain
            and periods.cohort_start = unbounded.cohort_start
            and periods.period_number = unbounded.period_number

),

{%- if is_incremental_in_place() %}

-- the differences recorded since the last build, in the cohorts not recounted whole
changes as (

    select changes.*
    from ({{ cohort_changes_since(high_water_mark('_built_at')) }}) as changes
    where not exists (
        select from {{ adapter.quote(this.identifier ~ '__scope') }} as scope
        where scope.cohort_grain = changes.cohort_grain and scope.cohort_start = changes.cohort_start
    )

),

-- every cell of those cohorts, its counts plus the differences: members (recorded at period 0) change every
-- period's size, a last active period at k changes the unbounded counts at n <= k (a sum from the last period down)
updated as (

    select
        stored.cohort_grain,
        stored.cohort_start,
        stored.period_number,
        stored.cohort_size + sum(coalesce(changes.members, 0)) over by_cohort as cohort_size,
        stored.unbounded_retained_persons
        + sum(coalesce(changes.last_active, 0)) over (by_cohort order by stored.period_number desc)
            as unbounded_retained_persons,
        stored.retained_persons + coalesce(changes.active, 0) as retained_persons
    from {{ this }} as stored
    left join changes
        on
            stored.cohort_grain = changes.cohort_grain
            and stored.cohort_start = changes.cohort_start
            and stored.period_number = changes.period_number
    where exists (
        select from changes as cohort
        where cohort.cohort_grain = stored.cohort_grain and cohort.cohort_start = stored.cohort_start
    )
    window by_cohort as (partition by stored.cohort_grain, stored.cohort_start)

),

{%- endif %}

cells as (

    select * from recounted
    {%- if is_incremental_in_place() %}
        union all
        select * from updated
    {%- endif %}

)

select
    cast(cohort_grain as {{ text_type() }}) as cohort_grain,
    cohort_start,
    period_number,
    cast(cohort_size as bigint) as cohort_size,
    cast(retained_persons as bigint) as retained_persons,
    cast(cast(retained_persons as {{ numeric_type() }}) / cohort_size as numeric(20, 6)) as retention_rate,
    cast(unbounded_retained_persons as bigint) as unbounded_retained_persons,
    cast(cast(unbounded_retained_persons as {{ numeric_type() }}) / cohort_size as numeric(20, 6))
        as unbounded_retention_rate,
    {{ built_at() }} as _built_at
from cells
