-- Every event that sets a person's MRR: an identify carrying a numeric traits.mrr, a
-- subscription_changed event (new MRR in properties.mrr) or a subscription_canceled event (MRR 0).
-- Incremental on message_id from the changed events. Indexed for the hour's lookups: the upsert by message_id,
-- and daily_metrics' changes from a date on, each person's last change before it, and the first date an hour's changes
-- are on (_built_at). On Spark, partitioned by changed_date (the event's UTC day, as fct_events' event_date): an
-- incremental run rewrites the days fct_events rewrites (macros/spark.sql), and only those partitions.
{{ config(
    unique_key='message_id',
    lake_partition_by='changed_date',
    lake_partition_overwrite=true,
    post_hook=["{{ record_lake_days_built() }}", "{{ record_identity_built() }}"],
    indexes=[
        {'columns': ['message_id']}, {'columns': ['changed_date']}, {'columns': ['person_id', 'changed_at']},
        {'columns': ['_built_at']},
    ],
) }}

{%- set lake_days = lake_days_to_build() %}
{%- set on_lake = target.type == 'spark' %}
{%- set since = none if on_lake else high_water_mark('_built_at') %}

with

events as (

    select * from {{ ref('fct_events') }}
    {%- if is_incremental() and on_lake %}
        {{ lake_days_filter('event_date', lake_days) }}
    {%- else %}
        where {{ events_changed_since(since) }}
    {%- endif %}

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
