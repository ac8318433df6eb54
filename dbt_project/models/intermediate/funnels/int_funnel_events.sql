-- The funnel-relevant events only: one row per (funnel, step, event) for every event matching a
-- step of a configured funnel (var 'funnels'). Small, indexed on person: funnel queries read this
-- instead of fct_events. Incremental on the changed events; a funnel whose definition changed is
-- rebuilt from all events.
{{ config(
    materialized='incremental',
    unique_key=['funnel_name', 'step_index', 'message_id'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    pre_hook=["{{ delete_changed_funnels() }}"],
    indexes=[{'columns': ['funnel_name', 'person_id', 'step_index', 'event_at']}],
) }}

{%- set since = high_water_mark('_built_at') %}
{%- set unchanged = unchanged_funnels() %}

with

events as (

    select
        message_id,
        person_id,
        event_at,
        event_type,
        event_name,
        page_path,
        properties,
        _built_at
    from {{ ref('fct_events') }}

),

matched as (

    {%- for funnel in funnels() %}
        {%- set funnel_index = loop.index %}
        {%- for step in funnel['steps'] %}
            select
                cast('{{ funnel["name"] | replace("'", "''") }}' as text) as funnel_name,
                cast('{{ funnel_hash(funnel) }}' as text) as definition_hash,
                {{ loop.index }} as step_index,
                message_id,
                person_id,
                event_at
            from events
            where
                ({{ funnel_step_condition(step) }})
            {%- if funnel['name'] in unchanged %}
                    and {{ changed_since(since) }}
                {%- endif %}
            {{ "union all" if not loop.last }}
        {%- endfor %}
        {{ "union all" if not loop.last }}
    {%- endfor %}
    {%- if not funnels() %}
        select
            cast(null as text) as funnel_name,
            cast(null as text) as definition_hash,
            0 as step_index,
            cast(null as text) as message_id,
            cast(null as text) as person_id,
            cast(null as timestamptz) as event_at
        where false
    {%- endif %}

)

select
    funnel_name,
    definition_hash,
    cast(step_index as integer) as step_index,
    message_id,
    person_id,
    event_at,
    {{ built_at() }} as _built_at
from matched
