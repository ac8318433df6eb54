{#-
  The `spark` targets: the same models built by Apache Spark over the Parquet lake (EVENTS_LAKE_URL).

  Sources: raw.events is a view over the lake's events table (<lake>/events/event_date=YYYY-MM-DD/*.parquet,
  written by the loader); ops.person_archive_history is an empty table (the lake keeps every day, nothing is
  archived out of it). Models: Parquet tables at <lake>/<folder>/<model> (marts at <lake>/marts/<model>/), so
  Athena, Trino or DuckDB read the marts without Spark.

  Plain Parquet tables have no row-level updates, so on Spark a model is incremental only by whole partitions:
  a model that sets `lake_partition_overwrite=true` (fct_events, int_event_days and int_person_days, by their date;
  `lake_partition_by` names the column where the model is not partitioned on PostgreSQL) is rebuilt, on an
  incremental run, for the partitions its SQL selects (the days whose lake file changed since it last read them:
  the lake's manifest, ops.lake_days, against ops.lake_days_built, and the days of re-stitched visitors' events),
  and those partitions alone are overwritten (Spark's dynamic partition overwrite); every other partition's files
  stay as they are. The other models (persons, sessions, cohorts, months) are rebuilt from the lake by `table`: on
  Spark is_incremental() is false for them.
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
  {%- if target.type == 'spark' and not config.get('lake_partition_overwrite', false) -%}
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
  {%- set partition_by = config.get('lake_partition_by') or config.get('partition_by') -%}
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

{#- An incremental run of a `lake_partition_overwrite` model: INSERT OVERWRITE … PARTITION (<column>) of what the
    model selects, in dynamic mode, so only the partitions that appear in it are replaced; then each partition the
    model lists in `lake_partitions_removed()` (a day the lake no longer has) is overwritten with nothing. -#}
{% macro overwrite_lake_partitions() %}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set partition_by = config.get('lake_partition_by') or config.get('partition_by') -%}
  {%- set column = partition_by['column'] if partition_by is mapping else partition_by -%}
  {%- set columns = adapter.get_columns_in_relation(target_relation) -%}
  {%- set removed = lake_partitions_removed() -%}

  {{ run_hooks(pre_hooks) }}
  {%- do run_query("set spark.sql.sources.partitionOverwriteMode=dynamic") -%}
  {%- call statement('main') -%}
    insert overwrite table {{ target_relation }} partition ({{ column }})
    select {% for c in columns %}{{ adapter.quote(c.name) }}{{ ', ' if not loop.last }}{% endfor %}
    from (
    {{ compiled_code }}
    ) as new_rows
  {%- endcall -%}
  {%- for value in removed -%}
    {%- call statement('remove_' ~ loop.index) -%}
      insert overwrite table {{ target_relation }} partition ({{ column }} = '{{ value }}')
      select {% for c in columns if c.name != column %}cast(null as {{ c.data_type }}){{ ', ' if not loop.last }}{% endfor %}
      where false
    {%- endcall -%}
  {%- endfor -%}
  {{ run_hooks(post_hooks) }}
  {{ return({'relations': [target_relation]}) }}
{% endmacro %}

{% materialization incremental, adapter='spark' %}
  {%- if is_incremental() and config.get('lake_partition_overwrite', false) -%}
    {{ return(overwrite_lake_partitions()) }}
  {%- endif -%}
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
  {#- the lake's manifest (warehouse/lake.py writes it), and what each partition-overwrite model last read of it
      and of the identity map -#}
  {%- do run_query(
    "create table if not exists ops.lake_days (event_date date, row_count bigint, max_load_id string, "
    ~ "written_at timestamp) using parquet location '" ~ lake ~ "/ops/lake_days'") -%}
  {%- do run_query(
    "create table if not exists ops.lake_days_built (event_date date, written_at timestamp, model string) "
    ~ "using parquet partitioned by (model) location '" ~ lake ~ "/ops/lake_days_built'") -%}
  {%- do run_query(
    "create table if not exists ops.identity_built (anonymous_id string, user_id string, model string) "
    ~ "using parquet partitioned by (model) location '" ~ lake ~ "/ops/identity_built'") -%}
{%- endmacro %}


{#- Hooks that only mean something to PostgreSQL (an empty hook is skipped). -#}
{#- PostgreSQL session settings for every model: memory for sorts and hashes (var work_mem), no JIT
    compilation (its cost follows the planner's estimate, and a per-person lookup over every partition of fct_events,
    estimated as if each probed them all, spent 12 s compiling a query that ran in 0.3 s), and on an incremental run
    the random page cost of var incremental_random_page_cost (index lookups of the few keys a run recomputes
    instead of hashing whole tables). -#}
{% macro session_settings() %}{{ return(adapter.dispatch('session_settings')()) }}{% endmacro %}
{% macro default__session_settings() -%}
  set work_mem = '{{ var('work_mem') }}'; set jit = off
  {%- if is_incremental() and var('incremental_random_page_cost', none) is not none -%}
    ; set random_page_cost = {{ var('incremental_random_page_cost') | float }}
  {%- else -%}
    ; reset random_page_cost
  {%- endif -%}
{%- endmacro %}
{% macro spark__session_settings() %}{% endmacro %}

{#- VACUUM (sets the visibility map for index-only scans; it reads only the pages changed since the last one); with
    `analyze`, ANALYZE too when the table was just built or more than a tenth of its rows changed since its last
    ANALYZE, as autovacuum would (an ANALYZE samples up to 30,000 pages whatever changed: 0.34 s an hour on
    int_funnel_events at 10M events, for a thousand new rows). -#}
{% macro vacuum_table(relation, analyze=false) %}{{ return(adapter.dispatch('vacuum_table')(relation, analyze)) }}{% endmacro %}
{% macro default__vacuum_table(relation, analyze) -%}
  {%- set stale = analyze and (not execute or not is_incremental() or run_query(
      "select coalesce((select n_mod_since_analyze > 0.1 * greatest(n_live_tup, 1) or last_analyze is null and "
      ~ "last_autoanalyze is null from pg_stat_user_tables where relid = '" ~ relation ~ "'::regclass), true)"
  ).columns[0].values()[0]) -%}
  vacuum{{ ' analyze' if stale }} {{ relation }}
{%- endmacro %}
{% macro spark__vacuum_table(relation, analyze) %}{% endmacro %}


{#- Partition overwrite on Spark (see the top of this file), for a model partitioned by event_date:
    lake_days_to_build() pins the lake's manifest for this build (a cached view <model>__lake_days, read by the
    post-hook too, so what is recorded as built is what was read) and, on an incremental run, returns the days to
    rebuild as ISO dates: days whose lake file was written since this model last read it, days holding events of
    anonymous ids mapped to another person since (ops.identity_built: the map this model last used), and the days
    from var start_date to var end_date (exclusive) when the orchestrator passes them. None on PostgreSQL, and on a
    full build. -#}
{#- The name of the view pinning the lake's manifest for this model's build. -#}
{% macro pinned_lake_days() %}{{ return(this.identifier ~ '__lake_days') }}{% endmacro %}

{% macro lake_days_to_build() %}
  {%- if target.type != 'spark' or not execute -%}{{ return(none) }}{%- endif -%}
  {%- set pinned = pinned_lake_days() -%}
  {%- do run_query("uncache table if exists " ~ pinned) -%}
  {%- do run_query("create or replace temporary view " ~ pinned ~ " as select event_date, written_at from ops.lake_days") -%}
  {%- do run_query("cache table " ~ pinned) -%}
  {%- if not is_incremental() -%}{{ return(none) }}{%- endif -%}
  {%- set model = sql_string(this.identifier) -%}
  {%- set query -%}
    select cast(days.event_date as string) as event_date from {{ pinned }} as days
    left anti join ops.lake_days_built as built
        on built.model = {{ model }} and built.event_date = days.event_date and built.written_at = days.written_at
    union
    select distinct cast(events.event_date as string) from {{ source('raw', 'events') }} as events
    left semi join (
        select changed.anonymous_id from (
            select anonymous_id, user_id from {{ ref('int_identity_map') }}
            except
            select anonymous_id, user_id from ops.identity_built where model = {{ model }}
        ) as changed
        union
        select dropped.anonymous_id from (
            select anonymous_id, user_id from ops.identity_built where model = {{ model }}
            except
            select anonymous_id, user_id from {{ ref('int_identity_map') }}
        ) as dropped
    ) as remapped on events.anonymous_id = remapped.anonymous_id
    {%- if var('start_date', none) and var('end_date', none) %}
    union
    select cast(days.event_date as string) from {{ pinned }} as days
    where days.event_date >= date '{{ var("start_date") }}' and days.event_date < date '{{ var("end_date") }}'
    {%- endif %}
  {%- endset -%}
  {{ return(run_query(query).columns[0].values() | sort | list) }}
{% endmacro %}


{#- The partitions this model last built for days the lake no longer has (every event of the day erased). -#}
{% macro lake_partitions_removed() %}
  {%- set query -%}
    select cast(built.event_date as string) from ops.lake_days_built as built
    left anti join {{ pinned_lake_days() }} as days on built.event_date = days.event_date
    where built.model = {{ sql_string(this.identifier) }}
  {%- endset -%}
  {{ return(run_query(query).columns[0].values() | sort | list) }}
{% endmacro %}


{#- Post-hooks of a partition-overwrite model: record the manifest it read and the identity map it used. -#}
{% macro record_lake_days_built() %}
  {%- if target.type != 'spark' %}{{ return('') }}{% endif -%}
  insert overwrite table ops.lake_days_built partition (model = {{ sql_string(this.identifier) }})
  select event_date, written_at from {{ pinned_lake_days() }}
{% endmacro %}

{% macro record_identity_built() %}
  {%- if target.type != 'spark' %}{{ return('') }}{% endif -%}
  insert overwrite table ops.identity_built partition (model = {{ sql_string(this.identifier) }})
  select anonymous_id, user_id from {{ ref('int_identity_map') }}
{% endmacro %}


{#- `<column> in (<the days lake_days_to_build() returned>)` (nothing to rebuild: `false`), for a day-partitioned
    model's incremental run on Spark; lake_days_filter() is the same as a where clause. -#}
{% macro lake_days_condition(column, lake_days) -%}
  {%- if lake_days -%}
    {{ column }} in ({% for day in lake_days %}date '{{ day }}'{{ ', ' if not loop.last }}{% endfor %})
  {%- else -%}
    false
  {%- endif -%}
{%- endmacro %}

{% macro lake_days_filter(column, lake_days) %}where {{ lake_days_condition(column, lake_days) }}{% endmacro %}
