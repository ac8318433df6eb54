with

source as (

    select * from {{ source('raw', 'events') }}

),

renamed as (

    select
        cast(message_id as {{ text_type() }}) as message_id,
        cast(type as {{ text_type() }}) as event_type,
        cast(name as {{ text_type() }}) as page_name,
        cast(user_id as {{ text_type() }}) as user_id,
        cast(anonymous_id as {{ text_type() }}) as anonymous_id,
        {{ adapter.quote('timestamp') }} as event_at,
        sent_at,
        received_at,
        properties,
        traits,
        context,
        cast(_dlt_load_id as {{ text_type() }}) as load_id,
        {{ raw_event_date() }} as event_date,
        cast(case
            when type = 'track' then event
            when type in ('page', 'screen') then type
        end as {{ text_type() }}) as event_name,
        {{ json_text('properties', 'path') }} as page_path,
        nullif(
            coalesce({{ json_text('properties', 'referrer') }}, {{ json_text('context', 'page', 'referrer') }}), ''
        ) as referrer,
        {{ json_text('context', 'campaign', 'source') }} as utm_source,
        {{ json_text('context', 'campaign', 'medium') }} as utm_medium,
        {{ json_text('context', 'campaign', 'name') }} as utm_campaign,
        case
            when {{ json_kind('properties', 'revenue') }} = 'number'
                then cast({{ json_text('properties', 'revenue') }} as {{ numeric_type() }})
        end as revenue,
        {{ json_text('context', 'ip') }} as ip,
        {{ json_text('context', 'userAgent') }} as user_agent
    from source

)

select * from renamed
