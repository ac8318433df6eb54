-- An anonymous id belongs to the user id it was first seen with (an identify, an alias, or any
-- event carrying both ids; ties broken by message_id). Earlier anonymous events then count for that
-- person: stitching is retroactive (fct_events re-reads the events of every re-mapped anonymous id).
-- Incremental: only the raw rows of loads it has not read yet are read (ops.model_loads); a row is written only when an
-- anonymous id is new or its mapping moved to an earlier pair (previous_user_id keeps the old one). Indexed on
-- anonymous_id: the run's lookups of the stored pairs, and every model's "which persons changed" join the changed
-- events' anonymous ids to it (macros/incremental_scope.sql).
{{ config(
    unique_key='anonymous_id',
    pre_hook=["{{ collect_unread_loads() }}"],
    post_hook=["{{ record_read_loads() }}"],
    indexes=[{'columns': ['anonymous_id'], 'unique': true}],
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

    select * from new_pairs
    {%- if is_incremental() %}
        union all
        select
            anonymous_id,
            user_id,
            stitched_at,
            message_id,
            load_id
        from {{ this }}
        where anonymous_id in (select new_pairs.anonymous_id from new_pairs)
    {%- endif %}

),

ranked as (

    select
        *,
        row_number() over (
            partition by anonymous_id
            order by stitched_at, message_id
        ) as pair_rank
    from candidates

)

select
    ranked.anonymous_id,
    ranked.user_id,
    ranked.stitched_at,
    ranked.message_id,
    ranked.load_id,
    {%- if is_incremental() %}
        cast(existing.user_id as {{ text_type() }}) as previous_user_id,
    {%- else %}
        cast(null as {{ text_type() }}) as previous_user_id,
    {%- endif %}
    {{ built_at() }} as _built_at
from ranked
{%- if is_incremental() %}
    left join {{ this }} as existing
        on ranked.anonymous_id = existing.anonymous_id
{%- endif %}
where
    ranked.pair_rank = 1
{%- if is_incremental() %}
        and (existing.anonymous_id is null or existing.message_id <> ranked.message_id)
    {%- endif %}
