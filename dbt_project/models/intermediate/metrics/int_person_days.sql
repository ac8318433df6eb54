-- One row per (UTC date, person) with at least one activity event: the base of DAU/WAU/MAU and of
-- cohort retention. Incremental: the (date, person) pairs of changed or erased events are recomputed,
-- for the person they count under now and the one they counted under before (pre-hook
-- rebuild_changed_person_days); a pair's row depends on that date's events of that person only. What that
-- changed in WAU and MAU coverage is recorded in ops.activity_coverage_changes (post-hook,
-- macros/coverage_changes.sql) for int_active_coverage. Indexed on (person_id, activity_date): the hour's pairs are
-- found exactly, whatever the length of a person's history. A full build writes the rows in date order. On Spark,
-- by whole date partitions of the lake: the days fct_events rebuilds are recounted and only their partitions
-- overwritten (a pair's row depends on that date's events only).
-- depends_on: {{ ref('int_identity_map') }}
{{ config(
    incremental_strategy='append',
    lake_partition_by='activity_date',
    lake_partition_overwrite=true,
    pre_hook=["{{ rebuild_changed_person_days(keep_previous=true) }}"],
    post_hook=["{{ record_coverage_changes() }}", "{{ record_lake_days_built() }}", "{{ record_identity_built() }}"],
    indexes=[{'columns': ['activity_date']}, {'columns': ['person_id', 'activity_date']}],
) }}

{%- set lake_days = lake_days_to_build() %}
{%- set on_lake = target.type == 'spark' %}
{%- set since = none if on_lake else high_water_mark('_built_at') %}

select
    events.event_date as activity_date,
    events.person_id,
    cast(count(*) as bigint) as activity_events,
    {{ built_at() }} as _built_at
from {{ ref('fct_events') }} as events
{%- if is_incremental() and not on_lake %}
    inner join {{ adapter.quote(this.identifier ~ '__scope') }} as scope
        on
            events.person_id = scope.person_id
            and events.event_date = scope.activity_date
{%- endif %}
where
    events.is_activity
{%- if is_incremental() and on_lake %}
        and {{ lake_days_condition('events.event_date', lake_days) }}
    {%- elif is_incremental() %}
        and events.event_date in ({{ changed_dates_list(since) }})
    {%- endif %}
group by events.event_date, events.person_id
{{ order_on_full_build('events.event_date') }}
