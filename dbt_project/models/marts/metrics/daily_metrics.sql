-- Daily product metrics in long form: one row per (date, metric_name) for every UTC date from the
-- first event to the last, zeros included. Definitions: docs/metrics.md and _metrics__models.yml.
-- Incremental: every date from the earliest date touched by changed, erased events or rebuilt sessions to
-- the last date is recomputed (WAU/MAU of later dates depend on earlier days). For up to a week of such
-- dates (an hourly run: today, perhaps yesterday) WAU and MAU are counted directly per date from the person-
-- days of the 7 and 30 days up to it; for more, by the running sum of steps below.
-- depends_on: {{ ref('fct_events') }}
{{ config(
    materialized='incremental',
    unique_key='date',
) }}

{#- the unpivot's rows: (metric name, its value) from each date's wide row -#}
{%- set metrics = [] %}
{%- set metric_names = [
    'dau', 'wau', 'mau', 'stickiness', 'signups', 'new_people', 'events', 'revenue', 'mrr', 'sessions'
] %}
{%- for name in metric_names %}
    {%- if name == 'stickiness' %}
        {%- set value = "case when filled.mau > 0 then round(cast(filled.dau as " ~ numeric_type() ~ ")"
            ~ " / filled.mau, 6) else 0 end" %}
    {%- else %}
        {%- set value = "filled." ~ name %}
    {%- endif %}
    {%- do metrics.append(["'" ~ name ~ "'", "cast(" ~ value ~ " as " ~ numeric_type() ~ ")"]) %}
{%- endfor %}

{%- set first_date = none %}
{%- set nothing_changed = false %}
{%- set by_date = false %}
{%- if execute and is_incremental() %}
    {%- set since = high_water_mark('_built_at') %}
    {%- set dates = run_query(
        "select least((select min(event_date) from " ~ ref('fct_events') ~ " where " ~ changed_since(since) ~ "), "
        ~ "(select min(session_date) from " ~ ref('fct_sessions') ~ " where " ~ changed_since(since) ~ "), "
        ~ "(select min(event_date) from (" ~ erased_events_sql(since) ~ ") as erased))::text, "
        ~ "(select max(event_date) from " ~ ref('int_event_days') ~ ")::text"
    ) %}
    {%- set first_date = dates.columns[0].values()[0] %}
    {%- set last_date = dates.columns[1].values()[0] %}
    {%- set nothing_changed = first_date is none %}
    {#- a few dates: WAU and MAU counted per date (cost: the person-days of 30 days, whatever the history) -#}
    {%- set by_date = first_date is not none and last_date is not none and (
        modules.datetime.date.fromisoformat(last_date) - modules.datetime.date.fromisoformat(first_date)
    ).days < 7 %}
{%- endif %}

{#- the first date recomputed, as a literal when known (the planner then reads the date indexes) -#}
{%- set from_date = "(select bounds.first_date from bounds)" %}
{%- if first_date is not none %}{% set from_date = "date '" ~ first_date ~ "'" %}{% endif %}

with

event_days as (

    select * from {{ ref('int_event_days') }}

),

bounds as (

    select
        {%- if first_date is not none %}
            cast('{{ first_date }}' as date) as first_date,
        {%- else %}
            min(event_date) as first_date,
        {%- endif %}
        max(event_date) as last_date
    from event_days

),

calendar as (

    select cast(calendar_day.calendar_day as date) as date
    from bounds
    cross join lateral {{ series('bounds.first_date', 'bounds.last_date', 'calendar_day', step="interval '1 day'") }}
    {%- if nothing_changed %}
        where false
    {%- endif %}

),

{%- if by_date %}

-- WAU (MAU) of each date: the persons with an active day in the 7 (30) days up to it, every date in one pass
-- over the person-days of the window
{%- set first = modules.datetime.date.fromisoformat(first_date) %}
{%- set window_dates = [] %}
{%- for offset in range((modules.datetime.date.fromisoformat(last_date) - first).days + 1) %}
    {%- do window_dates.append((first + modules.datetime.timedelta(days=offset)).isoformat()) %}
{%- endfor %}
active_by_person as (

    select
        {%- for day in window_dates %}
            bool_or(activity_date between date '{{ day }}' - 6 and date '{{ day }}') as wau_{{ loop.index }},
            bool_or(activity_date between date '{{ day }}' - 29 and date '{{ day }}') as mau_{{ loop.index }},
        {%- endfor %}
        person_id
    from {{ ref('int_person_days') }}
    where activity_date between date '{{ first_date }}' - 29 and date '{{ last_date }}'
    group by person_id

),

coverage_by_date as (

    {%- for day in window_dates %}
        select
            date '{{ day }}' as date,
            count(*) filter (where wau_{{ loop.index }}) as wau,
            count(*) filter (where mau_{{ loop.index }}) as mau
        from active_by_person
        {{- '\n        union all' if not loop.last }}
    {%- endfor %}

),

{%- endif %}

-- (the running sum of steps, for more dates; not evaluated when unused)
person_days as (

    select
        person_days.person_id,
        person_days.activity_date,
        lead(person_days.activity_date) over (
            partition by person_days.person_id order by person_days.activity_date
        ) as next_activity_date
    from {{ ref('int_person_days') }} as person_days
    where person_days.activity_date >= (select bounds.first_date - 29 from bounds)

),

-- A person counts in WAU (MAU) on every date within 6 (29) days after one of their active days.
-- Each active day covers the dates up to that horizon or up to the person's next active day,
-- whichever comes first, so a person is counted once per date: a running sum of +1/-1 steps.
coverage_steps as (

    select
        activity_date as step_date,
        1 as wau_step,
        1 as mau_step
    from person_days
    union all
    select
        least(activity_date + 7, next_activity_date) as step_date,
        -1 as wau_step,
        0 as mau_step
    from person_days
    union all
    select
        least(activity_date + 30, next_activity_date) as step_date,
        0 as wau_step,
        -1 as mau_step
    from person_days

),

coverage as (

    select
        step_date,
        sum(sum(wau_step)) over (order by step_date) as wau,
        sum(sum(mau_step)) over (order by step_date) as mau
    from coverage_steps
    group by step_date

),

dau as (

    select
        activity_date,
        count(*) as dau
    from {{ ref('int_person_days') }}
    where activity_date >= {{ from_date }}
    group by activity_date

),

new_people as (

    select
        cast({{ at_utc('first_activity_at') }} as date) as first_activity_date,
        count(*) as new_people
    from {{ ref('dim_users') }}
    where first_activity_at >= {{ at_utc('cast(' ~ from_date ~ ' as timestamp)') }}
    group by cast({{ at_utc('first_activity_at') }} as date)

),

sessions as (

    select
        session_date,
        count(*) as sessions
    from {{ ref('fct_sessions') }}
    where session_date >= {{ from_date }}
    group by session_date

),

-- End-of-day MRR: each change moves the total by (new MRR - the person's previous MRR). An incremental run starts
-- from the stored MRR of the day before its first date and adds the steps from that date on (the previous MRR of
-- each person who changed comes from their whole history).
mrr_steps as (

    select
        changed_date,
        mrr - coalesce(lag(mrr) over (partition by person_id order by changed_at, message_id), 0) as mrr_step
    from {{ ref('int_mrr_changes') }}
    {%- if first_date is not none %}
        where person_id in (
            select changes.person_id from {{ ref('int_mrr_changes') }} as changes
            where changes.changed_date >= {{ from_date }}
        )
    {%- endif %}

),

mrr as (

    {%- if first_date is not none %}
        select
            {{ from_date }} - 1 as changed_date,
            coalesce((
                select stored.value from {{ this }} as stored
                where stored.date = {{ from_date }} - 1 and stored.metric_name = 'mrr'
            ), 0) as mrr
        union all
        select
            changed_date,
            coalesce((
                select stored.value from {{ this }} as stored
                where stored.date = {{ from_date }} - 1 and stored.metric_name = 'mrr'
            ), 0) + sum(sum(mrr_step)) over (order by changed_date) as mrr
        from mrr_steps
        where changed_date >= {{ from_date }}
        group by changed_date
    {%- else %}
        select
            changed_date,
            sum(sum(mrr_step)) over (order by changed_date) as mrr
        from mrr_steps
        group by changed_date
    {%- endif %}

),

filled as (

    select
        calendar.date,
        coalesce(dau.dau, 0) as dau,
        {%- if by_date %}
            coalesce(coverage_by_date.wau, 0) as wau,
            coalesce(coverage_by_date.mau, 0) as mau,
        {%- else %}
            coalesce((
                select coverage.wau from coverage
                where coverage.step_date <= calendar.date
                order by coverage.step_date desc limit 1
            ), 0) as wau,
            coalesce((
                select coverage.mau from coverage
                where coverage.step_date <= calendar.date
                order by coverage.step_date desc limit 1
            ), 0) as mau,
        {%- endif %}
        coalesce(event_days.signups, 0) as signups,
        coalesce(new_people.new_people, 0) as new_people,
        coalesce(event_days.activity_events, 0) as events,
        coalesce(event_days.revenue, 0) as revenue,
        coalesce((
            select mrr.mrr from mrr
            where mrr.changed_date <= calendar.date
            order by mrr.changed_date desc limit 1
        ), 0) as mrr,
        coalesce(sessions.sessions, 0) as sessions
    from calendar
    left join dau on calendar.date = dau.activity_date
    left join event_days on calendar.date = event_days.event_date
    left join new_people on calendar.date = new_people.first_activity_date
    left join sessions on calendar.date = sessions.session_date
    {%- if by_date %}
        left join coverage_by_date on calendar.date = coverage_by_date.date
    {%- endif %}

),

unpivoted as (

    select
        filled.date,
        metric.metric_name,
        metric.value
    from filled
    cross join {{ lateral_rows(metrics, 'metric', ['metric_name', 'value']) }}

)

select
    cast(date as date) as date,
    cast(metric_name as {{ text_type() }}) as metric_name,
    cast(value as numeric(20, 6)) as value,
    {{ built_at() }} as _built_at
from unpivoted
