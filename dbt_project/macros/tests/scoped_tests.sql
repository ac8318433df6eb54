{#-
  Data tests that follow the hour.

  With var test_scope `changed` (Dagster's runs for new data pass it: the hourly schedule, the sensors' runs,
  `analyticspro materialize`), a test reads the rows its model's latest build wrote, not the whole table: those with
  the _built_at recorded for the model in ops.model_builds (an incremental model writes only the rows it recomputed,
  with the run's start time), and for a model without _built_at (the staging view over raw.events) the rows of the
  raw loads fct_events' latest build read (ops.model_loads). In `dbt build` a model's tests run right after it, so
  they check exactly what that build wrote. A uniqueness test still compares those rows with the whole table, by
  key (`key in (the keys written)`): a new row that repeats an old key fails it. Without the var (test_scope `all`:
  `dbt build` or `dbt test` by hand, the daily run over the closed day, a backfill, a full refresh) and on Spark,
  every row is tested.
  A day-partitioned model (fct_events) compares only within the days its latest build wrote (ops.written_days):
  probing every day's index for every written key costs as many probes as there are days of history, and a written
  key cannot repeat in a day the build did not write: an event's date is its raw row's, and raw.events keeps a
  message id's first row (the loader's insert-only merge). The daily run compares every row.
  The built-in unique, not_null and accepted_values tests are overridden here (dispatch finds the project's
  default__ macros first); unique_combination is the project's own.
-#}

{#- A SQL condition selecting the rows of `model` (a relation) the test checks, or none for every row: with var
    test_scope `changed`, the rows the model's latest build wrote (its _built_at, ops.model_builds) or, for a model
    without _built_at, the rows of the raw loads fct_events' latest build read (ops.model_loads). -#}
{% macro test_rows_scope(model) -%}
  {%- if not execute or var('test_scope', 'all') != 'changed' or target.type != 'postgres' -%}
    {{ return(none) }}
  {%- endif -%}
  {%- if model is string or model.identifier is not defined -%}
    {#- a test with its own `where` config (a subquery, not a relation): as configured -#}
    {{ return(none) }}
  {%- endif -%}
  {%- set columns = adapter.get_columns_in_relation(model) | map(attribute='name') | map('lower') | list -%}
  {%- if '_built_at' in columns -%}
    {%- set built = recorded_built_at(model.schema ~ '.' ~ model.identifier) -%}
    {%- if built is not none -%}
      {{ return("_built_at = cast('" ~ built ~ "' as timestamptz)") }}
    {%- endif -%}
  {%- elif 'load_id' in columns -%}
    {#- (the graph, not ref(): a test's dependencies are its model's) -#}
    {%- set events = graph.nodes['model.' ~ project_name ~ '.fct_events'] -%}
    {%- set built = recorded_built_at(events.schema ~ '.' ~ events.alias) -%}
    {%- if built is not none -%}
      {#- the load ids as literals: estimated from a subquery, after one big first load, the planner scans the whole
          of raw.events (see collect_unread_loads()) -#}
      {%- set read = "select load_id from ops.model_loads where model = 'fct_events' and read_at >= cast('" ~ built
          ~ "' as timestamptz)" -%}
      {%- set limit = var('max_literal_loads') | int -%}
      {%- set loads = run_query(read ~ " order by 1 limit " ~ (limit + 1)).columns[0].values() | list -%}
      {%- if loads | length > limit -%}
        {{ return("load_id = any(array(" ~ read ~ "))") }}
      {%- endif -%}
      {{ return("load_id = any(" ~ sql_text_array(loads) ~ ")") }}
    {%- endif -%}
  {%- endif -%}
  {{ return(none) }}
{%- endmacro %}


{#- With test_rows_scope(), for a day-partitioned model: `<partition column> in (the days its latest build wrote)`,
    the rows a written key is compared with (see the top of this file); none for every row. -#}
{% macro test_compare_scope(model) -%}
  {%- if test_rows_scope(model) is none -%}{{ return(none) }}{%- endif -%}
  {%- set node = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
      | selectattr('alias', 'equalto', model.identifier) | selectattr('schema', 'equalto', model.schema) | first -%}
  {%- set partition_by = node.config.get('partition_by') if node else none -%}
  {%- if not partition_by -%}{{ return(none) }}{%- endif -%}
  {%- set days = written_days_since(model, recorded_built_at(model.schema ~ '.' ~ model.identifier), exactly=true) -%}
  {%- if days is none -%}{{ return(none) }}{%- endif -%}
  {{ return(partition_by.column ~ " in (" ~ (sql_date_list(days) if days else 'null') ~ ")") }}
{%- endmacro %}


{% macro default__test_not_null(model, column_name) -%}
  {%- set scope = test_rows_scope(model) -%}
  {%- set column_list = '*' if should_store_failures() else column_name -%}
select {{ column_list }}
from {{ model }}
where {{ column_name }} is null{{ ' and ' ~ scope if scope }}
{%- endmacro %}


{% macro default__test_unique(model, column_name) -%}
  {{ unique_keys_sql(model, [column_name], skip_nulls=true) }}
{%- endmacro %}


{#- Generic test: no two rows share the same values in `columns` (nulls count as a value, as in GROUP BY). -#}
{% test unique_combination(model, columns) %}
  {{ unique_keys_sql(model, columns, skip_nulls=false) }}
{% endtest %}


{#- The keys (`columns`) held by more than one row of `model`, rows with a null key left out with `skip_nulls` (dbt's
    unique); in scope, only the keys the model's latest build wrote, compared with every row. -#}
{% macro unique_keys_sql(model, columns, skip_nulls) -%}
  {%- set scope = test_rows_scope(model) -%}
  {%- set key = columns | join(', ') -%}
select {{ key }}, count(*) as n_records
from {{ model }}
where
    true
    {%- if skip_nulls %}
        {%- for column in columns %}
    and {{ column }} is not null
        {%- endfor %}
    {%- endif %}
    {%- if scope and columns | length == 1 %}
    {#- one column: `= any(array(...))`, the written keys probed in the column's index (as an `in (select ...)`
        semi-join through the staging view's cast, PostgreSQL read the whole message-id index of raw.events and
        hashed it against the hour's ids: 9.2 s at 10M events) #}
    and {{ key }} = any(array(select {{ key }} from {{ model }} where {{ scope }}))
    {%- elif scope %}
    and ({{ key }}) in (select {{ key }} from {{ model }} where {{ scope }})
    {%- endif %}
    {%- if scope %}
        {%- set compared = test_compare_scope(model) %}
        {%- if compared %}
    and {{ compared }}
        {%- endif %}
    {%- endif %}
group by {{ key }}
having count(*) > 1
{%- endmacro %}


{% macro default__test_accepted_values(model, column_name, values, quote=True) -%}
  {%- set scope = test_rows_scope(model) -%}
with all_values as (

    select
        {{ column_name }} as value_field,
        count(*) as n_records
    from {{ model }}
    {%- if scope %}
    where {{ scope }}
    {%- endif %}
    group by {{ column_name }}

)

select *
from all_values
where value_field not in (
    {%- for value in values %}
    {{ ("'" ~ value ~ "'") if quote else value }}{{ ',' if not loop.last }}
    {%- endfor %}
)
{%- endmacro %}
