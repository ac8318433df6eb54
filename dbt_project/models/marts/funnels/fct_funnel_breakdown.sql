-- Funnels split by one property: for every funnel, each dimension in its `breakdowns` (a person
-- trait from dim_users, or a column or property of the entry event) and every value of it, the
-- persons reaching each step per cohort date. Rows exist for every step of every
-- (dimension, value, cohort date) that had at least one entry; a missing value is '(none)'.
-- Counted from int_funnel_breakdown_persons (one row per funnel, person and dimension). Incremental: the
-- differences int_funnel_breakdown_persons recorded since the last build (ops.funnel_breakdown_changes) are added to
-- the stored cells; what they cannot see is recounted whole (pre-hook rebuild_changed_breakdown_cells).
-- macros/funnel_breakdown_changes.sql says why that is exact. On Spark, partitioned by cohort_date: a run rewrites the
-- dates int_funnel_breakdown_persons logged as changed.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    lake_partition_by='cohort_date',
    lake_partition_overwrite=true,
    pre_hook=["{{ rebuild_changed_breakdown_cells() }}"],
    post_hook=["{{ prune_changes_ledger('funnel_breakdown_changes') }}", "{{ record_lake_touched_read() }}"],
) }}

{%- set lake_dates = lake_touched_partitions(ref('int_funnel_breakdown_persons'), 'cohort_date') %}

{%- set group_keys = 'funnel_name, breakdown_by, breakdown_value, cohort_date' %}

with

steps as (

    {{ configured_funnel_steps() }}

),

-- per group (funnel, dimension, value, cohort date), persons by the furthest step they reached
grouped as (

    select {{ group_keys }}, steps_reached, sum(persons) as persons
    from (
        select {{ group_keys }}, steps_reached, count(*) as persons
        from {{ ref('int_funnel_breakdown_persons') }}
        {%- if lake_dates is not none %}
            -- on Spark, the dates this run rewrites
            where {{ lake_days_condition('cohort_date', lake_dates) }}
        {%- elif is_incremental_in_place() %}
            where (funnel_name, cohort_date) in (
                select scope.funnel_name, scope.cohort_date
                from {{ adapter.quote(this.identifier ~ '__scope') }} as scope
            )
        {%- endif %}
        group by {{ group_keys }}, steps_reached
        {%- if is_incremental_in_place() %}
            union all
            -- the groups with differences: their stored persons at step k less those at k + 1 reached k at most
            select
                {{ group_keys }},
                step_index as steps_reached,
                persons - coalesce(lead(persons) over (partition by {{ group_keys }} order by step_index), 0)
            from {{ adapter.quote(this.identifier ~ '__previous') }}
            union all
            select {{ group_keys }}, steps_reached, persons from {{ adapter.quote(this.identifier ~ '__changes') }}
        {%- endif %}
    ) as counts
    group by {{ group_keys }}, steps_reached

),

-- the groups with persons: one none of whose persons is left has no rows
entered as (

    select {{ group_keys }}
    from grouped
    group by {{ group_keys }}
    having sum(persons) > 0

),

-- persons at step k = those whose furthest step is k or later
grid as (

    select
        grouped.funnel_name,
        grouped.breakdown_by,
        grouped.breakdown_value,
        grouped.cohort_date,
        steps.step_index,
        steps.step_name,
        coalesce(sum(grouped.persons) filter (where grouped.steps_reached >= steps.step_index), 0) as persons
    from grouped
    inner join entered
        on
            grouped.funnel_name = entered.funnel_name
            and grouped.breakdown_by = entered.breakdown_by
            and grouped.breakdown_value = entered.breakdown_value
            and grouped.cohort_date = entered.cohort_date
    inner join steps
        on grouped.funnel_name = steps.funnel_name
    group by
        grouped.funnel_name,
        grouped.breakdown_by,
        grouped.breakdown_value,
        grouped.cohort_date,
        steps.step_index,
        steps.step_name

),

with_previous as (

    select
        *,
        lag(persons) over by_group as previous_persons,
        first_value(persons) over by_group as start_persons
    from grid
    window by_group as (
        partition by funnel_name, breakdown_by, breakdown_value, cohort_date order by step_index
    )

)

select
    cast(funnel_name as {{ text_type() }}) as funnel_name,
    cast(breakdown_by as {{ text_type() }}) as breakdown_by,
    cast(breakdown_value as {{ text_type() }}) as breakdown_value,
    cast(cohort_date as date) as cohort_date,
    cast(step_index as integer) as step_index,
    cast(step_name as {{ text_type() }}) as step_name,
    cast(persons as bigint) as persons,
    {{ funnel_conversions() }},
    {{ built_at() }} as _built_at
from with_previous
