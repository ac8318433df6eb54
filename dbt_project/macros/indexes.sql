{#- Post-hook of every model (dbt_project.yml): on an incremental run on PostgreSQL, the indexes of the model's config
    that its table lacks are created. dbt creates a model's indexes only when it creates the table (a full build), so
    an index a newer version of the project adds (for an hour's lookups) would otherwise reach an existing warehouse
    only with `--full-refresh`, and until then its hours read whole tables. An index counts as present when one with
    the same columns, in order, and uniqueness exists (whatever its name). Creating one takes as long as a full build's
    would, once; the run's log names it. -#}
{% macro create_missing_indexes() %}{{ return(adapter.dispatch('create_missing_indexes')()) }}{% endmacro %}

{% macro default__create_missing_indexes() %}{% endmacro %}

{% macro postgres__create_missing_indexes() -%}
  {%- set wanted = config.get('indexes') or [] -%}
  {%- if execute and wanted and is_incremental() -%}
    {%- set existing = run_query(
        "select index.indisunique, array_to_string(array("
        ~ "select attribute.attname from unnest(index.indkey) with ordinality as key (attnum, position) "
        ~ "join pg_attribute as attribute on attribute.attrelid = index.indrelid and attribute.attnum = key.attnum "
        ~ "order by key.position), ',') "
        ~ "from pg_index as index where index.indrelid = " ~ sql_string(this.include(database=false).render()) ~ "::regclass"
    ) -%}
    {%- set present = [] -%}
    {%- for row in existing.rows -%}
      {%- do present.append((row[0], row[1])) -%}
    {%- endfor -%}
    {%- for index in wanted -%}
      {%- set columns = index['columns'] | map('lower') | join(',') -%}
      {%- set unique = index.get('unique', false) -%}
      {%- if (unique, columns) not in present and (true, columns) not in present -%}
        {%- do log("creating the index on " ~ this ~ " (" ~ columns ~ ") that its config names and the table lacks",
                   info=true) -%}
        {{ get_create_index_sql(this, index) }};
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro %}
