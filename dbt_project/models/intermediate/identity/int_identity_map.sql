-- An anonymous id belongs to the user id it was first seen with (an identify, an alias, or any
-- event carrying both ids; ties broken by message_id). Earlier anonymous events then count for that
-- person: stitching is retroactive (fct_events re-reads the events of every re-mapped anonymous id).
-- Incremental: only the raw rows of loads it has not read yet are read (ops.model_loads); a row is written only when an
-- anonymous id is new or its mapping moved to an earlier pair (previous_user_id keeps the old one). Indexed on
-- anonymous_id: the run's lookups of the stored pairs, fct_events' lookups of its events' persons, and every model's
-- "which persons changed" join the changed events' anonymous ids to it (macros/incremental_scope.sql); each asks
-- with `= any(array(...))`, since with a join alone the planner read the whole map, several times an hour. On
-- _built_at: the pairs written since fct_events' last build (the visitors it re-stitches).
-- On Spark, merge-on-read keyed by anonymous_id (macros/lake_merge.sql, kind `identity`): an incremental run
-- recomputes the anonymous ids with a pair event on the lake days written since its last build, and those whose
-- stored pair is on such a day, from those days' pairs and the stored pair (the earliest of the other days, which did
-- not change); an id whose stored pair event is gone from its day is recomputed from its whole history. Each pair
-- that moved to another user id, or appeared, is logged in ops.identity_changes for the models that read the map.
{{ config(
    unique_key='anonymous_id',
    lake_merge_key='anonymous_id',
    lake_merge_kind='identity',
    pre_hook=["{{ collect_unread_loads() }}"],
    post_hook=["{{ record_read_loads() }}", "{{ record_lake_days_built() }}"],
    indexes=[{'columns': ['anonymous_id'], 'unique': true}, {'columns': ['_built_at']}],
) }}

{%- set merging = lake_merge_incremental() %}
{#- on Spark: pins the lake's manifest (recorded as built by the post-hook); when merging, the days written since -#}
{%- set lake_days = lake_days_to_build(remapped=false) %}
{%- set stale_days = ((lake_days or []) + lake_partitions_removed()) | unique | list if merging else [] %}
{%- set lost = identity_pairs_lost(lake_days, stale_days) if merging else false %}

with

new_pairs as (

    select
        anonymous_id,
        user_id,
        event_at as stitched_at,
        message_id,
        load_id
    {#- an incremental run reads the rows of the loads it has not read (staged by collect_unread_loads()) #}
    from {% if is_incremental() %}{{ unread_events() }}{% else %}{{ ref('stg_segment__events') }}{% endif %}
    where
        anonymous_id is not null
        and user_id is not null
    {%- if merging %}
            -- on Spark, the pairs of the lake days written since the last build
            and {{ lake_days_condition('event_date', lake_days) }}
        {%- endif %}

),

{%- if merging %}

-- the stored rows of the anonymous ids recomputed (lake_merge_scope)
stored as (

    select * from {{ this }}
    where {{ lake_merge_filter('anonymous_id') }}

),

{%- endif %}

candidates as (

    select *{{ ', false as is_stored' if is_incremental() }} from new_pairs
    {%- if is_incremental() %}
        union all
        -- the stored pairs of the same anonymous ids, by the unique index (`= any(array(...))`: a join or `in`
        -- would let the planner read the whole table)
        select
            anonymous_id,
            user_id,
            stitched_at,
            message_id,
            load_id,
            true as is_stored
        from {{ this }}
        where anonymous_id = any(array(select new_pairs.anonymous_id from new_pairs))
    {%- elif merging %}
        union all
        -- a stored pair on a day not rewritten: the earliest of the days that did not change
        select anonymous_id, user_id, stitched_at, message_id, load_id
        from stored
        where not {{ lake_days_condition('cast(stitched_at as date)', stale_days) }}
        {%- if lost %}
            union all
            -- ids whose stored pair event is gone from its rewritten day: their pairs of every other day
            select anonymous_id, user_id, event_at, message_id, load_id
            from {{ ref('stg_segment__events') }}
            where
                user_id is not null
                and anonymous_id in (select lost.anonymous_id from {{ this.identifier }}__lost as lost)
                and not {{ lake_days_condition('event_date', lake_days) }}
        {%- endif %}
    {%- endif %}

),

ranked as (

    select
        *,
        {%- if is_incremental() %}
            max(case when is_stored then user_id end) over (partition by anonymous_id) as stored_user_id,
            max(case when is_stored then message_id end) over (partition by anonymous_id) as stored_message_id,
        {%- endif %}
        row_number() over (
            partition by anonymous_id
            order by stitched_at, message_id
        ) as pair_rank
    from candidates

)

-- each anonymous id's earliest pair. On Spark's incremental run, every recomputed id's row: as stored when its pair is
-- the same (its previous_user_id and _built_at kept), else the new pair with the stored user id as previous_user_id
select
    ranked.anonymous_id,
    ranked.user_id,
    ranked.stitched_at,
    ranked.message_id,
    ranked.load_id,
    {%- if merging %}
        case
            when stored.message_id = ranked.message_id then stored.previous_user_id else stored.user_id
        end as previous_user_id,
        case when stored.message_id = ranked.message_id then stored._built_at else {{ built_at() }} end as _built_at
    {%- elif is_incremental() %}
        cast(ranked.stored_user_id as {{ text_type() }}) as previous_user_id,
        {{ built_at() }} as _built_at
    {%- else %}
        cast(null as {{ text_type() }}) as previous_user_id,
        {{ built_at() }} as _built_at
    {%- endif %}
from ranked
{%- if merging %}
    left join stored on ranked.anonymous_id = stored.anonymous_id
{%- endif %}
where
    ranked.pair_rank = 1
{%- if is_incremental() %}
        -- a new anonymous id, or its mapping moved to an earlier pair
        and (ranked.stored_message_id is null or ranked.stored_message_id <> ranked.message_id)
    {%- endif %}
