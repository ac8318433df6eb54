-- One row per (date, metric) for every UTC date from the first event to the last, zeros
-- included, so charts and BI tools never see gaps.
with

events as (

    select * from {{ ref('fct_events') }}

),

calendar as (

    select cast(calendar_day as date) as date
    from generate_series(
        (select min(event_date) from events),
        (select max(event_date) from events),
        interval '1 day'
    ) as calendar_day

),

per_day as (

    select
        event_date as date,
        count(distinct person_id) filter (where is_activity) as dau,
        count(*) filter (where is_activity) as events,
        count(*) filter (where event_type = 'track' and event_name = 'user_signed_up') as signups
    from events
    group by event_date

),

filled as (

    select
        calendar.date,
        coalesce(per_day.dau, 0) as dau,
        coalesce(per_day.events, 0) as events,
        coalesce(per_day.signups, 0) as signups
    from calendar
    left join per_day
        on calendar.date = per_day.date

),

unpivoted as (

    select
        date,
        'dau' as metric_name,
        dau as value
    from filled
    union all
    select
        date,
        'events' as metric_name,
        events as value
    from filled
    union all
    select
        date,
        'signups' as metric_name,
        signups as value
    from filled

)

select
    cast(date as date) as date,
    cast(metric_name as text) as metric_name,
    cast(value as numeric(20, 6)) as value
from unpivoted
