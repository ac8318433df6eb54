-- Funnels split by one property: for every funnel, each dimension in its `breakdowns` (a person
-- trait from dim_users, or a column or property of the entry event) and every value of it, the
-- persons reaching each step per cohort date. Rows exist for every step of every
-- (dimension, value, cohort date) that had at least one entry; a missing value is '(none)'.
-- Incremental: the (funnel, cohort date) keys a run can change are recomputed whole (pre-hook
-- rebuild_changed_funnel_cohorts; the YAML says which and why that is exact).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=["{{ rebuild_changed_funnel_cohorts(breakdown=true) }}"],
) }}

with

reached as (

    select reached.* from {{ ref('int_funnel_persons') }} as reached
    {%- if is_incremental() %}
        inner join {{ adapter.quote(this.identifier ~ '__scope') }} as scope
            on reached.funnel_name = scope.funnel_name and reached.cohort_date = scope.cohort_date
    {%- endif %}

),

steps as (

    {{ configured_funnel_steps() }}

),

-- one row per funnel and person: cohort, how far they got, and their entry event's attributes
entries as (

    select
        funnel_name,
        person_id,
        min(cohort_date) as cohort_date,
        max(step_index) as steps_reached,
        {{ first_by('entry_attributes', 'step_index', filter='step_index = 1') }} as entry_attributes
    from reached
    group by funnel_name, person_id

),

-- one join with dim_users, then one row per configured dimension (a lateral VALUES list)
labelled as (

    {%- set selects = [] %}
    {%- for funnel in funnels() if funnel.get('breakdowns') %}
        {%- set dimensions = [] %}
        {%- for dimension in funnel['breakdowns'] %}
            {%- do dimensions.append(
                ["'" ~ dimension ~ "'", "cast(" ~ funnel_breakdown_expression(dimension) ~ " as " ~ text_type() ~ ")"]) %}
        {%- endfor %}
        {%- do selects.append(
            "select entries.funnel_name, entries.cohort_date, entries.steps_reached, dimension.breakdown_by, "
            ~ "coalesce(dimension.breakdown_value, '(none)') as breakdown_value "
            ~ "from entries "
            ~ "left join " ~ ref('dim_users') ~ " as people on entries.person_id = people.person_id "
            ~ "cross join " ~ lateral_rows(dimensions, 'dimension', ['breakdown_by', 'breakdown_value']) ~ " "
            ~ "where entries.funnel_name = " ~ funnel_name_literal(funnel)
        ) %}
    {%- endfor %}
    {%- if selects %}
        {{ selects | join('\n        union all\n        ') }}
    {%- else %}
        select
            cast(null as {{ text_type() }}) as funnel_name,
            cast(null as date) as cohort_date,
            0 as steps_reached,
            cast(null as {{ text_type() }}) as breakdown_by,
            cast(null as {{ text_type() }}) as breakdown_value
        where false
    {%- endif %}

),

grouped as (

    select
        funnel_name,
        breakdown_by,
        breakdown_value,
        cohort_date,
        steps_reached,
        count(*) as persons
    from labelled
    group by funnel_name, breakdown_by, breakdown_value, cohort_date, steps_reached

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
