{#-
  WAU and MAU coverage, maintained by differences (int_active_coverage).

  A person counts in WAU (MAU) on every date within 6 (29) days after one of their active days. Each active day a
  covers the dates from a up to a + 7 (a + 30) or up to the person's next active day, whichever comes first, so
  the dates a person covers are disjoint intervals and WAU on date d is the running sum, up to d, of +1 at each
  active day and -1 at the end of its interval (coverage_steps below). A change to some persons' active days
  changes the running sums by those persons' steps now minus their steps before, and nothing else:
  record_coverage_changes() (a post-hook of int_person_days) writes those differences per step date to
  ops.activity_coverage_changes (no ids), and int_active_coverage adds their running sums to its stored dates.
  What the differences cannot see is recounted: the dates from the first erased event's date on (a GDPR erasure
  deletes rows outside dbt), and everything after a full build of int_person_days (it records a marker, a row
  with no step date).
-#}

{#- +1/-1 steps (step_date, wau_step, mau_step) of the active days in `person_days` (a select of person_id,
    activity_date), each day read once: +1 on it, -1 where its WAU and its MAU coverage end. least() ignores a null
    next day (the person's last active day). -#}
{% macro coverage_steps(person_days) -%}
    select step.step_date, step.wau_step, step.mau_step
    from (
        select activity_date, lead(activity_date) over (partition by person_id order by activity_date) as next_activity_date
        from ({{ person_days }}) as person_days
    ) as days
    cross join {{ lateral_rows([
        ['days.activity_date', '1', '1'],
        ['least(days.activity_date + 7, days.next_activity_date)', '-1', '0'],
        ['least(days.activity_date + 30, days.next_activity_date)', '0', '-1'],
    ], 'step', ['step_date', 'wau_step', 'mau_step']) }}
{%- endmacro %}


{#- Post-hook of int_person_days: the differences its run made, per step date (see above). The pre-hook kept the old
    rows of the (person, date) pairs it recomputed in <model>__previous; their new rows are in the table now. Only a
    person's days from 30 days before their first recomputed date matter: the steps of earlier days end before it,
    and are the same before and after. -#}
{% macro record_coverage_changes() %}{{ return(adapter.dispatch('record_coverage_changes')()) }}{% endmacro %}

{% macro default__record_coverage_changes() -%}
  {%- if is_incremental() -%}
    {%- set scope = adapter.quote(this.identifier ~ '__scope') -%}
    {%- set previous = adapter.quote(this.identifier ~ '__previous') -%}
    {%- set days = adapter.quote(this.identifier ~ '__days_now') -%}
    {%- set days_now = 'select person_id, activity_date from ' ~ days -%}
    {%- set days_before -%}
        (
            select person_id, activity_date from {{ days }}
            except all
            select target.person_id, target.activity_date
            from {{ days }} as target
            inner join {{ scope }} as scope
                on target.person_id = scope.person_id and target.activity_date = scope.activity_date
        )
        union all
        select person_id, activity_date from {{ previous }}
    {%- endset -%}
    -- the recomputed persons' days now (from 30 days before their first recomputed date), once, by person_id
    drop table if exists {{ days }};
    create temporary table {{ days }} as
    select target.person_id, target.activity_date
    from {{ this }} as target
    inner join (
        select person_id, min(activity_date) - 30 as since from {{ scope }} group by person_id
    ) as persons on target.person_id = persons.person_id and target.activity_date >= persons.since;
    analyze {{ days }};
    insert into ops.activity_coverage_changes (step_date, wau_step, mau_step, changed_at)
    select step_date, sum(wau_step), sum(mau_step), {{ built_at() }}
    from (
        select step_date, wau_step, mau_step from ({{ coverage_steps(days_now) }}) as now_steps
        union all
        select step_date, -wau_step, -mau_step from ({{ coverage_steps(days_before) }}) as before_steps
    ) as steps
    group by step_date
    having sum(wau_step) <> 0 or sum(mau_step) <> 0
  {%- else -%}
    insert into ops.activity_coverage_changes (step_date, wau_step, mau_step, changed_at)
    values (null, 0, 0, {{ built_at() }})
  {%- endif -%}
{%- endmacro %}

{% macro spark__record_coverage_changes() %}{% endmacro %}


{#- Post-hook of int_active_coverage: the differences it has read go (every one recorded up to this run, in the same
    transaction as the rows they went into; a run writes no rows when they change only dates outside the calendar). -#}
{% macro prune_coverage_changes() %}{{ return(adapter.dispatch('prune_coverage_changes')()) }}{% endmacro %}

{% macro default__prune_coverage_changes() -%}
    delete from ops.activity_coverage_changes where changed_at <= {{ built_at() }}
{%- endmacro %}

{% macro spark__prune_coverage_changes() %}{% endmacro %}


{#- Post-hook of int_active_coverage: the dates outside the calendar (the first active day to 29 days after the
    last) go, e.g. when a re-mapping or an erasure removed the earliest active days. -#}
{% macro trim_coverage_calendar() %}{{ return(adapter.dispatch('trim_coverage_calendar')()) }}{% endmacro %}

{% macro default__trim_coverage_calendar() -%}
    delete from {{ this }}
    where not coalesce(date between (select min(activity_date) from {{ ref('int_person_days') }})
        and (select max(activity_date) + 29 from {{ ref('int_person_days') }}), false)
{%- endmacro %}

{% macro spark__trim_coverage_calendar() %}{% endmacro %}
