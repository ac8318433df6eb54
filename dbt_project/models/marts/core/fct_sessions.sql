-- Sessions of stitched persons: a new session starts when more than var session_timeout_minutes
-- (30) passed since the person's previous activity event (track, page, screen).
-- Incremental: for each person with changed events (time T of the earliest), the sessions ending at
-- or after T - timeout are deleted and rebuilt from the start of the earliest of them (or from T),
-- so a late event can extend or merge sessions and re-stitched events move to their person (the pre-hook finds them
-- through the index on (person_id, session_end), reading a person's recent sessions, not their history). Indexed on
-- _built_at:
-- daily_metrics finds the dates of the sessions a run rewrote without reading the table. A full build writes the
-- sessions in time order, so a date's sessions share pages. On Spark, partitioned by session_date: an incremental run
-- recomputes the dates a changed day's sessions can start on, from the events of the days around them, and overwrites
-- only those partitions (lake_session_days() in macros/spark.sql).
-- depends_on: {{ ref('int_identity_map') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    lake_partition_by='session_date',
    lake_partition_overwrite=true,
    pre_hook=["{{ rebuild_changed_sessions() }}"],
    post_hook=["{{ record_lake_days_built() }}", "{{ record_identity_built() }}"],
    indexes=[
        {'columns': ['person_id', 'session_start']},
        {'columns': ['person_id', 'session_end']},
        {'columns': ['session_date']},
        {'columns': ['_built_at']},
    ],
) }}

{%- set scope = adapter.quote(this.identifier ~ '__scope') %}
{%- set on_lake = target.type == 'spark' %}
{%- set lake_days = lake_days_to_build() %}
{%- set session_days = lake_session_days(lake_days) if on_lake and is_incremental() else none %}

with

activity as (

    select
        events.person_id,
        events.message_id,
        events.event_type,
        events.event_at,
        events.page_path,
        events.referrer,
        events.utm_source,
        events.utm_medium,
        events.utm_campaign
    {%- if session_days is not none %}
        from {{ ref('fct_events') }} as events
        where {{ lake_days_condition('events.event_date', session_days['read']) }} and events.is_activity
    {%- elif is_incremental() and not on_lake %}
        -- per changed person, their events from rebuild_from on: the (person_id, event_at) index of the
        -- partitions from that date on only (pruned at run time per person)
        from {{ scope }} as scope
        cross join lateral (
            select person_events.*
            from {{ ref('fct_events') }} as person_events
            where
                person_events.person_id = scope.person_id
                and person_events.event_at >= scope.rebuild_from
                and person_events.event_date >= cast({{ at_utc('scope.rebuild_from') }} as date)
            offset 0  -- keeps the lookup per person (a join would scan every partition)
        ) as events
        where events.is_activity
    {%- else %}
        from {{ ref('fct_events') }} as events
        where events.is_activity
    {%- endif %}

),

{{ session_numbering_ctes('activity') }},

sessions as (

    select
        person_id,
        session_number,
        {{ first_by('message_id', 'event_at, message_id') }} as first_message_id,
        min(event_at) as session_start,
        max(event_at) as session_end,
        count(*) as event_count,
        count(*) filter (where event_type = 'page') as page_views,
        {{ first_by('page_path', 'event_at, message_id', filter="event_type = 'page'") }} as landing_page,
        {{ first_by('referrer', 'event_at, message_id', filter="referrer is not null") }} as referrer,
        {{ first_by('utm_source', 'event_at, message_id', filter="utm_source is not null") }} as utm_source,
        {{ first_by('utm_medium', 'event_at, message_id', filter="utm_medium is not null") }} as utm_medium,
        {{ first_by('utm_campaign', 'event_at, message_id', filter="utm_campaign is not null") }}
            as utm_campaign
    from numbered
    group by person_id, session_number

)

select
    cast(md5(person_id || ':' || first_message_id) as {{ text_type() }}) as session_id,
    person_id,
    session_start,
    session_end,
    cast({{ at_utc('session_start') }} as date) as session_date,
    cast({{ seconds_between('session_start', 'session_end') }} as numeric(20, 3)) as duration_seconds,
    cast(event_count as integer) as event_count,
    cast(page_views as integer) as page_views,
    landing_page,
    referrer,
    utm_source,
    utm_medium,
    utm_campaign,
    {{ built_at() }} as _built_at
from sessions
{%- if session_days is not none %}
    where {{ lake_days_condition('cast(' ~ at_utc('session_start') ~ ' as date)', session_days['rebuild']) }}
{%- endif %}
{{ order_on_full_build('session_start') }}
