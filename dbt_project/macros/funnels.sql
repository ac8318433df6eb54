{#- Funnels come from var('funnels') in dbt_project.yml; see docs/metrics.md for the semantics. -#}

{% macro funnels() -%}
  {%- set funnels = var('funnels', []) -%}
  {%- set names = [] -%}
  {%- for funnel in funnels -%}
    {%- if not funnel.get('name') or not funnel.get('steps') -%}
      {{ exceptions.raise_compiler_error("Each funnel in var 'funnels' (dbt_project.yml) needs a name and at least one step; got " ~ tojson(funnel)) }}
    {%- endif -%}
    {%- if funnel['name'] in names -%}
      {{ exceptions.raise_compiler_error("Funnel name '" ~ funnel['name'] ~ "' is used twice in var 'funnels' (dbt_project.yml): names must be unique.") }}
    {%- endif -%}
    {%- do names.append(funnel['name']) -%}
    {%- for step in funnel['steps'] -%}
      {%- if (step.get('event') is none) == (step.get('page') is none) -%}
        {{ exceptions.raise_compiler_error("Funnel '" ~ funnel['name'] ~ "' step " ~ loop.index ~ " must set exactly one of `event` (an event name) or `page` (a page path); got " ~ tojson(step)) }}
      {%- endif -%}
    {%- endfor -%}
  {%- endfor -%}
  {{ return(funnels) }}
{%- endmacro %}


{#- The funnel's name as a SQL string literal. -#}
{% macro funnel_name_literal(funnel) -%}
  {{- sql_string(funnel["name"]) -}}
{%- endmacro %}

{#- The columns that say which funnel, and which version of its definition, a row belongs to. -#}
{% macro funnel_key_columns(funnel) -%}
  cast({{ funnel_name_literal(funnel) }} as {{ text_type() }}) as funnel_name,
  cast('{{ funnel_hash(funnel) }}' as {{ text_type() }}) as definition_hash
{%- endmacro %}

{#- A select of no rows with these (name, SQL type) columns: a model's shape when no funnel is configured. -#}
{% macro no_rows(columns) -%}
  select
  {%- for name, type in columns %} cast(null as {{ type }}) as {{ name }}{{ ',' if not loop.last }}{% endfor %}
  where false
{%- endmacro %}


{#- A fingerprint of a funnel's definition: rows built under another definition are rebuilt. -#}
{% macro funnel_hash(funnel) -%}
  {{ return(local_md5(tojson(funnel, sort_keys=true))) }}
{%- endmacro %}


{% macro funnel_step_name(step, index) -%}
  {{ return(step.get('name') or (('page ' ~ step['page']) if step.get('page') is not none else step['event'])) }}
{%- endmacro %}


{#- SQL condition on fct_events columns for one funnel step. -#}
{% macro funnel_step_condition(step) -%}
  {%- if step.get('page') is not none -%}
    event_type = 'page' and page_path = {{ sql_string(step["page"]) }}
  {%- else -%}
    event_name = {{ sql_string(step["event"]) }}
  {%- endif -%}
  {%- for key, value in (step.get('properties') or {}).items() %}
    and {{ json_text('properties', key) }} = {{ sql_string(value) }}
  {%- endfor -%}
{%- endmacro %}


{#- A condition on fct_events' columns: the event matches a step of a configured funnel (false without funnels). -#}
{% macro any_funnel_step_condition() -%}
  {%- set conditions = [] -%}
  {%- for funnel in funnels() -%}
    {%- for step in funnel['steps'] -%}
      {%- do conditions.append('(' ~ funnel_step_condition(step) ~ ')') -%}
    {%- endfor -%}
  {%- endfor -%}
  {{ conditions | join(' or ') if conditions else 'false' }}
{%- endmacro %}


{#- The (funnel name, definition hash) of every configured funnel (`breakdowns_only`: of those with breakdowns). -#}
{% macro configured_funnel_definitions(breakdowns_only=false) -%}
  {%- set pairs = [] -%}
  {%- for funnel in funnels() if funnel.get('breakdowns') or not breakdowns_only -%}
    {%- do pairs.append((funnel['name'], funnel_hash(funnel))) -%}
  {%- endfor -%}
  {{ return(pairs) }}
{%- endmacro %}


{#- The (funnel name, definition hash) pairs this model's rows were built from: recorded by its post-hook
    record_funnel_definitions (ops.model_builds on PostgreSQL, ops.funnel_definitions_built on Spark: one lookup), or,
    for a table built before that record existed, the distinct pairs of its rows (a scan of the table). -#}
{% macro built_funnel_definitions() -%}
  {%- set pairs = [] -%}
  {%- if execute and is_incremental() -%}
    {%- set recorded = recorded_funnel_definitions() -%}
    {%- if recorded is not none -%}
      {%- for name, hash in recorded.items() -%}
        {%- do pairs.append((name, hash)) -%}
      {%- endfor -%}
    {%- else -%}
      {%- for row in run_query('select distinct funnel_name, definition_hash from ' ~ this).rows -%}
        {%- do pairs.append((row[0], row[1])) -%}
      {%- endfor -%}
    {%- endif -%}
  {%- endif -%}
  {{ return(pairs) }}
{%- endmacro %}

{#- The definitions this model's last build recorded ({funnel name: hash}: ops.funnel_definitions_built on Spark,
    ops.model_builds.funnel_definitions on PostgreSQL), or none when it recorded none. -#}
{% macro recorded_funnel_definitions() -%}
  {%- if target.type == 'spark' -%}
    {%- set recorded = run_query(
        "select definitions from ops.funnel_definitions_built where model = " ~ sql_string(this.identifier)) -%}
  {%- else -%}
    {%- set recorded = run_query(
        "select funnel_definitions::text from ops.model_builds where model = '" ~ model_build_key() ~ "'"
        ~ " and funnel_definitions is not null") -%}
  {%- endif -%}
  {{ return(fromjson(recorded.columns[0].values()[0]) if recorded.rows | length > 0 else none) }}
{%- endmacro %}


{#- Post-hook of the funnel models: the definitions their rows are now built from (ops.model_builds). -#}
{% macro record_funnel_definitions(breakdowns_only=false) %}
  {{- return(adapter.dispatch('record_funnel_definitions')(breakdowns_only)) -}}
{% endmacro %}

{% macro configured_funnel_definitions_json(breakdowns_only) -%}
  {%- set definitions = {} -%}
  {%- for name, hash in configured_funnel_definitions(breakdowns_only) -%}
    {%- do definitions.update({name: hash}) -%}
  {%- endfor -%}
  {{ return(tojson(definitions)) }}
{%- endmacro %}

{% macro default__record_funnel_definitions(breakdowns_only) -%}
    {%- set definitions = configured_funnel_definitions_json(breakdowns_only) %}
    insert into ops.model_builds (model, built_at, funnel_definitions)
    values ('{{ model_build_key() }}', {{ built_at() }}, cast({{ sql_string(definitions) }} as jsonb))
    on conflict (model) do update set funnel_definitions = excluded.funnel_definitions
{%- endmacro %}

{% macro spark__record_funnel_definitions(breakdowns_only) -%}
  insert overwrite table ops.funnel_definitions_built partition (model)
  select {{ sql_string(configured_funnel_definitions_json(breakdowns_only)) }} as definitions,
      {{ sql_string(this.identifier) }} as model
{%- endmacro %}


{#- The funnels whose rows in this model were built from their current definition. -#}
{% macro unchanged_funnels() -%}
  {%- set unchanged = [] -%}
  {%- set built = built_funnel_definitions() -%}
  {%- for name, hash in configured_funnel_definitions() if (name, hash) in built -%}
    {%- do unchanged.append(name) -%}
  {%- endfor -%}
  {{ return(unchanged) }}
{%- endmacro %}


{#- Pre-hook: drop the rows of funnels that were removed or whose definition changed (nothing to do, and no scan,
    when every definition the rows were built from is still configured). -#}
{% macro delete_changed_funnels() -%}
  {%- if is_incremental_in_place() -%}
    {%- set configured = configured_funnel_definitions() -%}
    {%- set stale = [] -%}
    {%- for pair in built_funnel_definitions() if pair not in configured %}{% do stale.append(pair) %}{% endfor -%}
    {%- if stale %}
    delete from {{ this }}
    where (funnel_name, definition_hash) not in (
      {%- for name, hash in configured %}
        ({{ sql_string(name) }}, '{{ hash }}'){{ "," if not loop.last }}
      {%- endfor %}
      {%- if not configured %}(null, null){% endif %}
    )
    {%- endif %}
  {%- endif -%}
{%- endmacro %}


{#- Every configured step: a select of (funnel_name, step_index, step_name). -#}
{% macro configured_funnel_steps() -%}
  select * from {{ funnel_steps_values() }} as configured (funnel_name, step_index, step_name)
{%- endmacro %}

{#- (funnel_name, step_index, step_name) of every configured step, as a VALUES list. -#}
{% macro funnel_steps_values() -%}
  {%- set rows = [] -%}
  {%- for funnel in funnels() -%}
    {%- for step in funnel['steps'] -%}
      {%- do rows.append("(" ~ funnel_name_literal(funnel) ~ ", " ~ loop.index ~ ", "
          ~ sql_string(funnel_step_name(step, loop.index)) ~ ")") -%}
    {%- endfor -%}
  {%- endfor -%}
  {%- if rows -%}
    (values {{ rows | join(', ') }})
  {%- else -%}
    (select cast(null as {{ text_type() }}), 0, cast(null as {{ text_type() }}) where false)
  {%- endif -%}
{%- endmacro %}


{#- SQL for one breakdown dimension: person.<trait> reads dim_users.traits (alias people);
    event.<column or property> reads the entry event's attributes kept in int_funnel_persons. -#}
{% macro funnel_breakdown_expression(dimension) -%}
  {%- set source, _, key = dimension.partition('.') -%}
  {%- if source == 'person' and key -%}
    {{ json_text('people.traits', key) }}
  {%- elif source == 'event' and key -%}
    {{ json_text('entries.entry_attributes', key) }}
  {%- else -%}
    {{ exceptions.raise_compiler_error("Funnel breakdown '" ~ dimension ~ "' must look like person.<trait> or event.<column or property> (dbt_project.yml, var 'funnels').") }}
  {%- endif -%}
{%- endmacro %}


{#- conversion_from_previous, conversion_from_start and drop_off, from the columns persons,
    previous_persons (lag over the steps) and start_persons (step 1's persons). drop_off is the one
    definition of funnel drop-off (docs/metrics.md, "Funnel drop-off"); the API sums it. -#}
{% macro funnel_conversions() -%}
    cast(case
        when step_index = 1 then case when persons > 0 then 1 end
        when previous_persons > 0 then cast(persons as {{ numeric_type() }}) / previous_persons
    end as numeric(20, 6)) as conversion_from_previous,
    cast(case when start_persons > 0 then cast(persons as {{ numeric_type() }}) / start_persons end as numeric(20, 6))
        as conversion_from_start,
    cast(coalesce(previous_persons - persons, 0) as bigint) as drop_off
{%- endmacro %}


{#- Post-hook of int_funnel_persons: the (funnel, cohort date) keys its recomputed persons were in before
    (<model>__previous) when their rows of the funnel changed or went (rows that came out the same kept their
    _built_at), keys which may have lost an entry, in ops.funnel_cohort_changes for fct_funnel_steps; a marker
    row (no date) for each funnel it recomputed whole (its definition changed: its rows were deleted outside the
    persons' scope), and one without a funnel after a full build. The keys persons are in now are its rows written
    this run. -#}
{% macro record_funnel_cohort_changes() %}{{ return(adapter.dispatch('record_funnel_cohort_changes')()) }}{% endmacro %}

{% macro default__record_funnel_cohort_changes() -%}
  {%- if is_incremental() -%}
    {%- set unchanged = unchanged_funnels() -%}
    insert into ops.funnel_cohort_changes (funnel_name, cohort_date, changed_at)
    select distinct previous.funnel_name, previous.cohort_date, {{ built_at() }}
    from {{ adapter.quote(this.identifier ~ '__previous') }} as previous
    where not exists (
        select from {{ this }} as kept
        where
            kept.person_id = previous.person_id and kept.funnel_name = previous.funnel_name
            and kept._built_at < {{ built_at() }}
    )
    {%- for name, hash in configured_funnel_definitions() if name not in unchanged %}
    union all
    select {{ sql_string(name) }}, null, {{ built_at() }}
    {%- endfor %}
  {%- else -%}
    insert into ops.funnel_cohort_changes (funnel_name, cohort_date, changed_at) values (null, null, {{ built_at() }})
  {%- endif -%}
{%- endmacro %}

{% macro spark__record_funnel_cohort_changes() %}{% endmacro %}


{#- Pre-hook of fct_funnel_steps: the (funnel_name, cohort_date) keys to recompute, in a temporary table
    <model>__scope, and their rows deleted: keys of int_funnel_persons rows written after the last build (the cohorts
    persons are in now); keys int_funnel_persons recorded in ops.funnel_cohort_changes since then (the cohorts its
    recomputed persons were in before); keys of the calendar (every configured funnel x every date from the first
    event to the last) that have no rows and stored keys outside it. Where the record cannot tell (a funnel recomputed
    whole or a full build of int_funnel_persons, both marked there, and a GDPR erasure, which deletes persons' rows
    outside dbt), keys whose stored entries (step 1 persons) differ from int_funnel_persons' now: a count over every
    cohort, which an hourly run does not otherwise pay. -#}
{% macro rebuild_changed_funnel_cohorts() -%}
  {%- if is_incremental_in_place() -%}
    {%- set since = high_water_mark('_built_at') -%}
    {%- set compare_all = since is none or erased_since(since) or not execute or run_query(
        "select exists (select from ops.funnel_cohort_changes where cohort_date is null and changed_at > cast('"
        ~ since ~ "' as timestamptz))").columns[0].values()[0] -%}
    {%- call replace_scope(['funnel_name', 'cohort_date']) -%}
    select funnel_name, cohort_date from {{ ref('int_funnel_persons') }} where {{ changed_since(since) }}
    {%- if since is not none %}
    union
    select funnel_name, cohort_date from ops.funnel_cohort_changes
    where cohort_date is not null and changed_at > cast('{{ since }}' as timestamptz)
    {%- endif %}
    {%- if compare_all %}
    union
    select coalesce(stored.funnel_name, members.funnel_name), coalesce(stored.cohort_date, members.cohort_date)
    from (select funnel_name, cohort_date, persons as entries from {{ this }} where step_index = 1) as stored
    full outer join (
        select funnel_name, cohort_date, count(*) as entries
        from {{ ref('int_funnel_persons') }}
        where step_index = 1
        group by funnel_name, cohort_date
    ) as members
        on stored.funnel_name = members.funnel_name and stored.cohort_date = members.cohort_date
    where coalesce(stored.entries, 0) <> coalesce(members.entries, 0)
    {%- endif %}
    union
    select coalesce(stored.funnel_name, expected.funnel_name), coalesce(stored.cohort_date, expected.cohort_date)
    from (select distinct funnel_name, cohort_date from {{ this }}) as stored
    full outer join (
        select configured.funnel_name, calendar.cohort_date
        from (select distinct funnel_name from ({{ configured_funnel_steps() }}) as steps) as configured
        cross join ({{ event_calendar('day', 'cohort_date') }}) as calendar
    ) as expected
        on stored.funnel_name = expected.funnel_name and stored.cohort_date = expected.cohort_date
    where stored.funnel_name is null or expected.funnel_name is null
    {%- endcall -%}
  {%- endif -%}
{%- endmacro %}
