-- Cohort retention by week (weeks start on Monday) and by month. A person's cohort is the period
-- of their signup, or of their first activity event if they never signed up. Period n counts the
-- persons of the cohort with an activity event in period cohort_start + n (retention_rate); the
-- unbounded rate counts those active in period n or any later period. Rows run from period 0 to the
-- period containing the last event date, zeros included.
with

people as (

    select
        person_id,
        cast({{ at_utc('coalesce(signed_up_at, first_activity_at)') }} as timestamp) as cohort_at
    from {{ ref('dim_users') }}
    where coalesce(signed_up_at, first_activity_at) is not null

),

grains as (

    select grain from (values ('week'), ('month')) as grains (grain)

),

last_day as (

    select cast(max(event_date) as timestamp) as last_day from {{ ref('int_event_days') }}

),

cohorts as (

    select
        grains.grain,
        people.person_id,
        cast(date_trunc(grains.grain, people.cohort_at) as date) as cohort_start
    from people
    cross join grains

),

active_periods as (

    select distinct
        grains.grain,
        person_days.person_id,
        cast(date_trunc(grains.grain, cast(person_days.activity_date as timestamp)) as date) as period_start
    from {{ ref('int_person_days') }} as person_days
    cross join grains

),

cohort_activity as (

    -- distinct per (grain, person, period), and a person has one cohort per grain: plain counts below
    select
        cohorts.grain,
        cohorts.cohort_start,
        cohorts.person_id,
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

cohort_sizes as (

    select
        grain,
        cohort_start,
        count(*) as cohort_size
    from cohorts
    group by grain, cohort_start

),

periods as (

    select
        cohort_sizes.grain,
        cohort_sizes.cohort_start,
        cohort_sizes.cohort_size,
        cast(period_number as integer) as period_number
    from cohort_sizes
    cross join last_day
    {%- set last_period %}
        cast(case
            when cohort_sizes.grain = 'week'
                then {{ int_div(days_between(
                    'cohort_sizes.cohort_start', "cast(date_trunc('week', last_day.last_day) as date)"), 7) }}
            else
                (extract(year from last_day.last_day) - extract(year from cohort_sizes.cohort_start)) * 12
                + extract(month from last_day.last_day) - extract(month from cohort_sizes.cohort_start)
        end as integer)
    {%- endset %}
    cross join lateral {{ series('0', last_period, 'period_number') }}

),

retained as (

    select
        grain,
        cohort_start,
        period_number,
        count(*) as retained_persons
    from cohort_activity
    group by grain, cohort_start, period_number

),

last_active as (

    select
        grain,
        cohort_start,
        person_id,
        max(period_number) as last_period
    from cohort_activity
    group by grain, cohort_start, person_id

),

last_period_counts as (

    select
        grain,
        cohort_start,
        last_period,
        count(*) as persons
    from last_active
    group by grain, cohort_start, last_period

),

unbounded as (

    -- persons active in period n or later = persons whose last active period is >= n
    select
        periods.grain,
        periods.cohort_start,
        periods.period_number,
        coalesce(sum(last_period_counts.persons), 0) as unbounded_retained_persons
    from periods
    left join last_period_counts
        on
            periods.grain = last_period_counts.grain
            and periods.cohort_start = last_period_counts.cohort_start
            and periods.period_number <= last_period_counts.last_period
    group by periods.grain, periods.cohort_start, periods.period_number

)

select
    cast(periods.grain as {{ text_type() }}) as cohort_grain,
    periods.cohort_start,
    periods.period_number,
    cast(periods.cohort_size as bigint) as cohort_size,
    cast(coalesce(retained.retained_persons, 0) as bigint) as retained_persons,
    cast(cast(coalesce(retained.retained_persons, 0) as {{ numeric_type() }}) / periods.cohort_size as numeric(20, 6))
        as retention_rate,
    cast(unbounded.unbounded_retained_persons as bigint) as unbounded_retained_persons,
    cast(cast(unbounded.unbounded_retained_persons as {{ numeric_type() }}) / periods.cohort_size as numeric(20, 6))
        as unbounded_retention_rate
from periods
left join retained
    on
        periods.grain = retained.grain
        and periods.cohort_start = retained.cohort_start
        and periods.period_number = retained.period_number
inner join unbounded
    on
        periods.grain = unbounded.grain
        and periods.cohort_start = unbounded.cohort_start
        and periods.period_number = unbounded.period_number
