{#- Every day (grain 'day') or first day of a month (grain 'month') from the first event's to the last event's
    (int_event_days), as a select of one date column `alias`: the rows of the date-based marts, zeros included. -#}
{% macro event_calendar(grain, alias) -%}
  {%- set bound = "(select date_trunc('" ~ grain ~ "', cast({}(event_date) as timestamp)) from " ~ ref('int_event_days') ~ ")" -%}
  select cast({{ alias }} as date) as {{ alias }}
  from {{ series(bound.replace('{}', 'min'), bound.replace('{}', 'max'), alias, step="interval '1 " ~ grain ~ "'") }}
{%- endmacro %}


{#- Pre-hook of revenue_monthly on PostgreSQL: its months outside the calendar of event months go (an erasure can move
    the first month later). On Spark, lake_touched_partitions() rewrites those months' partitions with nothing. -#}
{% macro delete_months_outside_calendar() -%}
  {%- if is_incremental_in_place() -%}
    delete from {{ this }}
    where month not in (select calendar.month from ({{ event_calendar('month', 'month') }}) as calendar)
  {%- endif -%}
{%- endmacro %}
