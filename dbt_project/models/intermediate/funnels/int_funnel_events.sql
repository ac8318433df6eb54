-- The funnel-relevant events only: one row per (funnel, step, event) for every event matching a
-- step of a configured funnel (var 'funnels'). Small, indexed on person: funnel queries read this
-- instead of fct_events. Step-1 rows keep the event's attributes (its properties, UTM fields,
-- referrer, page path and name) for breakdowns by the entry event. Incremental on the changed
-- events; a funnel whose definition changed is rebuilt from all events. The vacuum post-hook sets the
-- visibility map, so funnel queries read the (funnel, step, person, time) index alone.
-- On Spark, with the event's event_date too, partitioned by it: an incremental run rewrites the days fct_events
-- rewrites (macros/spark.sql), and only those partitions; every day when a funnel's definition changed.
{{ config(
    unique_key=['funnel_name', 'step_index', 'message_id'],
    lake_partition_by='event_date',
    lake_partition_overwrite=true,
    pre_hook=["{{ delete_changed_funnels() }}"],
    indexes=[{'columns': ['funnel_name', 'step_index', 'person_id', 'event_at']}, {'columns': ['message_id']}],
    post_hook=[
        "{{ record_funnel_definitions() }}",
        "{{ record_lake_days_built() }}",
        "{{ record_identity_built() }}",
        {'sql': '{{ vacuum_table(this, analyze=true) }}', 'transaction': false},
    ],
) }}

{%- set on_lake = target.type == 'spark' %}
{%- set since = none if on_lake else high_water_mark('_built_at') %}
{%- set unchanged = unchanged_funnels() %}
{%- set all_unchanged = funnels() | map(attribute='name') | reject('in', unchanged) | list | length == 0 %}
{%- set lake_days = lake_days_to_build(every_day=not all_unchanged) %}

with

matched as (

    {%- if not funnels() %}
        {{ no_rows([
            ('funnel_name', text_type()), ('definition_hash', text_type()), ('step_index', 'integer'),
            ('message_id', text_type()), ('person_id', text_type()), ('event_at', timestamptz_type()),
        ] + ([('event_date', 'date')] if on_lake else []) + [('attributes', json_type())]) }}
    {%- endif %}
    {%- for funnel in funnels() %}
        {%- for step in funnel['steps'] %}
            select
                {{ funnel_key_columns(funnel) }},
                {{ loop.index }} as step_index,
                message_id,
                person_id,
                event_at,
                {%- if on_lake %}
                    event_date,
                {%- endif %}
                {%- if loop.index == 1 %}
                    {{ json_merge_non_null('properties', {
                        'utm_source': 'utm_source', 'utm_medium': 'utm_medium', 'utm_campaign': 'utm_campaign',
                        'referrer': 'referrer', 'page_path': 'page_path', 'event_name': 'event_name',
                    }) }} as attributes
                {%- else %}
                    cast(null as {{ json_type() }}) as attributes
                {%- endif %}
            from {{ ref('fct_events') }}
            where
                ({{ funnel_step_condition(step) }})
            {%- if is_incremental() and on_lake %}
                    and {{ lake_days_condition('event_date', lake_days) }}
                {%- elif funnel['name'] in unchanged %}
                    and {{ events_changed_since(since) }}
                {%- endif %}
            {{ "union all" if not loop.last }}
        {%- endfor %}
        {{ "union all" if not loop.last }}
    {%- endfor %}

)

select
    funnel_name,
    definition_hash,
    cast(step_index as integer) as step_index,
    message_id,
    person_id,
    event_at,
    {%- if on_lake %}
        event_date,
    {%- endif %}
    attributes,
    {{ built_at() }} as _built_at
from matched
