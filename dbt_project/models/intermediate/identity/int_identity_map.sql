-- An anonymous id belongs to the user id it was first seen with (an identify, an alias, or any
-- event carrying both ids; ties broken by message_id). Earlier anonymous events then count for that
-- person: stitching is retroactive (fct_events re-reads the events of every re-mapped anonymous id).
-- Incremental: only the raw rows of loads it has not read yet are read (ops.model_loads); a row is written only when an
-- anonymous id is new or its mapping moved to an earlier pair (previous_user_id keeps the old one). Indexed on
-- anonymous_id: the run's lookups of the stored pairs, fct_events' lookups of its events' persons, and every model's
-- "which persons changed" join the changed events' anonymous ids to it (macros/incremental_scope.sql); each asks
-- with `= any(array(...))`, since with a join alone the planner read the whole map, several times an hour. On
-- _built_at: the pairs written since fct_events' last build (the visitors it re-stitches).
{{ config(
    unique_key='anonymous_id',
    pre_hook=["{{ collect_unread_loads() }}"],
    post_hook=["{{ record_read_loads() }}"],
    indexes=[{'columns': ['anonymous_id'], 'unique': true}, {'columns': ['_built_at']}],
) }}

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

),

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

select
    anonymous_id,
    user_id,
    stitched_at,
    message_id,
    load_id,
    {%- if is_incremental() %}
        cast(stored_user_id as {{ text_type() }}) as previous_user_id,
    {%- else %}
        cast(null as {{ text_type() }}) as previous_user_id,
    {%- endif %}
    {{ built_at() }} as _built_at
from ranked
where
    pair_rank = 1
{%- if is_incremental() %}
        -- a new anonymous id, or its mapping moved to an earlier pair
        and (stored_message_id is null or stored_message_id <> message_id)
    {%- endif %}
