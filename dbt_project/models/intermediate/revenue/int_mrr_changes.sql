-- Every event that sets a person's MRR: an identify carrying a numeric traits.mrr, a
-- subscription_changed event (new MRR in properties.mrr) or a subscription_canceled event (MRR 0).
-- Incremental on message_id from the changed events.
{{ config(
    materialized='incremental',
    unique_key='message_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
) }}

{%- set since = high_water_mark('_built_at') %}

with

events as (

    select * from {{ ref('fct_events') }}
    where {{ changed_since(since) }}

),

changes as (

    select
        message_id,
        person_id,
        event_at as changed_at,
        'identify' as source,
        cast(traits ->> 'mrr' as numeric) as mrr
    from events
    where event_type = 'identify' and jsonb_typeof(traits -> 'mrr') = 'number'

    union all

    select
        message_id,
        person_id,
        event_at as changed_at,
        event_name as source,
        case
            when event_name = 'subscription_canceled' then 0
            else cast(properties ->> 'mrr' as numeric)
        end as mrr
    from events
    where
        event_type = 'track'
        and (
            event_name = 'subscription_canceled'
            or (event_name = 'subscription_changed' and jsonb_typeof(properties -> 'mrr') = 'number')
        )

)

select
    message_id,
    person_id,
    changed_at,
    cast(changed_at at time zone 'UTC' as date) as changed_date,
    cast(source as text) as source,
    cast(mrr as numeric(20, 6)) as mrr,
    {{ built_at() }} as _built_at
from changes
