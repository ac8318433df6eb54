-- One row per person (stitched identity): when they were first and last seen, their first and last
-- activity, their signup (first user_signed_up), and their latest traits from identify calls.
-- Incremental: the rows of persons with changed events are deleted (pre-hook) and recomputed from
-- their whole history (index on fct_events (person_id, event_at)): their events in the warm tier plus
-- the aggregates of their archived days (ops.person_archive_history), so archiving changes nobody. The
-- aggregates are macros/person_aggregates.sql, which the archive uses too (ops.person_aggregates, post-hook).
-- depends_on: {{ ref('int_identity_map') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=["{{ rebuild_changed_persons() }}"],
    post_hook=["{{ create_person_aggregates_function() }}"],
    indexes=[{'columns': ['person_id'], 'unique': true}],
) }}

with

events as (

    {%- set columns = [
        'person_id', 'user_id', 'message_id', 'event_type', 'event_name', 'event_at', 'event_date', 'is_activity',
        'revenue', 'traits',
    ] %}
    {%- if is_incremental() %}
        -- per changed person, their events through the (person_id, event_at) index of each partition
        select events.*
        from {{ adapter.quote(this.identifier ~ '__scope') }} as scope
        cross join lateral (
            select {{ 'person_events.' ~ columns | join(', person_events.') }}
            from {{ ref('fct_events') }} as person_events
            where person_events.person_id = scope.person_id
            offset 0  -- keeps the lookup per person (a join would scan every partition)
        ) as events
    {%- else %}
        select {{ 'events.' ~ columns | join(', events.') }}
        from {{ ref('fct_events') }} as events
    {%- endif %}

),

archived as (

    select * from {{ source('ops', 'person_archive_history') }}
    {%- if is_incremental() %}
        where person_id in (
            select scope.person_id from {{ adapter.quote(this.identifier ~ '__scope') }} as scope
        )
    {%- endif %}

),

warm_people as (

    {{ person_aggregates('events') }}

),

-- archived and warm days never overlap, so counts and sums add up
people as (

    select
        person_id,
        max(user_id) as user_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        min(first_activity_at) as first_activity_at,
        max(last_activity_at) as last_activity_at,
        min(signed_up_at) as signed_up_at,
        sum(activity_events) as activity_events,
        sum(active_days) as active_days,
        sum(total_revenue) as total_revenue
    from (
        select {{ person_aggregate_names() }} from warm_people
        union all
        select {{ person_aggregate_names() }} from archived
    ) as both_tiers
    group by person_id

),

trait_values as (

    {{ identify_trait_values('events') }}
    union all
    -- the latest traits of the archived days count as identified when those days last were
    select
        archived.person_id,
        trait.key,
        trait.value,
        archived.last_identified_at as event_at,
        '' as message_id
    from archived
    cross join lateral {{ json_each('archived.traits', 'trait') }}
    where {{ json_kind('archived.traits') }} = 'object'

),

traits as (

    {{ latest_traits('trait_values') }}

)

select
    people.person_id,
    people.user_id,
    people.user_id is not null as is_identified,
    people.first_seen_at,
    people.last_seen_at,
    people.first_activity_at,
    people.last_activity_at,
    people.signed_up_at,
    cast({{ at_utc('people.signed_up_at') }} as date) as signup_date,
    traits.last_identified_at,
    {{ json_text('traits.traits', 'email') }} as email,
    {{ json_text('traits.traits', 'plan') }} as plan,
    case
        when {{ json_kind('traits.traits', 'mrr') }} = 'number'
            then cast({{ json_text('traits.traits', 'mrr') }} as {{ numeric_type() }})
    end as mrr,
    {{ json_text('traits.traits', 'country') }} as country,
    coalesce(traits.traits, {{ empty_json_object() }}) as traits,
    cast(people.activity_events as bigint) as activity_events,
    cast(people.active_days as integer) as active_days,
    cast(people.total_revenue as numeric(20, 6)) as total_revenue,
    {{ built_at() }} as _built_at
from people
left join traits
    on people.person_id = traits.person_id
