{#-
  Funnel breakdowns, maintained by differences.

  A breakdown cell (funnel, dimension, value, cohort date, step k) counts the persons of int_funnel_breakdown_persons
  (one row per funnel, person and dimension) with that dimension value and cohort who reached step k or later. It is
  a sum over persons, so when a build of int_funnel_breakdown_persons recomputes some persons, every cell changes by
  what those persons count in it now minus what they counted before, and nothing else changes.
  record_funnel_breakdown_changes() (its post-hook) writes those differences per (funnel, dimension, value, cohort
  date, furthest step reached) to ops.funnel_breakdown_changes, with no ids; fct_funnel_breakdown adds every pending
  difference to its stored cells (step k gets those whose furthest step is k or later) and then deletes them (its
  post-hook): an hour's work follows the persons it touched, not the size of the cohorts.
  Which persons a build recomputes: those who gained an event matching a funnel step or an identify (their funnel
  rows and their traits change with nothing else), those who lost events (the persons those counted under before),
  and every person of a funnel whose definition or breakdowns changed.
  What the differences cannot see is recounted whole from int_funnel_breakdown_persons (fct_funnel_breakdown's
  pre-hook): a funnel whose definition changed (its steps may have changed; the build records a marker row naming
  it), every funnel after a full build of int_funnel_breakdown_persons (a marker without a funnel), and after a GDPR
  erasure (which deletes rows outside dbt), the cohorts whose stored entries no longer match the persons.
-#}

{#- The funnel names whose persons int_funnel_breakdown_persons (this) must recompute whole: its rows of a funnel no
    longer configured with breakdowns or built from another definition, and a configured funnel it was not built for. -#}
{% macro stale_breakdown_funnels() -%}
  {%- set stale = [] -%}
  {%- if execute and is_incremental() -%}
    {%- set configured = configured_funnel_definitions(breakdowns_only=true) -%}
    {%- set built = built_funnel_definitions() -%}
    {%- for name, hash in built if (name, hash) not in configured and name not in stale -%}
      {%- do stale.append(name) -%}
    {%- endfor -%}
    {%- for name, hash in configured if (name, hash) not in built and name not in stale -%}
      {%- do stale.append(name) -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(stale) }}
{%- endmacro %}


{#- Pre-hook of int_funnel_breakdown_persons: the persons to recompute, in <model>__scope (their rows kept in
    <model>__previous, then deleted): those whose events changed since the last build (and those they counted under
    before), and every person of a stale funnel (stale_breakdown_funnels) in this model or in int_funnel_persons; a
    marker row for each stale funnel tells fct_funnel_breakdown to recount it. -#}
{% macro rebuild_changed_breakdown_persons() -%}
  {%- if is_incremental() -%}
    {%- set stale = stale_breakdown_funnels() -%}
    {%- for name in stale %}
    insert into ops.funnel_breakdown_changes (funnel_name, persons, changed_at)
    values ({{ sql_string(name) }}, 0, {{ built_at() }});
    {%- endfor %}
    {%- call replace_scope(['person_id'], keep_previous=true) -%}
    select person_id from ({{ changed_persons_sql(
        high_water_mark('_built_at'), any_funnel_step_condition() ~ " or event_type = 'identify'") }}) as changed
    {%- if stale %}
    union
    select person_id from {{ this }} where funnel_name in ({{ sql_list(stale) }})
    union
    select person_id from {{ ref('int_funnel_persons') }} where funnel_name in ({{ sql_list(stale) }}) and step_index = 1
    {%- endif %}
    {%- endcall -%}
  {%- endif -%}
{%- endmacro %}


{#- Post-hook of int_funnel_breakdown_persons: the differences its run made, per cell (see above); after a full
    build, a marker row without a funnel (every funnel is recounted). -#}
{% macro record_funnel_breakdown_changes() %}{{ return(adapter.dispatch('record_funnel_breakdown_changes')()) }}{% endmacro %}

{% macro default__record_funnel_breakdown_changes() -%}
  {%- set columns = 'funnel_name, breakdown_by, breakdown_value, cohort_date, steps_reached, persons, changed_at' -%}
  {%- if is_incremental() -%}
    insert into ops.funnel_breakdown_changes ({{ columns }})
    select funnel_name, breakdown_by, breakdown_value, cohort_date, steps_reached, sum(sign), {{ built_at() }}
    from (
        select target.funnel_name, target.breakdown_by, target.breakdown_value, target.cohort_date,
               target.steps_reached, 1 as sign
        from {{ this }} as target
        inner join {{ adapter.quote(this.identifier ~ '__scope') }} as scope on target.person_id = scope.person_id
        union all
        select funnel_name, breakdown_by, breakdown_value, cohort_date, steps_reached, -1
        from {{ adapter.quote(this.identifier ~ '__previous') }}
    ) as rows_now_and_before
    group by funnel_name, breakdown_by, breakdown_value, cohort_date, steps_reached
    having sum(sign) <> 0
  {%- else -%}
    insert into ops.funnel_breakdown_changes ({{ columns }})
    values (null, null, null, null, null, 0, {{ built_at() }})
  {%- endif -%}
{%- endmacro %}

{% macro spark__record_funnel_breakdown_changes() %}{% endmacro %}


{#- Pre-hook of fct_funnel_breakdown. Its rows of funnels no longer configured with breakdowns go. The (funnel_name,
    cohort_date) keys recounted whole from int_funnel_breakdown_persons go to <model>__scope (their rows deleted):
    every key after a marker without a funnel (a full build of int_funnel_breakdown_persons), every key of a funnel
    with a marker (a changed definition), and after a GDPR erasure since the last build, the keys whose stored entries
    plus the pending differences do not add up to the persons' rows. Every other pending difference, summed per cell,
    goes to <model>__changes, and the stored rows of the (funnel, dimension, value, cohort date) groups it touches to
    <model>__previous (deleted): the model adds the one to the other. -#}
{% macro rebuild_changed_breakdown_cells() -%}
  {%- if is_incremental_in_place() -%}
    {%- set persons = ref('int_funnel_breakdown_persons') -%}
    {%- set configured = [] -%}
    {%- for name, _ in configured_funnel_definitions(breakdowns_only=true) %}{% do configured.append(name) %}{% endfor -%}
    {%- set markers = funnel_breakdown_markers() -%}
    {%- set changes = adapter.quote(this.identifier ~ '__changes') -%}
    {%- set group_keys = ['funnel_name', 'breakdown_by', 'breakdown_value', 'cohort_date'] -%}
    delete from {{ this }}
    where {{ 'funnel_name not in (' ~ sql_list(configured) ~ ')' if configured else 'true' }};
    {% call replace_scope(['funnel_name', 'cohort_date']) -%}
    {%- if markers['all'] -%}
    select funnel_name, cohort_date from {{ persons }}
    union
    select funnel_name, cohort_date from {{ this }}
    {%- else -%}
    select funnel_name, cohort_date from {{ this }} where false
    {%- if markers['funnels'] %}
    union
    select funnel_name, cohort_date from {{ persons }} where funnel_name in ({{ sql_list(markers['funnels']) }})
    union
    select funnel_name, cohort_date from {{ this }} where funnel_name in ({{ sql_list(markers['funnels']) }})
    {%- endif %}
    {%- if erased_since(high_water_mark('_built_at')) %}
    union
    select coalesce(stored.funnel_name, counted.funnel_name), coalesce(stored.cohort_date, counted.cohort_date)
    from (
        select funnel_name, cohort_date, breakdown_by, sum(persons) as entries
        from (
            select funnel_name, cohort_date, breakdown_by, persons from {{ this }} where step_index = 1
            union all
            select funnel_name, cohort_date, breakdown_by, persons
            from ops.funnel_breakdown_changes
            where breakdown_by is not null
        ) as stored_and_pending
        group by funnel_name, cohort_date, breakdown_by
    ) as stored
    full outer join (
        select funnel_name, cohort_date, breakdown_by, count(*) as entries
        from {{ persons }}
        group by funnel_name, cohort_date, breakdown_by
    ) as counted
        on
            stored.funnel_name = counted.funnel_name and stored.cohort_date = counted.cohort_date
            and stored.breakdown_by = counted.breakdown_by
    where coalesce(stored.entries, 0) <> coalesce(counted.entries, 0)
    {%- endif %}
    {%- endif %}
    {%- endcall %};
    drop table if exists {{ changes }};
    create temporary table {{ changes }} as
    select changes.funnel_name, changes.breakdown_by, changes.breakdown_value, changes.cohort_date,
           changes.steps_reached, sum(changes.persons) as persons
    from ops.funnel_breakdown_changes as changes
    where
        changes.breakdown_by is not null
        and changes.funnel_name in ({{ sql_list(configured) if configured else 'null' }})
        and not exists (
            select from {{ adapter.quote(this.identifier ~ '__scope') }} as scope
            where scope.funnel_name = changes.funnel_name and scope.cohort_date = changes.cohort_date
        )
    group by changes.funnel_name, changes.breakdown_by, changes.breakdown_value, changes.cohort_date,
             changes.steps_reached
    having sum(changes.persons) <> 0;
    analyze {{ changes }};
    {% call replace_scope(group_keys, keep_previous=true, scope_name='changed_groups') -%}
    select distinct {{ group_keys | join(', ') }} from {{ changes }}
    {%- endcall %}
  {%- endif -%}
{%- endmacro %}


{#- The pending markers of ops.funnel_breakdown_changes: {'all': a full build of int_funnel_breakdown_persons is
    pending, 'funnels': the funnels whose definition changed}. -#}
{% macro funnel_breakdown_markers() -%}
  {%- set markers = {'all': false, 'funnels': []} -%}
  {%- if execute -%}
    {%- set result = run_query(
        "select distinct coalesce(funnel_name, '*'), funnel_name is null from ops.funnel_breakdown_changes"
        ~ " where breakdown_by is null") -%}
    {%- for row in result.rows -%}
      {%- if row[1] %}{% do markers.update({'all': true}) %}{% else %}{% do markers['funnels'].append(row[0]) %}{% endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(markers) }}
{%- endmacro %}


{#- True when a GDPR erasure deleted rows after `since` (ops.erased_events; none: always). -#}
{% macro erased_since(since) -%}
  {%- if not execute or since is none -%}{{ return(true) }}{%- endif -%}
  {%- set result = run_query(
      "select exists (select from ops.erased_events where erased_at > cast('" ~ since ~ "' as timestamptz))") -%}
  {{ return(result.columns[0].values()[0]) }}
{%- endmacro %}
