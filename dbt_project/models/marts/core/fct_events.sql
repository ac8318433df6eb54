-- Every valid event once, with its person. Partitioned by event_date (one range partition per UTC
-- day, created as needed) and built incrementally: a run reads the raw rows of the loads it has not
-- read yet (ops.model_loads, whatever order loads committed in), the events of anonymous ids that
-- int_identity_map re-stitched, and, when the orchestrator passes them, every row of the dates from
-- var start_date to var end_date (exclusive). Rows are upserted on (message_id, event_date) and only
-- rewritten when something in them changed.
-- The index on (event_name, event_at, person_id, event_date) lets the dashboards' query builder count an
-- event's rows and people from the index alone; the VACUUM after each build sets the visibility map that needs
-- (autovacuum may be off or behind); an incremental build vacuums only the partitions it wrote to.
-- A full build creates the partitions from the first to the last date of raw.events (raw_event_date_bounds:
-- two index lookups) and inserts the rows straight into them.
-- On Spark, an incremental run rebuilds whole days: those whose lake file changed since this model read it
-- and those holding events of re-mapped anonymous ids (lake_days_to_build() in macros/spark.sql), and overwrites
-- only those partitions of the lake table.
{{ config(
    materialized='incremental',
    incremental_strategy='partitioned_upsert',
    unique_key=['message_id', 'event_date'],
    partition_by={'column': 'event_date', 'bounds': 'raw_event_date_bounds'},
    lake_partition_overwrite=true,
    change_ignore_columns=['load_id', 'received_at', '_built_at'],
    pre_hook=["{{ collect_unread_loads() }}"],
    indexes=[
        {'columns': ['person_id', 'event_at']},
        {'columns': ['event_name', 'event_at', 'person_id', 'event_date']},
        {'columns': ['_built_at']},
        {'columns': ['load_id']},
    ],
    post_hook=[
        {'sql': '{{ rename_partitions(this) }}', 'transaction': false},
        {'sql': '{{ comment_partitions(this) }}', 'transaction': false},
        {'sql': '{{ vacuum_changed_partitions(this) }}', 'transaction': false},
        "{{ record_read_loads() }}",
        "{{ record_lake_days_built() }}",
        "{{ record_identity_built() }}",
    ],
) }}

{%- set lake_days = lake_days_to_build() %}
{%- set on_lake = target.type == 'spark' %}
{%- set last_built_at = none if on_lake else high_water_mark('_built_at') %}

with

{%- if is_incremental() and not on_lake %}

-- the anonymous ids int_identity_map (re-)stitched since this model's last build: their earlier events change person
restitched as (

    select identity_map.anonymous_id
    from {{ ref('int_identity_map') }} as identity_map
    where {{ changed_since(last_built_at, 'identity_map') }}

),

{%- endif %}

events as (

    {%- if is_incremental() and on_lake %}
        select * from {{ ref('stg_segment__events') }}
        -- the lake's day partitions to rebuild, as literals: Spark reads only their files
        {{ lake_days_filter('event_date', lake_days) }}
    {%- elif is_incremental() %}
        -- the rows of the loads this model has not read (collect_unread_loads(): staged in its pre-hook), then the
        -- other events of re-stitched anonymous ids and of the orchestrator's window, each row once (the upsert may
        -- not touch a row twice); each branch is an index lookup (`= any(array(...))`: see incremental_scope.sql)
        select * from {{ unread_events() }}
        union all
        select * from {{ ref('stg_segment__events') }} as stg
        where
            stg.anonymous_id = any(array(select restitched.anonymous_id from restitched))
            and not {{ in_unread_loads('stg.load_id') }}
        {%- if var('start_date', none) and var('end_date', none) %}
            union all
            select * from {{ ref('stg_segment__events') }} as stg
            where
                stg.event_at >= {{ at_utc("cast('" ~ var("start_date") ~ "' as timestamp)") }}
                and stg.event_at < {{ at_utc("cast('" ~ var("end_date") ~ "' as timestamp)") }}
                and not {{ in_unread_loads('stg.load_id') }}
                and not coalesce(stg.anonymous_id = any(array(select restitched.anonymous_id from restitched)), false)
        {%- endif %}
    {%- else %}
        select * from {{ ref('stg_segment__events') }}
    {%- endif %}

),

identity_map as (

    select * from {{ ref('int_identity_map') }}
    {%- if is_incremental() and not on_lake %}
        -- the run's anonymous ids, by the unique index (a join alone lets the planner read the whole map)
        where anonymous_id = any(array(select events.anonymous_id from events))
    {%- endif %}

),

final as (

    select
        events.message_id,
        coalesce(events.user_id, identity_map.user_id, events.anonymous_id) as person_id,
        events.user_id,
        events.anonymous_id,
        events.event_type,
        events.event_name,
        events.event_at,
        events.event_date,
        events.event_type in ({{ sql_list(var('activity_event_types')) }}) as is_activity,
        events.page_path,
        events.referrer,
        events.utm_source,
        events.utm_medium,
        events.utm_campaign,
        events.revenue,
        events.properties,
        events.traits,
        events.context,
        events.received_at,
        events.load_id,
        {{ built_at() }} as _built_at
    from events
    left join identity_map
        on events.anonymous_id = identity_map.anonymous_id

)

select * from final
