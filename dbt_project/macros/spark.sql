{#-
  The `spark` targets: the same models built by Apache Spark over the Parquet lake (EVENTS_LAKE_URL).

  Sources: raw.events is a view over the lake's events table (<lake>/events/event_date=YYYY-MM-DD/*.parquet,
  written by the loader); ops.person_archive_history is an empty table (the lake keeps every day, nothing is
  archived out of it). Models: Parquet tables at <lake>/<folder>/<model> (marts at <lake>/marts/<model>/), so
  Athena, Trino or DuckDB read the marts without Spark.

  Every Spark build is a full rebuild from the lake, the usual shape of a batch job on a cluster: the
  incremental models' PostgreSQL strategies (partitioned upserts, per-person rescoping) need row-level updates
  that plain Parquet tables do not have, so on Spark `incremental` builds like `table`, and is_incremental()
  is false.
-#}

{#- The lake's URL as Spark reads it: s3://… becomes s3a://… (Hadoop's S3 connector). -#}
{% macro lake_url() -%}
  {%- set url = env_var('EVENTS_LAKE_URL', '') | trim -%}
  {%- if not url -%}
    {{ exceptions.raise_compiler_error(
        "EVENTS_LAKE_URL is not set: the spark targets read the events from, and write the marts to, the lake "
        ~ "(an absolute folder or s3://bucket/prefix). `analyticspro materialize --engine spark` sets it from "
        ~ "the environment's default; for dbt run by hand, export it.") }}
  {%- endif -%}
  {{ return(url.rstrip('/') | replace('s3://', 's3a://', 1)) }}
{%- endmacro %}


{% macro is_incremental() %}
  {%- if target.type == 'spark' -%}
    {{ return(false) }}
  {%- endif -%}
  {{ return(dbt.is_incremental()) }}
{% endmacro %}


{#- Both `table` and `incremental` models: drop, then CREATE TABLE … USING parquet [PARTITIONED BY] LOCATION … AS
    (the location's old files are replaced). Model contracts hold PostgreSQL's column types and are enforced on
    PostgreSQL; on Spark the columns take Spark's types for the same values (tests/test_spark.py compares the
    marts of both engines row for row). -#}
{% macro build_lake_table() %}
  {%- set identifier = model['alias'] -%}
  {%- set old_relation = adapter.get_relation(database=database, schema=schema, identifier=identifier) -%}
  {%- set target_relation = api.Relation.create(identifier=identifier, schema=schema, database=database, type='table') -%}
  {%- set partition_by = config.get('partition_by') -%}
  {%- if partition_by is mapping -%}{%- set partition_by = [partition_by['column']] -%}{%- endif -%}
  {%- if partition_by is string -%}{%- set partition_by = [partition_by] -%}{%- endif -%}

  {{ run_hooks(pre_hooks) }}
  {%- if old_relation is not none -%}
    {{ adapter.drop_relation(old_relation) }}
  {%- endif -%}
  {%- call statement('main') -%}
    create table {{ target_relation }}
    {{ file_format_clause() }}
    {%- if partition_by %}
    partitioned by ({{ partition_by | join(', ') }})
    {%- endif %}
    {{ location_clause() }}
    as
    {{ compiled_code }}
  {%- endcall -%}
  {{ run_hooks(post_hooks) }}
  {{ return({'relations': [target_relation]}) }}
{% endmacro %}

{% materialization incremental, adapter='spark' %}
  {{ return(build_lake_table()) }}
{% endmaterialization %}

{% materialization table, adapter='spark' %}
  {{ return(build_lake_table()) }}
{% endmaterialization %}


{#- on-run-start on Spark: the lake's events as raw.events, an empty ops.person_archive_history, and a check
    that the session reads timestamps in UTC. -#}
{% macro spark__create_ops_tables() -%}
  {%- if execute -%}
    {%- set zone = run_query("select current_timezone()").columns[0].values()[0] -%}
    {%- if zone not in ('UTC', 'Etc/UTC', 'Z', '+00:00') -%}
      {{ exceptions.raise_compiler_error(
          "The Spark session's time zone is " ~ zone ~ ", not UTC: dates would shift. Set "
          ~ "spark.sql.session.timeZone=UTC (the spark targets in profiles.yml do; on a cluster, in its Spark config).") }}
    {%- endif -%}
  {%- endif -%}
  {%- set lake = lake_url() -%}
  {#- one statement per call: Spark runs one at a time -#}
  {%- do run_query("create schema if not exists raw") -%}
  {%- do run_query("create or replace view raw.events as select * from parquet.`" ~ lake ~ "/events`") -%}
  {%- do run_query("create schema if not exists ops") -%}
  {%- do run_query(
    "create table if not exists ops.person_archive_history ("
    ~ person_archive_history_columns(spark_types=true) | join(', ')
    ~ ") using parquet location '" ~ lake ~ "/ops/person_archive_history'") -%}
{%- endmacro %}


{#- Hooks that only mean something to PostgreSQL (an empty hook is skipped). -#}
{#- PostgreSQL session settings for every model: memory for sorts and hashes (var work_mem), and no JIT
    compilation: its cost follows the planner's estimate, and a per-person lookup over every partition of fct_events
    (estimated as if each probed them all) spent 12 s compiling a query that ran in 0.3 s. -#}
{% macro session_settings() %}{{ return(adapter.dispatch('session_settings')()) }}{% endmacro %}
{% macro default__session_settings() %}set work_mem = '{{ var('work_mem') }}'; set jit = off{% endmacro %}
{% macro spark__session_settings() %}{% endmacro %}

{% macro vacuum_table(relation, analyze=false) %}{{ return(adapter.dispatch('vacuum_table')(relation, analyze)) }}{% endmacro %}
{% macro default__vacuum_table(relation, analyze) %}vacuum{{ ' analyze' if analyze }} {{ relation }}{% endmacro %}
{% macro spark__vacuum_table(relation, analyze) %}{% endmacro %}
