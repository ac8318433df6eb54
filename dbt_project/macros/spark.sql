{#-
  The `spark` targets: the same models built by Apache Spark over the Parquet lake (EVENTS_LAKE_URL).

  Sources: raw.events is a view over the lake's events table (<lake>/events/event_date=YYYY-MM-DD/*.parquet,
  written by the loader); ops.person_archive_history is an empty table (the lake keeps every day, nothing is
  archived out of it). Models: Parquet tables at <lake>/<folder>/<model> (marts at <lake>/marts/<model>/), so
  Athena, Trino or DuckDB read the marts without Spark.

  Plain Parquet tables have no row-level updates, so on Spark a model is incremental only by whole partitions or
  by merge-on-read. A model that sets `lake_partition_overwrite=true` is rebuilt, on an incremental run, for the
  partitions it declares, and those partitions alone are overwritten (Spark's dynamic partition overwrite); every other
  partition's files stay as they are (`lake_partition_by` names the column where the model is not partitioned on
  PostgreSQL). What each declares:
  - fct_events, int_event_days, int_person_days, int_funnel_events, int_event_property_days (by their date) and
    int_mrr_changes (by changed_date): the days whose lake file changed since the model last read them (the lake's
    manifest, ops.lake_days, against ops.lake_days_built) and, but for int_event_property_days, the days of
    re-stitched visitors' events (lake_days_to_build()); fct_sessions the dates its sessions can start on around those days (lake_session_days());
  - int_active_coverage and daily_metrics (by date, running sums): every date from the first such day on
    (lake_rewrite_from());
  - fct_funnel_steps, fct_funnel_breakdown (by cohort_date), revenue_monthly (by month) and fct_cohort_retention (by
    cohort_start): the values their merge-on-read source logged as changed (lake_touched_partitions()).
  The person-keyed models and the identity map (config `lake_merge_key`) are merge-on-read (macros/lake_merge.sql).
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

