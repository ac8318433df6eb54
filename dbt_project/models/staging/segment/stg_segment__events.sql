with

source as (

    select * from {{ source('raw', 'events') }}

),

renamed as (

    select
        message_id,
        type as event_type,
        case
            when type = 'track' then event
            when type in ('page', 'screen') then type
        end as event_name,
        name as page_name,
        user_id,
        anonymous_id,
        "timestamp" as event_at,
        cast(("timestamp" at time zone 'UTC') as date) as event_date,
        sent_at,
        received_at,
        properties,
        traits,
        context,
        properties ->> 'path' as page_path,
        context ->> 'ip' as ip,
        context ->> 'userAgent' as user_agent,
        _dlt_load_id as load_id
    from source

)

select * from renamed
