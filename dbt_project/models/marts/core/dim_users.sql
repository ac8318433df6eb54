-- One row per person (stitched identity): when they were first and last seen, their first and last
-- activity, their signup (first user_signed_up), and their latest traits from identify calls.
-- Incremental (pre-hook rebuild_or_merge_changed_persons): a person who only gained events (new ones, or
-- events stitched to them) gets the aggregates of those events added to their row; a person who lost events,
-- or got an identify older than their traits, is recomputed from their whole history (index on fct_events
-- (person_id, event_at)): their events in the warm tier plus the aggregates of their archived days
-- (ops.person_archive_history), so archiving changes nobody. The aggregates are macros/person_aggregates.sql,
-- which the archive uses too (ops.person_aggregates, post-hook). Indexed on first_activity_at for daily_metrics' new
-- people of the dates an hour recomputes; a full build writes the persons in that order.
-- On Spark, merge-on-read (macros/lake_merge.sql): an incremental run recomputes the persons whose events changed,
-- from their whole history, into the table's delta; the base is rewritten only by a compaction.
-- depends_on: {{ ref('int_identity_map') }}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='person_id',
    lake_merge_key='person_id',
    pre_hook=["{{ rebuild_or_merge_changed_persons() }}"],
    post_hook=["{{ create_person_aggregates_function() }}", "{{ record_identity_built() }}"],
    indexes=[{'columns': ['person_id'], 'unique': true}, {'columns': ['first_activity_at']}],
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
        {%- if lake_merge_incremental() %}
            -- on Spark, an hour's persons (merge-on-read: macros/lake_merge.sql)
            where {{ lake_merge_filter('events.person_id') }}
        {%- endif %}
    {%- endif %}

),

archived as (

    select * from {{ source('ops', 'person_archive_history') }}
    {%- if lake_merge_incremental() %}
        where {{ lake_merge_filter('person_id') }}
    {%- endif %}
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

),

{%- set person_columns = [
    'person_id', 'user_id', 'first_seen_at', 'last_seen_at', 'first_activity_at', 'last_activity_at',
    'signed_up_at', 'activity_events', 'active_days', 'total_revenue',
] %}

recomputed as (

    select
        {{ 'people.' ~ person_columns | join(', people.') }},
        traits.traits,
        traits.last_identified_at,
        {%- if is_incremental() %}
            case
                when
                    previous.person_id is not null
                    and coalesce(traits.traits, {{ empty_json_object() }}) = previous.traits
                    then previous._traits_changed_at
                else {{ built_at() }}
            end as traits_changed_at
        {%- else %}
            {{ built_at() }} as traits_changed_at
        {%- endif %}
    from people
    left join traits
        on people.person_id = traits.person_id
    {%- if is_incremental() %}
        left join {{ adapter.quote(this.identifier ~ '__previous') }} as previous
            on people.person_id = previous.person_id
    {%- endif %}

),

{%- if is_incremental() %}

-- persons who only gained events: their changed rows (the pre-hook's copy, analyzed), aggregated and added
new_events as (

    select changed.*
    from {{ adapter.quote(this.identifier ~ '__changed') }} as changed
    inner join {{ adapter.quote(this.identifier ~ '__merge') }} as merge
        on changed.person_id = merge.person_id

),

-- a day of new activity is a new active day unless the person had other activity that day: one index probe of
-- that day's partition per (person, day), as a lateral lookup (as an anti-join, the planner hashes every activity
-- row of the history once the new rows are counted right)
new_active_days as (

    select
        new_days.person_id,
        count(*) as active_days
    from (select distinct person_id, event_date from new_events where is_activity) as new_days
    left join lateral (
        select true as found
        from {{ ref('fct_events') }} as earlier
        where
            earlier.person_id = new_days.person_id
            and earlier.event_date = new_days.event_date
            and earlier.is_activity
            and not {{ changed_since(high_water_mark('_built_at'), 'earlier') }}
        limit 1
    ) as earlier on true
    where earlier.found is null
    group by new_days.person_id

),

new_people as (

    {{ person_aggregates('new_events') }}

),

new_trait_values as (

    {{ identify_trait_values('new_events') }}

),

new_traits as (

    {{ latest_traits('new_trait_values') }}

),

merged as (

    select
        new_people.person_id,
        greatest(old.user_id, new_people.user_id) as user_id,
        least(old.first_seen_at, new_people.first_seen_at) as first_seen_at,
        greatest(old.last_seen_at, new_people.last_seen_at) as last_seen_at,
        least(old.first_activity_at, new_people.first_activity_at) as first_activity_at,
        greatest(old.last_activity_at, new_people.last_activity_at) as last_activity_at,
        least(old.signed_up_at, new_people.signed_up_at) as signed_up_at,
        coalesce(old.activity_events, 0) + new_people.activity_events as activity_events,
        coalesce(old.active_days, 0) + coalesce(new_active_days.active_days, 0) as active_days,
        coalesce(old.total_revenue, 0) + new_people.total_revenue as total_revenue,
        case
            when new_traits.traits is null then old.traits
            when old.traits is null or old.traits = {{ empty_json_object() }} then new_traits.traits
            else old.traits || new_traits.traits
        end as traits,
        greatest(old.last_identified_at, new_traits.last_identified_at) as last_identified_at,
        case
            when old.person_id is not null and (new_traits.traits is null or old.traits || new_traits.traits = old.traits)
                then old._traits_changed_at
            else {{ built_at() }}
        end as traits_changed_at
    from new_people
    left join {{ this }} as old
        on new_people.person_id = old.person_id
    left join new_active_days
        on new_people.person_id = new_active_days.person_id
    left join new_traits
        on new_people.person_id = new_traits.person_id

),

{%- endif %}

persons as (

    select {{ person_columns | join(', ') }}, traits, last_identified_at, traits_changed_at from recomputed
    {%- if is_incremental() %}
        union all
        select {{ person_columns | join(', ') }}, traits, last_identified_at, traits_changed_at from merged
    {%- endif %}

)

select
    persons.person_id,
    persons.user_id,
    persons.user_id is not null as is_identified,
    persons.first_seen_at,
    persons.last_seen_at,
    persons.first_activity_at,
    persons.last_activity_at,
    persons.signed_up_at,
    cast({{ at_utc('persons.signed_up_at') }} as date) as signup_date,
    persons.last_identified_at,
    {{ json_text('persons.traits', 'email') }} as email,
    {{ json_text('persons.traits', 'plan') }} as plan,
    case
        when {{ json_kind('persons.traits', 'mrr') }} = 'number'
            then cast({{ json_text('persons.traits', 'mrr') }} as {{ numeric_type() }})
    end as mrr,
    {{ json_text('persons.traits', 'country') }} as country,
    coalesce(persons.traits, {{ empty_json_object() }}) as traits,
    cast(persons.activity_events as bigint) as activity_events,
    cast(persons.active_days as integer) as active_days,
    cast(persons.total_revenue as numeric(20, 6)) as total_revenue,
    persons.traits_changed_at as _traits_changed_at,
    {{ built_at() }} as _built_at
from persons
{{ order_on_full_build('persons.first_activity_at') }}
