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
  cohort whose stored size differs from its members (a GDPR erasure deletes rows outside dbt: its members are
  counted only after one, ops.erased_events; a cohort that gained its first member or lost its last), every cohort
  when a new week or month begins (a new period), and everything after a full build of int_cohort_persons (it
  records a marker, grain '*').
-#}

{#- Post-hook of int_cohort_persons: the differences its run made, per cell (see above). The pre-hook kept the rows it
    deleted in <model>__previous (the periods it recomputed of each changed person and grain); the recomputed rows are
    in the table now, with this run's _built_at, beside the person's earlier periods, which it left alone. A person's
    rows before are those earlier periods and <model>__previous; now, every row: the earlier periods cancel out of
    `members` and `active`, and count in each person's last active period. -#}
{% macro record_cohort_changes() %}{{ return(adapter.dispatch('record_cohort_changes')()) }}{% endmacro %}

{% macro default__record_cohort_changes() -%}
  {%- if is_incremental() -%}
    insert into ops.cohort_changes (cohort_grain, cohort_start, period_number, members, active, last_active, changed_at)
    with scope_rows as (
        select target.cohort_grain, target.person_id, target.cohort_start, target.period_number, target.is_active,
               target._built_at = {{ built_at() }} as is_new
        from {{ this }} as target
        inner join {{ adapter.quote(this.identifier ~ '__scope') }} as scope
            on target.person_id = scope.person_id and target.cohort_grain = scope.cohort_grain
    ),
    rows_now_and_before as (
        select cohort_grain, person_id, cohort_start, period_number, is_active, 1 as sign
        from scope_rows
        union all
        select cohort_grain, person_id, cohort_start, period_number, is_active, -1 as sign
        from scope_rows
        where not is_new
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


{#- The cohort grains retention is kept at, one row each (column `grain`). -#}
{% macro cohort_grains() -%}
    select grain from (values ('week'), ('month')) as grains (grain)
{%- endmacro %}


{#- The first day of a person's `grain` cohort ('week' or 'month', a column or a literal) from their dim_users row:
    the period of their signup, else of their first activity (UTC). -#}
{% macro cohort_start_of(grain, users='users') -%}
    cast(date_trunc(
        {{ grain }}, cast({{ at_utc('coalesce(' ~ users ~ '.signed_up_at, ' ~ users ~ '.first_activity_at)') }} as timestamp)
    ) as date)
{%- endmacro %}

{#- The first day of the period of `grain` a row of int_cohort_persons (alias `rows`) stands for. -#}
{% macro cohort_period_start(rows='target') -%}
    case
        when {{ rows }}.cohort_grain = 'week' then {{ rows }}.cohort_start + 7 * {{ rows }}.period_number
        else cast({{ rows }}.cohort_start + {{ rows }}.period_number * interval '1 month' as date)
    end
{%- endmacro %}


{#- Pre-hook of int_cohort_persons. Per changed person (changed_persons_sql: with the time of their earliest changed
    event) and grain, in <model>__scope (person_id, cohort_grain, rebuild_from): when their cohort is the one their
    stored period-0 row has, only the periods from the one holding that earliest changed event on can change (a
    period's row depends on the person's activity days in it, and none before that event changed), so rebuild_from
    is that period's first day; otherwise (a new person, a cohort that moved, a person left without a dim_users row)
    rebuild_from is null: every period. Those rows are kept in <model>__previous (record_cohort_changes() compares)
    and deleted; the model re-inserts them. An hour's late event then rewrites the periods from its own on, not the
    person's whole history. -#}
{% macro rebuild_changed_cohort_periods() -%}
  {%- if is_incremental() -%}
    {%- set scope = adapter.quote(this.identifier ~ '__scope') -%}
    {%- set previous = adapter.quote(this.identifier ~ '__previous') -%}
    {%- set matches -%}
      target.person_id = scope.person_id
      and target.cohort_grain = scope.cohort_grain
      and (scope.rebuild_from is null or {{ cohort_period_start('target') }} >= scope.rebuild_from)
    {%- endset -%}
    drop table if exists {{ scope }};
    create temporary table {{ scope }} as
    with changed as (
        select * from ({{ changed_persons_sql(high_water_mark('_built_at')) }}) as changed_persons
    ),
    grains as (
        {{ cohort_grains() }}
    ),
    now as (
        select
            changed.person_id,
            grains.grain,
            {{ cohort_start_of('grains.grain') }} as cohort_start,
            cast(date_trunc(grains.grain, cast(cast({{ at_utc('changed.first_changed_at') }} as date) as timestamp))
                as date) as first_changed_period
        from changed
        cross join grains
        left join {{ ref('dim_users') }} as users on changed.person_id = users.person_id
    )
    select
        now.person_id,
        cast(now.grain as {{ text_type() }}) as cohort_grain,
        case
            when now.cohort_start = stored.cohort_start then greatest(now.first_changed_period, now.cohort_start)
        end as rebuild_from
    from now
    left join {{ this }} as stored
        on
            now.person_id = stored.person_id
            and now.grain = stored.cohort_grain
            and stored.period_number = 0;
    analyze {{ scope }};
    drop table if exists {{ previous }};
    create temporary table {{ previous }} as
    select target.* from {{ this }} as target inner join {{ scope }} as scope on {{ matches }};
    analyze {{ previous }};
    delete from {{ this }} as target
    using {{ scope }} as scope
    where {{ matches }};
  {%- endif -%}
{%- endmacro %}
