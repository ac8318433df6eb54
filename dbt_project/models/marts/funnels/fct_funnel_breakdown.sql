-- Funnels split by one property: for every funnel, each dimension in its `breakdowns` (a person
-- trait from dim_users, or a column or property of the entry event) and every value of it, the
-- persons reaching each step per cohort date. Rows exist for every step of every
-- (dimension, value, cohort date) that had at least one entry; a missing value is '(none)'.
with

reached as (

    select * from {{ ref('int_funnel_persons') }}

),

steps as (

    select *
    from {{ funnel_steps_values() }} as configured (funnel_name, step_index, step_name)

),

entries as (

    select
        reached.funnel_name,
        reached.person_id,
        reached.cohort_date,
        reached.entry_attributes
    from reached
    where reached.step_index = 1

),

labelled as (

    {%- set selects = [] %}
    {%- for funnel in funnels() %}
        {%- for dimension in funnel.get('breakdowns') or [] %}
            {%- do selects.append(
                "select entries.funnel_name, entries.person_id, entries.cohort_date, "
                ~ "cast('" ~ dimension ~ "' as text) as breakdown_by, "
                ~ "coalesce(cast(" ~ funnel_breakdown_expression(dimension) ~ " as text), '(none)') as breakdown_value "
                ~ "from entries "
                ~ "left join " ~ ref('dim_users') ~ " as people on entries.person_id = people.person_id "
                ~ "where entries.funnel_name = '" ~ (funnel['name'] | replace("'", "''")) ~ "'"
            ) %}
        {%- endfor %}
    {%- endfor %}
    {%- if selects %}
        {{ selects | join('\n        union all\n        ') }}
    {%- else %}
        select
            cast(null as text) as funnel_name,
            cast(null as text) as person_id,
            cast(null as date) as cohort_date,
            cast(null as text) as breakdown_by,
            cast(null as text) as breakdown_value
        where false
    {%- endif %}

),

counts as (

    select
        labelled.funnel_name,
        labelled.breakdown_by,
        labelled.breakdown_value,
        labelled.cohort_date,
        reached.step_index,
        count(*) as persons
    from labelled
    inner join reached
        on
            labelled.funnel_name = reached.funnel_name
            and labelled.person_id = reached.person_id
    group by 1, 2, 3, 4, 5

),

grid as (

    select
        groups.funnel_name,
        groups.breakdown_by,
        groups.breakdown_value,
        groups.cohort_date,
        steps.step_index,
        steps.step_name,
        coalesce(counts.persons, 0) as persons
    from (select distinct
        funnel_name,
        breakdown_by,
        breakdown_value,
        cohort_date
    from labelled) as groups
    inner join steps
        on groups.funnel_name = steps.funnel_name
    left join counts
        on
            groups.funnel_name = counts.funnel_name
            and groups.breakdown_by = counts.breakdown_by
            and groups.breakdown_value = counts.breakdown_value
            and groups.cohort_date = counts.cohort_date
            and steps.step_index = counts.step_index

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
    cast(funnel_name as text) as funnel_name,
    cast(breakdown_by as text) as breakdown_by,
    cast(breakdown_value as text) as breakdown_value,
    cast(cohort_date as date) as cohort_date,
    cast(step_index as integer) as step_index,
    cast(step_name as text) as step_name,
    cast(persons as bigint) as persons,
    cast(case
        when step_index = 1 then 1
        when previous_persons > 0 then cast(persons as numeric) / previous_persons
    end as numeric(20, 6)) as conversion_from_previous,
    cast(cast(persons as numeric) / start_persons as numeric(20, 6)) as conversion_from_start,
    cast(coalesce(previous_persons - persons, 0) as bigint) as drop_off
from with_previous
