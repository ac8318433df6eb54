with

events as (

    select * from {{ ref('stg_segment__events') }}

),

identity_map as (

    select * from {{ ref('int_identity_map') }}

),

final as (

    select
        events.message_id,
        coalesce(events.user_id, identity_map.user_id, events.anonymous_id) as person_id,
        events.user_id,
        events.anonymous_id,
        events.event_type,
        events.event_name,
        events.event_at,
        events.event_date,
        events.event_type in ({{ "'" ~ var('activity_event_types') | join("', '") ~ "'" }}) as is_activity,
        events.page_path,
        events.properties,
        events.context,
        events.received_at,
        events.load_id
    from events
    left join identity_map
        on events.anonymous_id = identity_map.anonymous_id

)

select * from final
