-- Conversion funnels by cohort date (the UTC date a person entered): one row for every step of
-- every funnel on every date from the first event to the last, zeros included. Incremental: the
-- (funnel, cohort date) keys a run can change are recomputed whole (pre-hook
-- rebuild_changed_funnel_cohorts; the YAML says which and why that is exact). On Spark, partitioned by cohort_date:
-- a run rewrites the dates int_funnel_persons logged as changed, and the calendar's new or gone dates.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    lake_partition_by='cohort_date',
    lake_partition_overwrite=true,
    pre_hook=["{{ rebuild_changed_funnel_cohorts() }}"],
    post_hook=["{{ prune_changes_ledger('funnel_cohort_changes') }}", "{{ record_lake_touched_read() }}"],
) }}

{%- set scope = adapter.quote(this.identifier ~ '__scope') %}
{%- set lake_dates = lake_touched_partitions(
    ref('int_funnel_persons'), 'cohort_date', calendar=event_calendar('day', 'cohort_date')) %}

with

steps as (

    {{ configured_funnel_steps() }}

),

reached as (

    select reached.* from {{ ref('int_funnel_persons') }} as reached
    {%- if lake_dates is not none %}
        -- on Spark, the dates this run rewrites
        where {{ lake_days_condition('reached.cohort_date', lake_dates) }}
    {%- elif is_incremental_in_place() %}
        inner join {{ scope }} as scope
            on reached.funnel_name = scope.funnel_name and reached.cohort_date = scope.cohort_date
    {%- endif %}

),

calendar as (

    select * from ({{ event_calendar('day', 'cohort_date') }}) as days
    {%- if lake_dates is not none %}
        where {{ lake_days_condition('days.cohort_date', lake_dates) }}
    {%- endif %}

),

counts as (

    select
        funnel_name,
        cohort_date,
        step_index,
        count(*) as persons,
        percentile_cont(0.5) within group (order by seconds_from_previous) as median_seconds_from_previous
    from reached
    group by funnel_name, cohort_date, step_index

),

grid as (

    select
        steps.funnel_name,
        calendar.cohort_date,
        steps.step_index,
        steps.step_name,
        counts.median_seconds_from_previous,
        coalesce(counts.persons, 0) as persons
    from steps
    cross join calendar
    {%- if is_incremental_in_place() %}
        inner join {{ scope }} as scope
            on steps.funnel_name = scope.funnel_name and calendar.cohort_date = scope.cohort_date
    {%- endif %}
    left join counts
        on
            steps.funnel_name = counts.funnel_name
            and calendar.cohort_date = counts.cohort_date
            and steps.step_index = counts.step_index

),

with_previous as (

    select
        *,
        lag(persons) over by_cohort as previous_persons,
        first_value(persons) over by_cohort as start_persons
    from grid
    window by_cohort as (partition by funnel_name, cohort_date order by step_index)

)

select
    cast(funnel_name as {{ text_type() }}) as funnel_name,
    cast(cohort_date as date) as cohort_date,
    cast(step_index as integer) as step_index,
    cast(step_name as {{ text_type() }}) as step_name,
    cast(persons as bigint) as persons,
    {{ funnel_conversions() }},
    {{ double_to_decimal('median_seconds_from_previous', 'numeric(20, 3)') }} as median_seconds_from_previous,
    {{ built_at() }} as _built_at
from with_previous
