-- The MRR bridge: for every month, start MRR (the previous month's end MRR) + new + expansion +
-- reactivation - contraction - churned = end MRR. Returns the months where it does not hold.
with

months as (

    select
        *,
        coalesce(lag(mrr) over (order by month), 0) as start_mrr
    from {{ ref('revenue_monthly') }}

)

select
    month,
    start_mrr,
    new_mrr,
    expansion_mrr,
    reactivation_mrr,
    contraction_mrr,
    churned_mrr,
    mrr
from months
where start_mrr + new_mrr + expansion_mrr + reactivation_mrr - contraction_mrr - churned_mrr <> mrr
