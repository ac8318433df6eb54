-- One row per (UTC date, person) with at least one activity event: the base of DAU/WAU/MAU and of
-- cohort retention. Incremental: the dates of changed events are recomputed in full.
{{ config(
    unique_key='activity_date',
    indexes=[{'columns': ['activity_date']}, {'columns': ['person_id']}],
) }}

{%- set since = high_water_mark('_built_at') %}

select
    event_date as activity_date,
    person_id,
    cast(count(*) as bigint) as activity_events,
    {{ built_at() }} as _built_at
from {{ ref('fct_events') }}
where
    is_activity
{%- if is_incremental() %}
        and event_date in ({{ changed_dates_list(since) }})
    {%- endif %}
group by event_date, person_id
