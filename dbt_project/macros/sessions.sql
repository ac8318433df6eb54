{#- The two CTEs that cut a person's activity events into sessions, for fct_sessions and for lake_session_days()'s
    check of long chains: `gaps` flags an event that starts a session (the person's first, or more than var
    session_timeout_minutes after their previous one), `numbered` numbers each person's sessions in time order
    (session_number). `source` is the CTE of events (person_id, message_id, event_at, ...); the CTEs are written
    without a leading `with` or a trailing comma. -#}
{% macro session_numbering_ctes(source) -%}
gaps as (

    select
        *,
        case
            when
                lag(event_at) over by_person is null
                or event_at - lag(event_at) over by_person > {{ session_timeout() }}
                then 1
            else 0
        end as is_session_start
    from {{ source }}
    window by_person as (partition by person_id order by event_at, message_id)

),

numbered as (

    select
        *,
        sum(is_session_start) over (
            partition by person_id
            order by event_at, message_id
            rows between unbounded preceding and current row
        ) as session_number
    from gaps

)
{%- endmacro %}

{#- var session_timeout_minutes as an interval literal -#}
{% macro session_timeout() -%}
    interval '{{ var("session_timeout_minutes") }} minutes'
{%- endmacro %}
