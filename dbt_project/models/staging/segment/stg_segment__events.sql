with

source as (

    select * from {{ source('raw', 'events') }}

),

renamed as (

    select
        cast(message_id as text) as message_id,
        cast(type as text) as event_type,
        cast(name as text) as page_name,
        cast(user_id as text) as user_id,
        cast(anonymous_id as text) as anonymous_id,
        "timestamp" as event_at,
        sent_at,
        received_at,
        properties,
        traits,
        context,
        cast(_dlt_load_id as text) as load_id,
        cast(("timestamp" at time zone 'UTC') as date) as event_date,
        cast(case
            when type = 'track' then event
            when type in ('page', 'screen') then type
        end as text) as event_name,
        properties ->> 'path' as page_path,
        nullif(coalesce(properties ->> 'referrer', context -> 'page' ->> 'referrer'), '') as referrer,
        context -> 'campaign' ->> 'source' as utm_source,
        context -> 'campaign' ->> 'medium' as utm_medium,
        context -> 'campaign' ->> 'name' as utm_campaign,
        case
            when jsonb_typeof(properties -> 'revenue') = 'number'
                then cast(properties ->> 'revenue' as numeric)
        end as revenue,
        context ->> 'ip' as ip,
        context ->> 'userAgent' as user_agent
    from source

)

select * from renamed
