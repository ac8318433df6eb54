-- An anonymous id belongs to the user id it was first seen with (an identify, an alias, or any
-- event carrying both ids). Earlier anonymous events then count for that person: stitching is
-- retroactive.
with

events as (

    select * from {{ ref('stg_segment__events') }}

),

pairs as (

    select
        anonymous_id,
        user_id,
        row_number() over (
            partition by anonymous_id
            order by event_at, message_id
        ) as pair_rank
    from events
    where anonymous_id is not null and user_id is not null

)

select
    anonymous_id,
    user_id
from pairs
where pair_rank = 1
