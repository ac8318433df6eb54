{#-
  Cohort retention, maintained by differences.

  A retention cell (grain, cohort, period n) holds three counts over the cohort's members: the members
  (cohort_size), those active in period n (retained_persons) and those active in n or later, i.e. whose last
  active period is n or later (unbounded_retained_persons). Each is a sum over persons, so when a build of
  int_cohort_persons recomputes some persons, every cell changes by what those persons count in it now minus what
  they counted before, and nothing else changes. record_cohort_changes() (a post-hook of int_cohort_persons)
  writes those differences per cell to ops.cohort_changes: `members` at period 0, `active` at each period, and
  `last_active` at the period that is a person's last (unbounded counts at n are the sum of last_active at n and
  after). fct_cohort_retention adds them to its stored cells: an hour's work follows the persons it touched, not
  the size of the cohorts. What the differences cannot see is recounted whole (fct_cohort_retention's pre-hook): a
  cohort whose stored size differs from its members (a GDPR erasure deletes rows outside dbt; a cohort that
  gained its first member or lost its last), every cohort when a new week or month begins (a new period), and
  everything after a full build of int_cohort_persons (it records a marker, grain '*').
-#}

{#- Post-hook of int_cohort_persons: the differences its run made, per cell (see above). The pre-hook kept the old rows
    of the persons it recomputed in <model>__previous; their new rows are in the table now. -#}
{% macro record_cohort_changes() %}{{ return(adapter.dispatch('record_cohort_changes')()) }}{% endmacro %}

{% macro default__record_cohort_changes() -%}
  {%- if is_incremental() -%}
    insert into ops.cohort_changes (cohort_grain, cohort_start, period_number, members, active, last_active, changed_at)
    with rows_now_and_before as (
        select target.cohort_grain, target.person_id, target.cohort_start, target.period_number, target.is_active,
               1 as sign
        from {{ this }} as target
        inner join {{ adapter.quote(this.identifier ~ '__scope') }} as scope on target.person_id = scope.person_id
        union all
        select cohort_grain, person_id, cohort_start, period_number, is_active, -1 as sign
        from {{ adapter.quote(this.identifier ~ '__previous') }}
    ),
    cells as (
        select
            cohort_grain, cohort_start, period_number,
            case when period_number = 0 then sign else 0 end as members,
            case when is_active then sign else 0 end as active,
            0 as last_active
        from rows_now_and_before
        union all
        select cohort_grain, cohort_start, max(period_number) filter (where is_active), 0, 0, sign
        from rows_now_and_before
        group by cohort_grain, person_id, cohort_start, sign
        having bool_or(is_active)
    )
    select cohort_grain, cohort_start, period_number, sum(members), sum(active), sum(last_active), {{ built_at() }}
    from cells
    group by cohort_grain, cohort_start, period_number
    having sum(members) <> 0 or sum(active) <> 0 or sum(last_active) <> 0
  {%- else -%}
    insert into ops.cohort_changes (cohort_grain, cohort_start, period_number, members, active, last_active, changed_at)
    values ('*', null, null, 0, 0, 0, {{ built_at() }})
  {%- endif -%}
{%- endmacro %}

{% macro spark__record_cohort_changes() %}{% endmacro %}


{#- The differences recorded after `since` (none: every one), summed per cell, as a select. -#}
{% macro cohort_changes_since(since) -%}
    select cohort_grain, cohort_start, period_number, sum(members) as members, sum(active) as active,
           sum(last_active) as last_active
    from ops.cohort_changes
    where cohort_grain <> '*' {%- if since %} and changed_at > cast('{{ since }}' as timestamptz){% endif %}
    group by cohort_grain, cohort_start, period_number
{%- endmacro %}


{#- True when int_cohort_persons was built in full after `since` (its marker): the differences cannot tell. -#}
{% macro cohort_persons_rebuilt_since(since) -%}
  {%- if not execute or since is none -%}{{ return(true) }}{%- endif -%}
  {%- set result = run_query(
      "select exists (select from ops.cohort_changes where cohort_grain = '*' and changed_at > cast('"
      ~ since ~ "' as timestamptz))") -%}
  {{ return(result.columns[0].values()[0]) }}
{%- endmacro %}


{#- Post-hook of fct_cohort_retention: the differences it has added (recorded before its newest build) go. -#}
{% macro prune_cohort_changes() %}{{ return(adapter.dispatch('prune_cohort_changes')()) }}{% endmacro %}

{% macro default__prune_cohort_changes() -%}
    delete from ops.cohort_changes where changed_at <= (select max(_built_at) from {{ this }})
{%- endmacro %}

{% macro spark__prune_cohort_changes() %}{% endmacro %}
