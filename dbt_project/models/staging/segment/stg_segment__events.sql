with

source as (

    select * from {{ source('raw', 'events') }}

),

renamed as (

    select
        message_id,
        type as event_type,
        name as page_name,
        user_id,
        anonymous_id,
        "timestamp" as event_at,
        sent_at,
        received_at,
        properties,
        traits,
        context,
        _dlt_load_id as load_id,
        cast(("timestamp" at time zone 'UTC') as date) as event_date,
        case
            when type = 'track' then event
            when type in ('page', 'screen') then type
        end as event_name,
        properties ->> 'path' as page_path,
        context ->> 'ip' as ip,
        context ->> 'userAgent' as user_agent
    from source

)

select * from renamed
