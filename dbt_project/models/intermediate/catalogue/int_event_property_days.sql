-- Per UTC date, the (event name, property key, JSON type) triples of that day's fct_events rows, so the Spark build
-- of dim_event_properties reads a few rows per day and key instead of every event's properties. On Spark a table
-- partitioned by event_date: a run recomputes the days fct_events rebuilds (lake_days_to_build(); an event's
-- properties never change with its person, so not the days of re-mapped ids) and overwrites those partitions alone.
-- On PostgreSQL a view (nothing stored): dim_event_properties there merges fct_events' new rows itself.
{{ config(
    materialized=('incremental' if target.type == 'spark' else 'view'),
    lake_partition_by='event_date',
    lake_partition_overwrite=true,
    post_hook=["{{ record_lake_days_built() }}"],
) }}

{%- set lake_days = lake_days_to_build(remapped=false) %}

with

events as (

    select * from {{ ref('fct_events') }}
    {%- if is_incremental() %}
        -- on Spark, the days this run rewrites
        where {{ lake_days_condition('event_date', lake_days) }}
    {%- endif %}

)

select
    events.event_name,
    properties.key as property_key,
    {{ json_value_kind('properties.value') }} as value_type,
    events.event_date
from events
cross join lateral {{ json_each('events.properties', 'properties') }}
where {{ json_kind('events.properties') }} = 'object'
group by 1, 2, 3, 4
