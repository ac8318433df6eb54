-- Monthly recurring revenue per person and month. A person's MRR on a date is the last value set on
-- or before it (identify traits.mrr, subscription_changed properties.mrr, subscription_canceled = 0);
-- their MRR for a month is the value at the end of its last day. One row per person-month from
-- their first month with MRR > 0 to the month of the last event, months without events included.
-- Incremental: a person's rows depend only on their own changes and the last month, so a run
-- recomputes the persons with changed events (pre-hook rebuild_changed_persons deletes their rows;
-- an erasure deletes the person's rows itself), and everyone when a new month began (every paying
-- person gets a row for it). The months a run deleted or wrote rows in are recorded (ops.written_days, post-hook
-- record_rewritten_months): revenue_monthly recomputes those. Indexed on month (each run asks for the last month,
-- and revenue_monthly reads the months it recomputes) and on _built_at (the months a run wrote).
-- On Spark, merge-on-read (macros/lake_merge.sql): the persons whose events changed are recomputed into the delta;
-- in a new month everyone is (mrr_new_month(): every paying person's new row), and the run then compacts. The months
-- of the recomputed persons' rows that changed are logged (ops.lake_merge_touched): revenue_monthly rewrites those.
-- depends_on: {{ ref('int_identity_map') }}, {{ ref('fct_events') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    lake_merge_key='person_id',
    lake_merge_touched='month',
    pre_hook=["{{ rebuild_changed_persons(keep_previous=true) }}", "{{ delete_all_in_a_new_month() }}"],
    post_hook=["{{ record_rewritten_months() }}", "{{ record_identity_built() }}"],
    indexes=[{'columns': ['person_id']}, {'columns': ['month']}, {'columns': ['_built_at']}],
) }}

{%- set everyone = mrr_new_month() %}

with

changes as (

    select
        person_id,
        message_id,
        changed_at,
        mrr,
        cast(date_trunc('month', {{ at_utc('changed_at') }}) as date) as month
    from {{ ref('int_mrr_changes') }}
    {%- if lake_merge_incremental() and not everyone %}
        -- on Spark, an hour's persons (merge-on-read: macros/lake_merge.sql); everyone in a new month
        where {{ lake_merge_filter('person_id') }}
    {%- endif %}
    {%- if is_incremental() and not everyone %}
        -- by the person_id index (`= any(array(...))`: with `in` the planner read the whole table)
        where person_id = any(array(
            select scope.person_id from {{ adapter.quote(this.identifier ~ '__scope') }} as scope
        ))
    {%- endif %}

),

month_end_values as (

    select
        person_id,
        month,
        {{ last_by('mrr', 'changed_at, message_id') }} as mrr
    from changes
    group by person_id, month

),

last_month as (

    select cast(date_trunc('month', cast(max(event_date) as timestamp)) as date) as last_month
    from {{ ref('int_event_days') }}

),

spine as (

    select
        firsts.person_id,
        cast(month as date) as month
    from (select
        person_id,
        min(month) as first_month
    from month_end_values
    group by person_id) as firsts
    cross join last_month
    cross join lateral {{ series('firsts.first_month', 'last_month.last_month', 'month', step="interval '1 month'") }}

),

grouped as (

    select
        spine.person_id,
        spine.month,
        month_end_values.mrr,
        count(month_end_values.mrr) over (partition by spine.person_id order by spine.month) as value_group
    from spine
    left join month_end_values
        on spine.person_id = month_end_values.person_id and spine.month = month_end_values.month

),

filled as (

    select
        person_id,
        month,
        coalesce(max(mrr) over (partition by person_id, value_group), 0) as mrr
    from grouped

),

with_history as (

    select
        *,
        coalesce(lag(mrr) over by_person, 0) as previous_mrr,
        coalesce(bool_or(mrr > 0) over (
            partition by person_id order by month rows between unbounded preceding and 1 preceding
        ), false) as paid_before,
        bool_or(mrr > 0) over (
            partition by person_id order by month rows between unbounded preceding and current row
        ) as paying_yet
    from filled
    window by_person as (partition by person_id order by month)

)

select
    person_id,
    month,
    cast(mrr as numeric(20, 6)) as mrr,
    cast(previous_mrr as numeric(20, 6)) as previous_mrr,
    cast(case
        when previous_mrr = 0 and mrr > 0 and not paid_before then 'new'
        when previous_mrr = 0 and mrr > 0 then 'reactivation'
        when previous_mrr > 0 and mrr = 0 then 'churn'
        when mrr > previous_mrr then 'expansion'
        when mrr < previous_mrr then 'contraction'
    end as {{ text_type() }}) as change_category,
    {{ built_at() }} as _built_at
from with_history
where paying_yet
