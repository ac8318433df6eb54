-- Every event that sets a person's MRR: an identify carrying a numeric traits.mrr, a
-- subscription_changed event (new MRR in properties.mrr) or a subscription_canceled event (MRR 0).
-- Incremental on message_id from the changed events. Indexed for the hour's lookups: the upsert by message_id,
-- and daily_metrics' changes from a date on, each person's last change before it, and the first date an hour's changes
-- are on (_built_at).
{{ config(
    unique_key='message_id',
    indexes=[
        {'columns': ['message_id']}, {'columns': ['changed_date']}, {'columns': ['person_id', 'changed_at']},
        {'columns': ['_built_at']},
    ],
) }}

{%- set since = high_water_mark('_built_at') %}

with

events as (

    select * from {{ ref('fct_events') }}
    where {{ events_changed_since(since) }}

),

changes as (

    select
        message_id,
        person_id,
        event_at as changed_at,
        'identify' as source,
        cast({{ json_text('traits', 'mrr') }} as {{ numeric_type() }}) as mrr
    from events
    where event_type = 'identify' and {{ json_kind('traits', 'mrr') }} = 'number'

    union all

    select
        message_id,
        person_id,
        event_at as changed_at,
        event_name as source,
        case
            when event_name = {{ metric_event('subscription_canceled') }} then 0
            else cast({{ json_text('properties', 'mrr') }} as {{ numeric_type() }})
        end as mrr
    from events
    where
        event_type = 'track'
        and (
            event_name = {{ metric_event('subscription_canceled') }}
            or (
                event_name = {{ metric_event('subscription_changed') }}
                and {{ json_kind('properties', 'mrr') }} = 'number'
            )
        )

)

select
    message_id,
    person_id,
    changed_at,
    cast({{ at_utc('changed_at') }} as date) as changed_date,
    cast(source as {{ text_type() }}) as source,
    cast(mrr as numeric(20, 6)) as mrr,
    {{ built_at() }} as _built_at
from changes