{#- An incremental run that edits the model's table in place: deletes and inserts rows (PostgreSQL). The pre-hooks
    that delete what a run recomputes use it; an incremental run on Spark overwrites whole partitions instead. -#}
{% macro is_incremental_in_place() %}
  {{ return(is_incremental() and target.type != 'spark') }}
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
    partitioned by ({% for c in partition_by %}{{ adapter.quote(c) }}{{ ', ' if not loop.last }}{% endfor %})
    {%- endif %}
    {{ location_clause() }}
    as
    {{ compiled_code }}
  {%- endcall -%}
  {{ run_hooks(post_hooks) }}
  {{ return({'relations': [target_relation]}) }}
{% endmacro %}

{#- An incremental run of a `lake_partition_overwrite` model: what the model selects is cached, then written by INSERT
    OVERWRITE … PARTITION (<column>) in dynamic mode, so only the partitions that appear in it are replaced; then every
    partition the model rebuilds (declare_lake_partitions()) that came out empty, and every day the lake no longer has
    (lake_partitions_removed()), is overwritten with nothing: a rebuilt partition that lost its last row does not keep
    its old files. -#}
{% macro overwrite_lake_partitions() %}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set partition_by = config.get('lake_partition_by') or config.get('partition_by') -%}
  {%- set column = partition_by['column'] if partition_by is mapping else partition_by -%}
  {%- set columns = adapter.get_columns_in_relation(target_relation) -%}
  {%- set new_rows = this.identifier ~ '__new_rows' -%}

  {{ run_hooks(pre_hooks) }}
  {%- do run_query("uncache table if exists " ~ new_rows) -%}
  {%- call statement('new_rows') -%}
    create or replace temporary view {{ new_rows }} as
    {{ compiled_code }}
  {%- endcall -%}
  {%- do run_query("cache table " ~ new_rows) -%}
  {%- call statement('main') -%}
    insert overwrite table {{ target_relation }} partition ({{ adapter.quote(column) }})
    select {% for c in columns %}{{ adapter.quote(c.name) }}{{ ', ' if not loop.last }}{% endfor %}
    from {{ new_rows }}
  {%- endcall -%}
  {%- set present = run_query(
      "select distinct cast(" ~ adapter.quote(column) ~ " as string) from " ~ new_rows).columns[0].values() -%}
  {%- for value in (declared_lake_partitions() + lake_partitions_removed()) | unique | sort
      if value not in present -%}
    {%- call statement('remove_' ~ loop.index) -%}
      insert overwrite table {{ target_relation }} partition ({{ adapter.quote(column) }} = '{{ value }}')
      select {% for c in columns if c.name != column %}cast(null as {{ c.data_type }}){{ ', ' if not loop.last }}{% endfor %}
      where false
    {%- endcall -%}
  {%- endfor -%}
  {%- do run_query("uncache table if exists " ~ new_rows) -%}
  {{ run_hooks(post_hooks) }}
  {{ return({'relations': [target_relation]}) }}
{% endmacro %}


{#- The partitions a `lake_partition_overwrite` model's incremental run rebuilds, as ISO dates, kept for its
    materialization in a temporary view <model>__rebuilt: lake_days_to_build() declares its days, and a model whose
    partitions are not event days (fct_sessions) declares its own after it. -#}
{% macro declare_lake_partitions(values) %}
  {%- set rows = [] -%}
  {%- for value in values -%}{%- do rows.append("('" ~ value ~ "')") -%}{%- endfor -%}
  {%- do run_query(
      "create or replace temporary view " ~ this.identifier ~ "__rebuilt as "
      ~ ("select * from values " ~ rows | join(', ') ~ " as rebuilt (value)" if rows
         else "select cast(null as string) as value where false")) -%}
{% endmacro %}

{% macro declared_lake_partitions() %}
  {%- set found = run_query("show tables like '" ~ this.identifier ~ "__rebuilt'") -%}
  {%- if found | length == 0 -%}{{ return([]) }}{%- endif -%}
  {{ return(run_query("select value from " ~ this.identifier ~ "__rebuilt").columns[0].values() | list) }}
{% endmacro %}

{#- Both materializations put the model's connection in dynamic partition-overwrite mode first (a thrift or http
    target gives each thread a session of its own): INSERT OVERWRITE … PARTITION (<column>) then replaces only the
    partitions it writes, in the model itself and in its record hooks (record_lake_days_built()). -#}
{% materialization incremental, adapter='spark' %}
  {%- do run_query("set spark.sql.sources.partitionOverwriteMode=dynamic") -%}
  {%- if config.get('lake_merge_key') -%}
    {{ return(build_merged_lake_table()) }}
  {%- endif -%}
  {%- if is_incremental() and config.get('lake_partition_overwrite', false) -%}
    {{ return(overwrite_lake_partitions()) }}
  {%- endif -%}
  {{ return(build_lake_table()) }}
{% endmaterialization %}

{% materialization table, adapter='spark' %}
  {%- do run_query("set spark.sql.sources.partitionOverwriteMode=dynamic") -%}
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
  {#- the bookkeeping tables, as (name, columns, partition column): the lake's manifest (warehouse/lake.py writes it)
      and what each partition-overwrite model last read of it; the identity map's log of changed pairs and when each
      model that reads the map last used it; the funnel definitions each funnel model's rows were built from
      (macros/funnels.sql); the values of a column the merge-on-read models' builds changed and when each aggregate
      over them last read that log (macros/lake_merge.sql: log_touched_values; lake_touched_partitions below); when
      each merge-on-read model was last built, and its key -#}
  {%- set tables = [
      ('lake_days', 'event_date date, row_count bigint, max_load_id string, written_at timestamp', none),
      ('lake_days_built', 'event_date date, written_at timestamp, model string', 'model'),
      ('identity_changes',
       'anonymous_id string, user_id string, previous_user_id string, changed_at timestamp, changed_date date',
       'changed_date'),
      ('identity_used', 'used_at timestamp, model string', 'model'),
      ('funnel_definitions_built', 'definitions string, model string', 'model'),
      ('lake_merge_touched', 'value string, built_at timestamp, model string', 'model'),
      ('lake_touched_read', 'read_at timestamp, model string', 'model'),
      ('lake_merge_builds', 'built_at timestamp, merge_key string, model string', 'model'),
  ] -%}
  {%- for name, columns, partition in tables -%}
    {%- do run_query(
      "create table if not exists ops." ~ name ~ " (" ~ columns ~ ") using parquet"
      ~ (" partitioned by (" ~ partition ~ ")" if partition else "")
      ~ " location '" ~ lake ~ "/ops/" ~ name ~ "'") -%}
  {%- endfor -%}
  {{ drop_lake_tables_partitioned_otherwise() }}
{%- endmacro %}


{#- A partition-overwrite model's table built by an earlier version, unpartitioned or partitioned by another column
    (revenue_monthly, fct_cohort_retention, daily_metrics and int_active_coverage were whole tables): dropped at the
    start of the run, so the model builds in full, partitioned, and its next runs are incremental. Without it, its
    first incremental run would fail writing partitions the table does not have. -#}
{% macro drop_lake_tables_partitioned_otherwise() %}
  {%- if not execute -%}{{ return('') }}{%- endif -%}
  {%- for node in graph.nodes.values()
      if node.resource_type == 'model' and node.config.get('lake_partition_overwrite')
      and node.config.get('materialized') == 'incremental' and node.config.get('enabled', true) -%}
    {%- set relation = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias) -%}
    {%- if relation is not none -%}
      {%- set expected = node.config.get('lake_partition_by') or node.config.get('partition_by') -%}
      {%- set expected = expected['column'] if expected is mapping else expected -%}
      {#- the partition columns, from what dbt's relation cache read (SHOW TABLE EXTENDED: "Partition Columns:
          [`c`]"); a DESCRIBE only where it read nothing -#}
      {%- set partitioned = [] -%}
      {%- set information = relation.information or '' -%}
      {%- if 'Partition Columns: [' in information -%}
        {%- for name in information.split('Partition Columns: [', 1)[1].split(']', 1)[0].split(',') -%}
          {%- do partitioned.append(name.strip().strip('`')) -%}
        {%- endfor -%}
      {%- elif not information -%}
        {%- set seen = [] -%}
        {%- for row in run_query("describe table " ~ relation).rows -%}
          {%- if seen and row[0] and not row[0].startswith('#') -%}{%- do partitioned.append(row[0]) -%}{%- endif -%}
          {%- if row[0] == '# Partition Information' -%}{%- do seen.append(true) -%}{%- endif -%}
        {%- endfor -%}
      {%- endif -%}
      {%- if partitioned != [expected] -%}
        {{ log("Building " ~ node.alias ~ " in full: its table in the lake is "
               ~ ("partitioned by " ~ partitioned | join(", ") if partitioned else "not partitioned")
               ~ ", this version partitions it by " ~ expected ~ ".", info=true) }}
        {%- do adapter.drop_relation(relation) -%}
      {%- endif -%}
    {%- endif -%}
  {%- endfor -%}
{% endmacro %}


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
    anonymous ids mapped to another person since this model last used the map (ops.identity_changes), and the days
    from var start_date to var end_date (exclusive) when the orchestrator passes them; with `every_day`, every day of
    the lake (int_funnel_events after a funnel's definition changed); without `remapped`, not the days of re-mapped ids
    (int_identity_map, which makes that log). None on PostgreSQL, and on a full build. -#}
{#- The name of the view pinning the lake's manifest for this model's build. -#}
{% macro pinned_lake_days() %}{{ return(this.identifier ~ '__lake_days') }}{% endmacro %}

{% macro lake_days_to_build(every_day=false, remapped=true) %}
  {%- if target.type != 'spark' or not execute -%}{{ return(none) }}{%- endif -%}
  {%- set pinned = pinned_lake_days() -%}
  {%- do run_query("uncache table if exists " ~ pinned) -%}
  {%- do run_query("create or replace temporary view " ~ pinned ~ " as select event_date, written_at from ops.lake_days") -%}
  {%- do run_query("cache table " ~ pinned) -%}
  {%- if not is_incremental() and not lake_merge_incremental() -%}{{ return(none) }}{%- endif -%}
  {%- set model = sql_string(this.identifier) -%}
  {%- set query -%}
    select cast(days.event_date as string) as event_date from {{ pinned }} as days
    left anti join ops.lake_days_built as built
        on built.model = {{ model }} and built.event_date = days.event_date and built.written_at = days.written_at
    {%- if remapped %}
    union
    select distinct cast(events.event_date as string) from {{ source('raw', 'events') }} as events
    left semi join ({{ changed_identity_pairs() }}) as remapped on events.anonymous_id = remapped.anonymous_id
    {%- endif %}
    {%- if every_day %}
    union
    select cast(days.event_date as string) from {{ pinned }} as days
    {%- elif var('start_date', none) and var('end_date', none) %}
    union
    select cast(days.event_date as string) from {{ pinned }} as days
    where days.event_date >= date '{{ var("start_date") }}' and days.event_date < date '{{ var("end_date") }}'
    {%- endif %}
  {%- endset -%}
  {%- set days = run_query(query).columns[0].values() | sort | list -%}
  {%- do declare_lake_partitions(days) -%}
  {{ return(days) }}
{% endmacro %}


{#- The partitions this model last built for days the lake no longer has (every event of the day erased); none for a
    model whose partitions are not the lake's days (it pinned no manifest: fct_funnel_steps' cohort dates). -#}
{% macro lake_partitions_removed() %}
  {%- if run_query("show tables like '" ~ pinned_lake_days() ~ "'") | length == 0 -%}{{ return([]) }}{%- endif -%}
  {%- set query -%}
    select cast(built.event_date as string) from ops.lake_days_built as built
    left anti join {{ pinned_lake_days() }} as days on built.event_date = days.event_date
    where built.model = {{ sql_string(this.identifier) }}
  {%- endset -%}
  {{ return(run_query(query).columns[0].values() | sort | list) }}
{% endmacro %}


{#- The first date a model partitioned by date rewrites on an incremental Spark run, when its row for a date depends on
    the days up to it (running sums: int_active_coverage's WAU and MAU, daily_metrics' MRR): the earliest lake day
    rewritten since the model last read the lake's manifest (lake_days_to_build(): new, late or erased days, the days of
    re-mapped ids) or gone from it, moved by `shift` days, as {'from': ISO date}; every stored partition from it on is
    declared (so those beyond the new last date are emptied). {'from': none} when no day changed (nothing to write).
    None on PostgreSQL and on a full build. -#}
{% macro lake_rewrite_from(column, shift=0) %}
  {%- set lake_days = lake_days_to_build() -%}
  {%- if lake_days is none -%}{{ return(none) }}{%- endif -%}
  {%- set changed = (lake_days + lake_partitions_removed()) | sort | list -%}
  {%- if not changed -%}
    {%- do declare_lake_partitions([]) -%}
    {{ return({'from': none}) }}
  {%- endif -%}
  {%- set first = (modules.datetime.date.fromisoformat(changed[0]) + modules.datetime.timedelta(days=shift)).isoformat() -%}
  {%- set stored = run_query(
      "select distinct cast(" ~ adapter.quote(column) ~ " as string) from " ~ this ~ " where " ~ adapter.quote(column)
      ~ " >= date '" ~ first ~ "'"
  ).columns[0].values() -%}
  {%- do declare_lake_partitions(stored | sort | list) -%}
  {{ return({'from': first}) }}
{% endmacro %}


{#- Post-hooks of a partition-overwrite model: record the manifest it read and the identity map it used. The model's
    partition is written in dynamic mode (the model column selected, not a static PARTITION value; the materialization
    set the mode): each write then
    stages its files in a folder of its own, where static writes of two models running at once would share the
    table's _temporary folder and break each other's commit. -#}
{% macro record_lake_days_built() %}
  {%- if target.type != 'spark' %}{{ return('') }}{% endif -%}
  insert overwrite table ops.lake_days_built partition (model)
  select event_date, written_at, {{ sql_string(this.identifier) }} as model from {{ pinned_lake_days() }}
{% endmacro %}

{#- The identity map's changes since this model last used the map, as (anonymous_id, user_id) pairs: for every
    anonymous id int_identity_map logged a change of (ops.identity_changes, macros/lake_merge.sql), its new pair and
    its old one (user_id null for an id left with no pair, or that had none). Since the model's record in
    ops.identity_used (record_identity_built()); every logged change for a model without one. -#}
{% macro changed_identity_pairs() -%}
  {%- set since = identity_used_at() -%}
  {%- set recent -%}
    ops.identity_changes
    {%- if since is not none %}
    where changed_date >= cast(cast('{{ since }}' as timestamp) as date) and changed_at > cast('{{ since }}' as timestamp)
    {%- endif %}
  {%- endset -%}
  select anonymous_id, user_id from {{ recent }}
  union all
  select anonymous_id, previous_user_id from {{ recent }}
{%- endmacro %}

{#- When this model last used the identity map (ops.identity_used), as text, or none. -#}
{% macro identity_used_at() %}
  {%- if not execute -%}{{ return(none) }}{%- endif -%}
  {%- set found = run_query(
      "select cast(max(used_at) as string) from ops.identity_used where model = " ~ sql_string(this.identifier)) -%}
  {{ return(found.columns[0].values()[0]) }}
{% endmacro %}

{#- Post-hook of the models that read the map on Spark: this run's time, as when the model last used it (the map is
    built before them in a run, and logs its changes at the run's time). -#}
{% macro record_identity_built() %}
  {%- if target.type != 'spark' %}{{ return('') }}{% endif -%}
  insert overwrite table ops.identity_used partition (model)
  select cast('{{ run_started_at.isoformat() }}' as timestamp) as used_at, {{ sql_string(this.identifier) }} as model
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


{#- fct_sessions' partitions (session_date) on an incremental Spark run. A session depends only on the activity events
    of its chain (events of one person less than the timeout apart), so when the events of days D change (the days
    lake_days_to_build() returns, and days the lake no longer has), the sessions that can change start on D - 1 (a
    session running past midnight into D), D, or D + 1 (one that a late event on D now joins to an earlier one). Those
    partitions (`rebuild`) are recomputed from the events of the days around them (`read`: one more day each side, so
    a session starting in them is whole and its first event is known to start it), and only they are overwritten.
    That is exact unless a chain touching them lasts close to a day (then a chain reaching past the days read could
    change too): a chain lasting 24 hours less twice the timeout or more sends the run back to every partition
    (none is returned: read every event). -#}
{% macro lake_session_days(lake_days) %}
  {%- if lake_days is none or not execute -%}{{ return(none) }}{%- endif -%}
  {%- set day = modules.datetime.timedelta(days=1) -%}
  {%- set changed = [] -%}
  {%- for value in lake_days + lake_partitions_removed() -%}
    {%- do changed.append(modules.datetime.date.fromisoformat(value)) -%}
  {%- endfor -%}
  {%- set rebuild = [] -%}
  {%- set read = [] -%}
  {%- for date in changed -%}
    {%- for offset in [-1, 0, 1] -%}{%- do rebuild.append((date + offset * day).isoformat()) -%}{%- endfor -%}
    {%- for offset in [-2, -1, 0, 1, 2] -%}{%- do read.append((date + offset * day).isoformat()) -%}{%- endfor -%}
  {%- endfor -%}
  {%- set rebuild = rebuild | unique | sort | list -%}
  {%- set read = read | unique | sort | list -%}
  {%- set timeout_minutes = var('session_timeout_minutes') | int -%}
  {%- set long_chains = 0 -%}
  {%- if rebuild -%}
    {%- set query -%}
      with activity as (
          select person_id, message_id, event_at, event_date
          from {{ ref('fct_events') }}
          where is_activity and {{ lake_days_condition('event_date', read) }}
      ),
      {{ session_numbering_ctes('activity') }}
      select count(*) from (
          select person_id, session_number
          from numbered
          group by person_id, session_number
          having max(case when {{ lake_days_condition('event_date', rebuild) }} then 1 else 0 end) = 1
             and max(event_at) - min(event_at) >= interval '{{ 24 * 60 - 2 * timeout_minutes }} minutes'
      ) as long_chains
    {%- endset -%}
    {%- set long_chains = run_query(query).columns[0].values()[0] if 24 * 60 > 2 * timeout_minutes else 1 -%}
  {%- endif -%}
  {%- if long_chains > 0 -%}
    {%- set built = run_query("select distinct cast(session_date as string) from " ~ this).columns[0].values() -%}
    {%- do declare_lake_partitions((built | list + rebuild) | unique | sort | list) -%}
    {{ return(none) }}
  {%- endif -%}
  {%- do declare_lake_partitions(rebuild) -%}
  {{ return({'rebuild': rebuild, 'read': read}) }}
{% endmacro %}


{#- The partitions (ISO dates of `column`) an aggregate over a merge-on-read model rewrites on an incremental Spark run
    (fct_funnel_steps and fct_funnel_breakdown by cohort_date, revenue_monthly by month, fct_cohort_retention by
    cohort_start), declared for the materialization: the values `source`
    logged as changed since this model last read its log (ops.lake_merge_touched since ops.lake_touched_read);
    with `calendar`, the calendar's dates this model has no partition for and its partitions outside the calendar
    (days added or gone); with `extra`, the values (a text column) that query selects (fct_cohort_retention: the
    cohorts whose last period is no longer the last day's). None (every partition: the calendar's and this model's)
    when `source` was built in full or
    scrubbed by an erasure since, or this model never recorded a read. None on PostgreSQL and on a full build. -#}
{% macro lake_touched_partitions(source, column, calendar=none, extra=none) %}
  {%- if target.type != 'spark' or not execute or not is_incremental() -%}{{ return(none) }}{%- endif -%}
  {%- set read_at = run_query(
      "select cast(max(read_at) as string) from ops.lake_touched_read where model = " ~ sql_string(this.identifier)
  ).columns[0].values()[0] -%}
  {%- set touched = [] -%}
  {%- if read_at is not none -%}
    {%- set touched = run_query(
        "select distinct value from ops.lake_merge_touched where model = " ~ sql_string(source.identifier)
        ~ " and built_at > cast('" ~ read_at ~ "' as timestamp)").columns[0].values() | list -%}
  {%- endif -%}
  {%- set built = "select distinct cast(" ~ column ~ " as string) as value from " ~ this -%}
  {%- set expected = "select cast(" ~ column ~ " as string) as value from (" ~ calendar ~ ") as calendar"
      if calendar else none -%}
  {%- if read_at is none or none in touched -%}
    {%- set every = run_query(built ~ (" union " ~ expected if expected else "")).columns[0].values() -%}
    {%- do declare_lake_partitions(every | reject('none') | sort | list) -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set edges = [] -%}
  {%- if expected -%}
    {%- set edges = run_query(
        "(" ~ expected ~ " except " ~ built ~ ") union (" ~ built ~ " except " ~ expected ~ ")").columns[0].values() -%}
  {%- endif -%}
  {%- set more = run_query(extra).columns[0].values() | list if extra else [] -%}
  {%- set values = (touched + edges | list + more) | reject('none') | unique | sort | list -%}
  {%- do declare_lake_partitions(values) -%}
  {{ return(values) }}
{% endmacro %}

{#- Post-hook of those aggregates on Spark: this run's time, as when they last read the log. -#}
{% macro record_lake_touched_read() %}
  {%- if target.type != 'spark' %}{{ return('') }}{% endif -%}
  insert overwrite table ops.lake_touched_read partition (model)
  select cast('{{ run_started_at.isoformat() }}' as timestamp) as read_at, {{ sql_string(this.identifier) }} as model
{% endmacro %}
