-- Per cohort grain (week, month) and person: the person's cohort and the periods since it they were
-- active in. One row per (grain, person, period): period 0 always (the person is a member of the
-- cohort, is_active says whether they were active in it), later periods only when active. A
-- person's cohort is the period of their signup, or of their first activity event if they never
-- signed up (dim_users, which adds archived history); activity is int_person_days. fct_cohort_retention
-- counts these rows per cohort. Incremental: for the persons with changed events (and those they counted under
-- before), the rows of the periods from the one holding their earliest changed event on (every period when their
-- cohort moved or they are new) are deleted and recomputed (pre-hook rebuild_changed_cohort_periods), and what
-- that changed in each retention cell is recorded in ops.cohort_changes (post-hook, macros/cohort_changes.sql).
-- On Spark, merge-on-read (macros/lake_merge.sql): the persons whose events changed are recomputed into the delta,
-- and the cohort starts of their rows that changed are logged (ops.lake_merge_touched): fct_cohort_retention recounts
-- those.
-- depends_on: {{ ref('int_identity_map') }}, {{ ref('fct_events') }}
{{ config(
    incremental_strategy='append',
    lake_merge_key='person_id',
    lake_merge_touched='cohort_start',
    pre_hook=["{{ rebuild_changed_cohort_periods() }}"],
    post_hook=["{{ record_cohort_changes() }}", "{{ record_identity_built() }}"],
    indexes=[{'columns': ['person_id']}, {'columns': ['cohort_grain', 'cohort_start']}],
) }}

{%- set scope = adapter.quote(this.identifier ~ '__scope') %}

with

people as (

    select
        person_id,
        signed_up_at,
        first_activity_at
    from {{ ref('dim_users') }}
    where
        coalesce(signed_up_at, first_activity_at) is not null
    {%- if lake_merge_incremental() %}
            -- on Spark, an hour's persons (merge-on-read: macros/lake_merge.sql)
            and {{ lake_merge_filter('person_id') }}
        {%- endif %}
    {%- if is_incremental() %}
            and person_id in (select scope.person_id from {{ scope }} as scope)
        {%- endif %}

),

grains as (

    {{ cohort_grains() }}

),

cohorts as (

    select
        grains.grain,
        people.person_id,
        {{ cohort_start_of('grains.grain', 'people') }} as cohort_start,
        {%- if is_incremental() %}
            scope.rebuild_from
        {%- else %}
            cast(null as date) as rebuild_from
        {%- endif %}
    from people
    cross join grains
    {%- if is_incremental() %}
        inner join {{ scope }} as scope
            on people.person_id = scope.person_id and grains.grain = scope.cohort_grain
    {%- endif %}

),

-- the periods rebuilt only: from rebuild_from on (the (person_id, activity_date) index)
active_periods as (

    select distinct
        grains.grain,
        person_days.person_id,
        cast(date_trunc(grains.grain, cast(person_days.activity_date as timestamp)) as date) as period_start
    from {{ ref('int_person_days') }} as person_days
    cross join grains
    {%- if lake_merge_incremental() %}
        where {{ lake_merge_filter('person_days.person_id') }}
    {%- endif %}
    {%- if is_incremental() %}
        inner join {{ scope }} as scope
            on person_days.person_id = scope.person_id and grains.grain = scope.cohort_grain
        where person_days.activity_date >= coalesce(scope.rebuild_from, cast('-infinity' as date))
    {%- endif %}

),

active as (

    select
        cohorts.grain,
        cohorts.person_id,
        cohorts.cohort_start,
        case
            when cohorts.grain = 'week'
                then {{ int_div(days_between('cohorts.cohort_start', 'active_periods.period_start'), 7) }}
            else
                (extract(year from active_periods.period_start) - extract(year from cohorts.cohort_start)) * 12
                + extract(month from active_periods.period_start) - extract(month from cohorts.cohort_start)
        end as period_number
    from cohorts
    inner join active_periods
        on
            cohorts.grain = active_periods.grain
            and cohorts.person_id = active_periods.person_id
            and cohorts.cohort_start <= active_periods.period_start

),

person_periods as (

    select
        grain,
        person_id,
        cohort_start,
        period_number,
        true as is_active
    from active
    union all
    -- membership: period 0 for everyone, inactive when they were not active in it
    select
        cohorts.grain,
        cohorts.person_id,
        cohorts.cohort_start,
        0 as period_number,
        false as is_active
    from cohorts
    where
        (cohorts.rebuild_from is null or cohorts.rebuild_from <= cohorts.cohort_start)
        and not exists (
            select 1 from active
            where
                active.grain = cohorts.grain
                and active.person_id = cohorts.person_id
                and active.period_number = 0
        )

)

select
    cast(grain as {{ text_type() }}) as cohort_grain,
    person_id,
    cohort_start,
    cast(period_number as integer) as period_number,
    is_active,
    {{ built_at() }} as _built_at
from person_periods
