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


{#- The funnels whose rows in this model were built from their current definition. -#}
{% macro unchanged_funnels() -%}
  {%- set unchanged = [] -%}
  {%- if execute and is_incremental() -%}
    {%- set built = run_query('select distinct funnel_name, definition_hash from ' ~ this) -%}
    {%- set built_pairs = [] -%}
    {%- for row in built.rows -%}{%- do built_pairs.append(row[0] ~ ':' ~ row[1]) -%}{%- endfor -%}
    {%- for funnel in funnels() -%}
      {%- if (funnel['name'] ~ ':' ~ funnel_hash(funnel)) in built_pairs -%}
        {%- do unchanged.append(funnel['name']) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(unchanged) }}
{%- endmacro %}


{#- Pre-hook: drop the rows of funnels that were removed or whose definition changed. -#}
{% macro delete_changed_funnels() -%}
  {%- if is_incremental() -%}
    delete from {{ this }}
    where (funnel_name, definition_hash) not in (
      {%- for funnel in funnels() %}
        ({{ funnel_name_literal(funnel) }}, '{{ funnel_hash(funnel) }}'){{ "," if not loop.last }}
      {%- endfor %}
      {%- if not funnels() %}(null, null){% endif %}
    )
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


{#- Pre-hook of fct_funnel_steps: the (funnel_name, cohort_date) keys to recompute, in a temporary table
    <model>__scope, and their rows deleted: keys of int_funnel_persons rows written after the last build; keys whose
    stored entries (step 1 persons) differ from int_funnel_persons' now (someone left); keys of the calendar (every
    configured funnel x every date from the first event to the last) that have no rows and stored keys outside it. -#}
{% macro rebuild_changed_funnel_cohorts() -%}
  {%- if is_incremental() -%}
    {%- set since = high_water_mark('_built_at') -%}
    {%- call replace_scope(['funnel_name', 'cohort_date']) -%}
    with stored as (
        select funnel_name, cohort_date, persons as entries from {{ this }} where step_index = 1
    ),
    members as (
        select funnel_name, cohort_date, count(*) as entries
        from {{ ref('int_funnel_persons') }}
        where step_index = 1
        group by funnel_name, cohort_date
    )
    select funnel_name, cohort_date from {{ ref('int_funnel_persons') }} where {{ changed_since(since) }}
    union
    select coalesce(stored.funnel_name, members.funnel_name), coalesce(stored.cohort_date, members.cohort_date)
    from stored
    full outer join members
        on stored.funnel_name = members.funnel_name and stored.cohort_date = members.cohort_date
    where coalesce(stored.entries, 0) <> coalesce(members.entries, 0)
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
