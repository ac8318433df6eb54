-- The catalogue of event properties: one row per (event_name, property_key) ever seen in fct_events,
-- with the JSON types its values had and the first and last day it was seen. The dashboards' query
-- builder checks every event name and property key against it (and offers them in its form); BI
-- users can browse it to see what they can filter on. Incremental: only fct_events rows written since
-- the last build are read, merged with the catalogue rows they touch (a message's properties never
-- change, so merging is exact); an event name a GDPR erasure deleted events of is recomputed from
-- its remaining rows (pre-hook: its keys are deleted first, in case none remain). On Spark, aggregated whole from
-- int_event_property_days (a few rows per day and key, kept up to date by day partitions) on every run.
-- depends_on: {{ ref('int_event_property_days') }}
{{ config(
    materialized='incremental',
    unique_key=['event_name', 'property_key'],
    pre_hook=["{{ delete_erased_event_names() }}"],
) }}

{%- set last_built_at = high_water_mark('_built_at') %}
{%- set erased_names = [] %}
{%- if execute and is_incremental() %}
    {%- set erased_names = run_query(
        "select distinct event_name from (" ~ erased_events_sql(last_built_at) ~ ") as erased "
        ~ "where event_name is not null").columns[0].values() | list %}
{%- endif %}

with

seen as (

    {%- if target.type == 'spark' %}
        -- on Spark, from the catalogue's days (a few rows per day and key)
        select
            event_name,
            property_key,
            value_type,
            min(event_date) as first_seen_date,
            max(event_date) as last_seen_date
        from {{ ref('int_event_property_days') }}
        group by 1, 2, 3
    {%- else %}
        select
            events.event_name,
            properties.key as property_key,
            {{ json_value_kind('properties.value') }} as value_type,
            min(events.event_date) as first_seen_date,
            max(events.event_date) as last_seen_date
        from {{ ref('fct_events') }} as events
        cross join lateral {{ json_each('events.properties', 'properties') }}
        where
            {{ json_kind('events.properties') }} = 'object'
            and (
                {{ events_changed_since(last_built_at, 'events') }}
                {%- if erased_names %}
                    or events.event_name in ({{ sql_list(erased_names) }})
                {%- endif %}
            )
        group by 1, 2, 3
    {%- endif %}

),

{%- if is_incremental() %}

known as (

    select
        catalogue.event_name,
        catalogue.property_key,
        value_types.value_type,
        catalogue.first_seen_date,
        catalogue.last_seen_date
    from {{ this }} as catalogue
    cross join lateral string_to_table(catalogue.value_types, ',') as value_types (value_type)
    where exists (
        select 1 from seen
        where seen.event_name = catalogue.event_name and seen.property_key = catalogue.property_key
    )

),

{%- endif %}

merged as (

    select * from seen
    {%- if is_incremental() %}
        union all
        select * from known
    {%- endif %}

)

select
    event_name,
    property_key,
    {{ sorted_distinct_list('value_type') }} as value_types,
    min(first_seen_date) as first_seen_date,
    max(last_seen_date) as last_seen_date,
    {{ built_at() }} as _built_at
from merged
group by 1, 2
