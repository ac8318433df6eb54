-- Per UTC date: activity events, signups and purchase revenue. Incremental: the dates of new events are recounted
-- in full from their fct_events partitions and replace the old rows (an event re-stitched to another person changes
-- no count: changed_dates_list(new_events_only) leaves its date alone); a date a
-- GDPR erasure touched is deleted first (pre-hook), in case no event of it remains. On Spark the same by whole
-- date partitions of the lake: the days fct_events rebuilds (lake_days_to_build()) are recounted and only their
-- partitions overwritten.
{{ config(
    unique_key='event_date',
    lake_partition_by='event_date',
    lake_partition_overwrite=true,
    pre_hook=["{{ delete_erased_dates('event_date') }}"],
    post_hook=["{{ record_lake_days_built() }}", "{{ record_identity_built() }}"],
) }}

{%- set lake_days = lake_days_to_build() %}
{%- set on_lake = target.type == 'spark' %}
{%- set since = none if on_lake else high_water_mark('_built_at') %}

with

events as (

    select * from {{ ref('fct_events') }}
    {%- if is_incremental() and on_lake %}
        {{ lake_days_filter('event_date', lake_days) }}
    {%- elif is_incremental() %}
        where event_date in ({{ changed_dates_list(since, new_events_only=true) }})
    {%- endif %}

)

select
    event_date,
    cast(count(*) as bigint) as all_events,
    cast(count(*) filter (where is_activity) as bigint) as activity_events,
    cast(count(*) filter (where {{ is_metric_event('signup') }}) as bigint) as signups,
    cast(
        coalesce(sum(revenue) filter (where {{ is_metric_event('purchase') }}), 0)
        as numeric(20, 6)
    ) as revenue,
    {{ built_at() }} as _built_at
from events
group by event_date
