-- Conversion funnels by cohort date (the UTC date a person entered): one row for every step of
-- every funnel on every date from the first event to the last, zeros included. Incremental: the
-- (funnel, cohort date) keys a run can change are recomputed whole (pre-hook
-- rebuild_changed_funnel_cohorts; the YAML says which and why that is exact).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=["{{ rebuild_changed_funnel_cohorts() }}"],
    post_hook=["{{ prune_changes_ledger('funnel_cohort_changes') }}"],
) }}

{%- set scope = adapter.quote(this.identifier ~ '__scope') %}

with

steps as (

    {{ configured_funnel_steps() }}

),

reached as (

    select reached.* from {{ ref('int_funnel_persons') }} as reached
    {%- if is_incremental() %}
        inner join {{ scope }} as scope
            on reached.funnel_name = scope.funnel_name and reached.cohort_date = scope.cohort_date
    {%- endif %}

),

calendar as (

    {{ event_calendar('day', 'cohort_date') }}

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
    {%- if is_incremental() %}
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
