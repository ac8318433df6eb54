-- Revenue by month, from the first event's month to the last: MRR and its movements (the bridge
-- start + new + expansion + reactivation - contraction - churned = end holds every month), customers,
-- churn over the start of the month, net revenue retention, ARPU and LTV.
-- Incremental on PostgreSQL: a month's row depends only on that month's fct_mrr rows, so a run recomputes the
-- months fct_mrr deleted or wrote rows in since its last build (recorded in ops.written_days by fct_mrr's
-- post-hook), the months from a GDPR erasure's first date on (an erasure deletes a person's rows outside dbt, from
-- their first event's month on), and calendar months it has no row for yet; every month when the record cannot
-- tell (no record of its last build, or fct_mrr's record starts later). A month no longer in the calendar (an
-- erasure of the first month's events) goes. On Spark, partitioned by month: a run rewrites the months fct_mrr logged
-- as changed (its merge-on-read build compares the recomputed persons' rows before and after), and the calendar's new
-- or gone months.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='month',
    lake_partition_by='month',
    lake_partition_overwrite=true,
    pre_hook=["{{ delete_months_outside_calendar() }}"],
    post_hook=["{{ analyze_if_new() }}", "{{ record_lake_touched_read() }}"],
) }}

{#- the months recomputed, as date literals (none: every month). The last build's time is the one recorded in
    ops.model_builds (the table has no _built_at). On Spark, lake_touched_partitions() gives them. -#}
{%- set months_list = none %}
{%- set lake_months = lake_touched_partitions(ref('fct_mrr'), 'month', calendar=event_calendar('month', 'month')) %}
{%- if lake_months is not none %}
    {%- set months_list = sql_date_list(lake_months) if lake_months else 'null' %}
{%- endif %}
{%- set since = recorded_built_at(model_build_key()) if execute and is_incremental_in_place() else none %}
{%- set rewritten = written_days_since(ref('fct_mrr'), since) if is_incremental_in_place() else none %}
{%- if rewritten is not none %}
    {%- set found = run_query(
        "select month::text from (" ~ event_calendar('month', 'month') ~ ") as calendar"
        ~ " where not exists (select from " ~ this ~ " as stored where stored.month = calendar.month)"
        ~ " or calendar.month >= (select cast(date_trunc('month', cast(min(erased.event_date) as timestamp)) as date)"
        ~ " from (" ~ erased_events_sql(since) ~ ") as erased)"
    ).columns[0].values() | list %}
    {%- set months = (rewritten + found) | unique | sort %}
    {%- set months_list = sql_date_list(months) if months else 'null' %}
{%- endif %}

with

months as (

    select * from ({{ event_calendar('month', 'month') }}) as calendar
    {%- if months_list is not none %}
        where month in ({{ months_list }})
    {%- endif %}

),

person_months as (

    select * from {{ ref('fct_mrr') }}
    {%- if months_list is not none %}
        where month in ({{ months_list }})
    {%- endif %}

),

movements as (

    select
        month,
        sum(mrr) as mrr,
        sum(previous_mrr) as start_mrr,
        sum(mrr) filter (where change_category = 'new') as new_mrr,
        sum(mrr - previous_mrr) filter (where change_category = 'expansion') as expansion_mrr,
        sum(previous_mrr - mrr) filter (where change_category = 'contraction') as contraction_mrr,
        sum(previous_mrr) filter (where change_category = 'churn') as churned_mrr,
        sum(mrr) filter (where change_category = 'reactivation') as reactivation_mrr,
        count(*) filter (where mrr > 0) as customers,
        count(*) filter (where previous_mrr > 0) as start_customers,
        count(*) filter (where change_category = 'new') as new_customers,
        count(*) filter (where change_category = 'churn') as churned_customers
    from person_months
    group by month

),

filled as (

    select
        months.month,
        coalesce(movements.mrr, 0) as mrr,
        coalesce(movements.start_mrr, 0) as start_mrr,
        coalesce(movements.new_mrr, 0) as new_mrr,
        coalesce(movements.expansion_mrr, 0) as expansion_mrr,
        coalesce(movements.contraction_mrr, 0) as contraction_mrr,
        coalesce(movements.churned_mrr, 0) as churned_mrr,
        coalesce(movements.reactivation_mrr, 0) as reactivation_mrr,
        coalesce(movements.customers, 0) as customers,
        coalesce(movements.start_customers, 0) as start_customers,
        coalesce(movements.new_customers, 0) as new_customers,
        coalesce(movements.churned_customers, 0) as churned_customers
    from months
    left join movements
        on months.month = movements.month

),

rates as (

    select
        *,
        case when start_customers > 0 then cast(churned_customers as {{ numeric_type() }}) / start_customers end
            as logo_churn_rate,
        case when start_mrr > 0 then (churned_mrr + contraction_mrr) / start_mrr end as revenue_churn_rate,
        case
            when start_mrr > 0 then (start_mrr + expansion_mrr - contraction_mrr - churned_mrr) / start_mrr
        end as net_revenue_retention,
        case when customers > 0 then mrr / customers end as arpu
    from filled

)

select
    month,
    cast(mrr as numeric(20, 6)) as mrr,
    cast(mrr * 12 as numeric(20, 6)) as arr,
    cast(new_mrr as numeric(20, 6)) as new_mrr,
    cast(expansion_mrr as numeric(20, 6)) as expansion_mrr,
    cast(contraction_mrr as numeric(20, 6)) as contraction_mrr,
    cast(churned_mrr as numeric(20, 6)) as churned_mrr,
    cast(reactivation_mrr as numeric(20, 6)) as reactivation_mrr,
    cast(customers as bigint) as customers,
    cast(new_customers as bigint) as new_customers,
    cast(churned_customers as bigint) as churned_customers,
    cast(logo_churn_rate as numeric(20, 6)) as logo_churn_rate,
    cast(revenue_churn_rate as numeric(20, 6)) as revenue_churn_rate,
    cast(net_revenue_retention as numeric(20, 6)) as net_revenue_retention,
    cast(arpu as numeric(20, 6)) as arpu,
    cast(case when logo_churn_rate > 0 then arpu / logo_churn_rate end as numeric(20, 6)) as ltv
from rates
