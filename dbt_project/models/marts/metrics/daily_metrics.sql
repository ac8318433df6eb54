-- Daily product metrics in long form: one row per (date, metric_name) for every UTC date from the
-- first event to the last, zeros included. Definitions: docs/metrics.md and _metrics__models.yml.
-- Incremental: every date from the earliest date touched by changed, erased events or rebuilt sessions to
-- the last date is recomputed (WAU/MAU of later dates depend on earlier days). WAU and MAU come from
-- int_active_coverage, which keeps them by differences. MRR moves only from the earliest date of an MRR change written
-- (int_mrr_changes, index on _built_at) or erased since: before it, the recomputed dates keep their stored MRR (an
-- identify that stitches a visitor's old page views recomputes those dates, not the months of MRR since).
-- On Spark, partitioned by date: a run recomputes the dates from the day before the first lake day rewritten since its
-- last build (lake_rewrite_from(): sessions starting the day before a rewritten day can change) and overwrites those
-- partitions alone; MRR continues from the stored value of the day before them.
-- depends_on: {{ ref('fct_events') }}
{{ config(
    materialized='incremental',
    unique_key='date',
    lake_partition_by='date',
    lake_partition_overwrite=true,
    post_hook=["{{ record_lake_days_built() }}", "{{ record_identity_built() }}"],
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
{%- set mrr_first_date = none %}
{%- set nothing_changed = false %}
{%- set lake_from = lake_rewrite_from('date', shift=-1) %}
{%- set stored_mrr = none %}
{%- if lake_from is not none %}
    {#- on Spark: MRR from the first recomputed date on, from the stored MRR of the day before it -#}
    {%- set first_date = lake_from['from'] %}
    {%- set mrr_first_date = first_date %}
    {%- set nothing_changed = first_date is none %}
    {%- if first_date is not none %}
        {%- set stored_mrr = run_query(
            "select coalesce(max(cast(value as string)), '0') from " ~ this ~ " where metric_name = 'mrr' and "
            ~ adapter.quote('date') ~ " = date_sub(date '" ~ first_date ~ "', 1)").columns[0].values()[0] %}
    {%- endif %}
{%- elif execute and is_incremental_in_place() %}
    {%- set since = high_water_mark('_built_at') %}
    {%- set mrr_changed_from = "least((select min(changed_date) from " ~ ref('int_mrr_changes') ~ " where "
        ~ changed_since(since) ~ "), (select min(event_date) from (" ~ erased_events_sql(since) ~ ") as erased))" %}
    {%- set dates = run_query(
        "select least((select min(event_date) from " ~ ref('fct_events') ~ " where " ~ events_changed_since(since) ~ "), "
        ~ "(select min(session_date) from " ~ ref('fct_sessions') ~ " where " ~ changed_since(since) ~ "), "
        ~ mrr_changed_from ~ ")::text, " ~ mrr_changed_from ~ "::text"
    ) %}
    {%- set first_date = dates.columns[0].values()[0] %}
    {%- set mrr_first_date = dates.columns[1].values()[0] %}
    {%- set nothing_changed = first_date is none %}
{%- endif %}

{#- the first date recomputed, as a literal when known (the planner then reads the date indexes) -#}
{%- set from_date = "(select bounds.first_date from bounds)" %}
{%- if first_date is not none %}{% set from_date = "date '" ~ first_date ~ "'" %}{% endif %}
{#- the first date whose MRR is recomputed from the changes (incremental runs; none: no MRR changed) -#}
{%- set mrr_from = "date '" ~ mrr_first_date ~ "'" if mrr_first_date is not none else none %}

with

event_days as (

    select * from {{ ref('int_event_days') }}

),

bounds as (

    select
        {%- if first_date is not none %}
            -- (on Spark the day before the first rewritten day, which can precede the first event's)
            greatest(cast('{{ first_date }}' as date), min(event_date)) as first_date,
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

-- End-of-day MRR: each change moves the total by (new MRR - the person's previous MRR). An incremental run keeps the
-- stored MRR of the dates before the first one an MRR change moved (mrr_from), starts from the stored MRR of the day
-- before it and adds the steps from that date on: the changes from that date on, and before them each such person's
-- last earlier change (index (person_id, changed_at)), the MRR their first step starts from; their older history does
-- not matter.
mrr_steps as (

    select
        changed_date,
        mrr - coalesce(lag(mrr) over (partition by person_id order by changed_at, message_id), 0) as mrr_step
    {%- if mrr_from is not none and stored_mrr is not none %}
        -- on Spark: the history of the persons with changes from that date on (their first step needs the change
        -- before it)
        from {{ ref('int_mrr_changes') }}
        where person_id in (
            select changes.person_id from {{ ref('int_mrr_changes') }} as changes
            where changes.changed_date >= {{ mrr_from }}
        )
    {%- elif mrr_from is not none %}
        from (
            select person_id, changed_date, changed_at, message_id, mrr
            from {{ ref('int_mrr_changes') }}
            where changed_date >= {{ mrr_from }}
            union all
            select earlier.person_id, earlier.changed_date, earlier.changed_at, earlier.message_id, earlier.mrr
            from (
                select distinct changes.person_id from {{ ref('int_mrr_changes') }} as changes
                where changes.changed_date >= {{ mrr_from }}
            ) as persons
            cross join lateral (
                select before.person_id, before.changed_date, before.changed_at, before.message_id, before.mrr
                from {{ ref('int_mrr_changes') }} as before
                where before.person_id = persons.person_id and before.changed_date < {{ mrr_from }}
                order by before.changed_at desc, before.message_id desc
                limit 1
            ) as earlier
        ) as changes
    {%- elif first_date is not none or nothing_changed %}
        -- no MRR changed: no steps
        from {{ ref('int_mrr_changes') }}
        where false
    {%- else %}
        from {{ ref('int_mrr_changes') }}
    {%- endif %}

),

mrr as {{ cte_materialized() }} (

    {%- if stored_mrr is not none %}
        select
            date_sub({{ mrr_from }}, 1) as changed_date,
            cast('{{ stored_mrr }}' as {{ numeric_type() }}) as mrr
        union all
        select
            changed_date,
            cast('{{ stored_mrr }}' as {{ numeric_type() }}) + sum(sum(mrr_step)) over (order by changed_date) as mrr
        from mrr_steps
        where changed_date >= {{ mrr_from }}
        group by changed_date
    {%- elif first_date is not none %}
        select
            stored.date as changed_date,
            stored.value as mrr
        from {{ this }} as stored
        where
            stored.metric_name = 'mrr'
            and stored.date >= {{ from_date }} - 1
            {%- if mrr_from is not none %}
                and stored.date < {{ mrr_from }}
            {%- endif %}
        {%- if mrr_from is not none %}
            union all
            select
                changed_date,
                coalesce((
                    select stored.value from {{ this }} as stored
                    where stored.date = {{ mrr_from }} - 1 and stored.metric_name = 'mrr'
                ), 0) + sum(sum(mrr_step)) over (order by changed_date) as mrr
            from mrr_steps
            where changed_date >= {{ mrr_from }}
            group by changed_date
        {%- endif %}
    {%- else %}
        select
            changed_date,
            sum(sum(mrr_step)) over (order by changed_date) as mrr
        from mrr_steps
        group by changed_date
    {%- endif %}

),

coverage as (

    select * from {{ ref('int_active_coverage') }}
    {%- if first_date is not none %}
        where date >= {{ from_date }}
    {%- endif %}

),

filled as (

    select
        calendar.date,
        coalesce(dau.dau, 0) as dau,
        coalesce(coverage.wau, 0) as wau,
        coalesce(coverage.mau, 0) as mau,
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
    left join coverage on calendar.date = coverage.date

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
