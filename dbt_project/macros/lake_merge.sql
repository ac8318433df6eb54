{#-
  Merge-on-read for the person-keyed models on Spark (config `lake_merge_key`: the column a person's rows are keyed
  on, e.g. person_id), where plain Parquet has no row-level updates and the persons an hour changes are spread over
  every file of the table.

  Each such model is two Parquet tables and a view in the metastore:
    <model>__base   at <location_root>/<model>/          every key's rows as of the last compaction
    <model>__delta  at <location_root>/<model>__delta/   the rows of the keys recomputed since: their current rows,
                                                         or one row with _merge_deleted = true for a key that has
                                                         none any more (a person whose events all moved or went)
    <model>         a view: the base's rows of keys not in the delta, then the delta's live rows
  Downstream models, the dbt tests and the asset checks read the view; a reader of the lake's folders merges the two
  the same way, on the key ops.lake_merge_builds records (warehouse/lake.py: read_lake_table; `analyticspro
  materialize --engine spark` prints the DuckDB query).

  A full build (or --full-refresh, or the first build of a table that was built whole before) writes the base and an
  empty delta. An incremental run recomputes the keys of lake_merge_scope(): the persons with fct_events rows written
  since the model's last build (fct_events rewrites whole days: every person active on a rewritten day), and both
  persons of every anonymous id whose mapping changed since (changed_identity_pairs(): int_identity_map's log). The
  model's SQL reads only those persons' events (lake_merge_filter()), the result replaces their rows in the delta, and
  the delta is written again: the hour writes the persons changed since the last compaction, never the base. When the
  delta holds more rows than var('lake_compact_fraction') of the base, the run compacts: the view's rows become the
  base and the delta empties (a copy of the table, no recomputation). Spark cannot overwrite a table it is reading,
  so each rewrite goes through a staging table (<model>__staging) first.

  A model with config `lake_merge_touched` (a column: int_funnel_persons' and int_funnel_breakdown_persons'
  cohort_date) logs, per build, the values of that column in the recomputed keys' rows that changed, before and
  after (ops.lake_merge_touched; one null value for a full build, or an erasure: every value), so the aggregates
  over it (fct_funnel_steps, fct_funnel_breakdown) rewrite only those partitions (lake_touched_partitions() in
  spark.sql).

  Exact because a person-keyed model's rows for a key depend only on that key's events and person-keyed rows (fct_mrr's
  also on the last month: in a new month it recomputes everyone, mrr_new_month()): recomputing a superset of the
  changed keys from their whole history gives what a full build gives them. An erasure needs no scope: `analyticspro
  forget` removes the person's rows from the base and delta files themselves.
-#}

{#- Whether this Spark build of a merge-on-read model is incremental: its base and delta exist, the relation under
    the model's name is the merging view, and no full refresh was asked for. False on PostgreSQL. -#}
{% macro lake_merge_incremental() %}
  {%- if target.type != 'spark' or not config.get('lake_merge_key') or not execute or flags.FULL_REFRESH -%}
    {{ return(false) }}
  {%- endif -%}
  {%- set base = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier ~ '__base') -%}
  {%- set delta = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier ~ '__delta') -%}
  {%- set current = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
  {%- if base is none or delta is none or current is none or not current.is_view -%}{{ return(false) }}{%- endif -%}
  {#- the funnel models: a full build when a funnel's definition changed (every person's rows of it change) -#}
  {%- set kind = config.get('lake_merge_kind', 'persons') -%}
  {%- if kind in ('funnels', 'funnel_breakdowns') -%}
    {%- set configured = {} -%}
    {%- for name, hash in configured_funnel_definitions(breakdowns_only=kind == 'funnel_breakdowns') -%}
      {%- do configured.update({name: hash}) -%}
    {%- endfor -%}
    {{ return(recorded_funnel_definitions() == configured) }}
  {%- endif -%}
  {{ return(true) }}
{% endmacro %}


{#- In a merge-on-read model's SQL, where it reads a person's events (or another person-keyed table): on an
    incremental Spark build, `<column> in (the keys this run recomputes)`; `true` otherwise. -#}
{% macro lake_merge_filter(column) -%}
  {%- if lake_merge_incremental() -%}
    {{ column }} in (select scope.merge_key from {{ this.identifier }}__scope as scope)
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}


{#- When this merge-on-read model was last built (the built_at() of that run, ops.lake_merge_builds), or none. -#}
{% macro lake_merge_last_built() %}
  {%- set found = run_query(
      "select cast(max(built_at) as string) from ops.lake_merge_builds where model = " ~ sql_string(this.identifier)) -%}
  {{ return(found.columns[0].values()[0]) }}
{% endmacro %}


{#- The keys an incremental run recomputes, as the SQL of one column `merge_key`, by the model's config
    `lake_merge_kind`:
      persons (the default): the persons with fct_events rows written since the model's last build, and both persons of
        every anonymous id whose mapping changed since (changed_identity_pairs()); every person of fct_events with no
        record of the last build;
      funnels, funnel_breakdowns (int_funnel_persons, int_funnel_breakdown_persons): as persons, and a full build
        when a funnel's definition (or breakdowns) changed since the last build (lake_merge_incremental());
      identity (int_identity_map): the anonymous ids with a pair event (both ids) on the lake days written since the
        model's last build (lake_days_to_build() declared them), and those whose stored pair is on such a day or on a
        day the lake no longer has. -#}
{% macro lake_merge_scope() %}
  {%- if config.get('lake_merge_kind', 'persons') == 'identity' -%}
    {%- set days = declared_lake_partitions() -%}
    {%- set stale = (days + lake_partitions_removed()) | unique | list -%}
  select anonymous_id as merge_key from {{ ref('stg_segment__events') }}
  where anonymous_id is not null and user_id is not null and {{ lake_days_condition('event_date', days) }}
  union
  select anonymous_id from {{ this }} where {{ lake_days_condition('cast(stitched_at as date)', stale) }}
  {%- else -%}
    {%- set since = lake_merge_last_built() -%}
  with pairs as ({{ changed_identity_pairs() }})
  select person_id as merge_key from {{ ref('fct_events') }}
    {%- if since is not none %}
  where _built_at > cast('{{ since }}' as timestamp)
    {%- endif %}
  union
  select anonymous_id from pairs
  union
  select user_id from pairs where user_id is not null
  {%- endif %}
{% endmacro %}


{#- For int_identity_map's incremental Spark build, at compile time: the recomputed anonymous ids whose stored pair
    is on one of `stale_days` (rewritten, or gone from the lake) and whose pair event is no longer among that day's
    events, cached as <model>__lost; whether there is any (then their pairs of every day are read). -#}
{% macro identity_pairs_lost(lake_days, stale_days) %}
  {%- set lost = this.identifier ~ '__lost' -%}
  {%- do run_query("uncache table if exists " ~ lost) -%}
  {%- do run_query(
      "cache table " ~ lost ~ " as select stored.anonymous_id from " ~ this ~ " as stored"
      ~ " where " ~ lake_days_condition('cast(stored.stitched_at as date)', stale_days)
      ~ " and not exists (select 1 from " ~ ref('stg_segment__events') ~ " as events"
      ~ " where " ~ lake_days_condition('events.event_date', lake_days)
      ~ " and events.message_id = stored.message_id and events.anonymous_id = stored.anonymous_id"
      ~ " and events.user_id is not null)") -%}
  {{ return(run_query("select count(*) from " ~ lost).columns[0].values()[0] > 0) }}
{% endmacro %}


{#- int_identity_map on Spark: log in ops.identity_changes, at this run's time, every anonymous id whose user id the
    build changes (new ids, moved ids, and ids left with no pair: user_id null), with the user id it had
    (previous_user_id); `new_rows` the recomputed ids' rows, `previous` the relation holding the rows before (both
    read before anything is written). The models that read the map recompute the persons and days of the pairs logged
    since they last used it (changed_identity_pairs()). -#}
{% macro log_identity_changes(new_rows, previous, scope=none) %}
  {%- set at = "cast('" ~ run_started_at.isoformat() ~ "' as timestamp)" -%}
  insert into table ops.identity_changes
  select
      coalesce(now.anonymous_id, before.anonymous_id) as anonymous_id,
      now.user_id,
      before.user_id as previous_user_id,
      {{ at }} as changed_at,
      cast({{ at }} as date) as changed_date
  from {{ new_rows }} as now
  full outer join (
      select anonymous_id, user_id from {{ previous }}
      {%- if scope %}
      where anonymous_id in (select scope.merge_key from {{ scope }} as scope)
      {%- endif %}
  ) as before on now.anonymous_id = before.anonymous_id
  where not (now.user_id <=> before.user_id)
{% endmacro %}


{#- A merge-on-read model with config `lake_merge_touched`: log in ops.lake_merge_touched the values of that column
    this build changes, at this run's time: on an incremental build (before its delta is written) those of the rows
    of the recomputed keys (the scope's, and any the build wrote rows for: fct_mrr in a new month recomputes
    everyone) that differ, before or after, in any of `columns` (all but _built_at: a person recomputed with the same
    rows changes no aggregate); with `all_values` (a full build), one null value, meaning every value.
    A full build replaces the model's log (what came before it is covered). -#}
{% macro log_touched_values(all_values, columns=[]) %}
  {%- set column = config.get('lake_merge_touched') -%}
  {%- set key = config.get('lake_merge_key') -%}
  {%- set at = "cast('" ~ run_started_at.isoformat() ~ "' as timestamp)" -%}
  {%- if all_values -%}
  insert overwrite table ops.lake_merge_touched partition (model)
  select cast(null as string) as value, {{ at }} as built_at, {{ sql_string(this.identifier) }} as model
  {%- else -%}
    {%- set compared = [] -%}
    {%- for name in columns if name != '_built_at' -%}{%- do compared.append(adapter.quote(name)) -%}{%- endfor -%}
  {#- one pass over both sides (a row on one side only is a change: EXCEPT both ways, grouped once) -#}
  insert into table ops.lake_merge_touched partition (model)
  select distinct cast({{ column }} as string) as value, {{ at }} as built_at, {{ sql_string(this.identifier) }} as model
  from (
      select {{ compared | join(', ') }}, min(side) as first_side, max(side) as last_side
      from (
          select {{ compared | join(', ') }}, 0 as side from {{ this.incorporate(type='view') }} as stored
          left semi join (
              select scope.merge_key as touched_key from {{ this.identifier }}__scope as scope
              union all
              select recomputed.{{ key }} from {{ this.identifier }}__new_rows as recomputed
          ) as touched on stored.{{ key }} = touched.touched_key
          union all
          select {{ compared | join(', ') }}, 1 as side from {{ this.identifier }}__new_rows
      ) as both_sides
      group by {{ compared | join(', ') }}
  ) as versions
  where first_side = last_side
  {%- endif %}
{% endmacro %}


{#- The materialization's work for a merge-on-read model on Spark: see the top of this file. -#}
{% macro build_merged_lake_table() %}
  {%- set key = config.get('lake_merge_key') -%}
  {%- set root = config.get('location_root') -%}
  {%- set name = this.identifier -%}
  {%- set base = api.Relation.create(database=this.database, schema=this.schema, identifier=name ~ '__base', type='table') -%}
  {%- set delta = api.Relation.create(database=this.database, schema=this.schema, identifier=name ~ '__delta', type='table') -%}
  {%- set staging = api.Relation.create(database=this.database, schema=this.schema, identifier=name ~ '__staging', type='table') -%}
  {%- set view = this.incorporate(type='view') -%}
  {%- set incremental = lake_merge_incremental() -%}
  {%- set identity = config.get('lake_merge_kind', 'persons') == 'identity' -%}
  {%- set previous = api.Relation.create(database=this.database, schema=this.schema, identifier=name ~ '__previous', type='table') -%}

  {{ run_hooks(pre_hooks) }}
  {%- if not incremental -%}
    {#- a full build: the base from the model's SQL, an empty delta, the view over them -#}
    {%- set current = adapter.get_relation(database=this.database, schema=this.schema, identifier=name) -%}
    {%- if identity and current is not none -%}
      {#- the identity map's pairs before this build, to log what it changes (a copy: its files are rewritten) -#}
      {%- do run_query("drop table if exists " ~ previous) -%}
      {%- do run_query(
          "create table " ~ previous ~ " using parquet location '" ~ root ~ "/" ~ name ~ "__previous' as "
          ~ "select anonymous_id, user_id from " ~ current) -%}
    {%- endif -%}
    {%- if current is not none -%}{{ adapter.drop_relation(current) }}{%- endif -%}
    {%- for relation in [base, delta, staging] -%}
      {%- do run_query("drop table if exists " ~ relation) -%}
    {%- endfor -%}
    {%- call statement('main') -%}
      create table {{ base }} using parquet location '{{ root }}/{{ name }}' as
      {{ compiled_code }}
    {%- endcall -%}
    {%- do run_query(
        "create table " ~ delta ~ " using parquet location '" ~ root ~ "/" ~ name ~ "__delta' as "
        ~ "select *, false as _merge_deleted from " ~ base ~ " where false") -%}
    {%- do run_query(
        "create table " ~ staging ~ " using parquet location '" ~ root ~ "/" ~ name ~ "__staging' as "
        ~ "select * from " ~ delta ~ " where false") -%}
    {%- if config.get('lake_merge_touched') -%}
      {%- do run_query(log_touched_values(all_values=true)) -%}
    {%- endif -%}
    {%- if identity and current is not none -%}
      {%- do run_query(log_identity_changes(base, previous)) -%}
      {#- emptied (dropping a table at a location keeps its files) -#}
      {%- do run_query(
          "insert overwrite table " ~ previous ~ " select cast(null as string), cast(null as string) where false") -%}
      {%- do run_query("drop table if exists " ~ previous) -%}
    {%- endif -%}
  {%- else -%}
    {%- set columns = adapter.get_columns_in_relation(base) | map(attribute='name') | list -%}
    {%- set quoted = [] -%}
    {%- for column in columns -%}{%- do quoted.append(adapter.quote(column)) -%}{%- endfor -%}
    {%- do run_query("uncache table if exists " ~ name ~ "__scope") -%}
    {%- do run_query("create or replace temporary view " ~ name ~ "__scope as " ~ lake_merge_scope()) -%}
    {%- do run_query("cache table " ~ name ~ "__scope") -%}
    {%- do run_query("uncache table if exists " ~ name ~ "__new_rows") -%}
    {%- call statement('new_rows') -%}
      create or replace temporary view {{ name }}__new_rows as
      {{ compiled_code }}
    {%- endcall -%}
    {%- do run_query("cache table " ~ name ~ "__new_rows") -%}
    {#- the next delta: the recomputed keys' rows (a deleted marker for a key without any), and the delta's rows of
        every other key -#}
    {%- call statement('main') -%}
      insert overwrite table {{ staging }}
      select {{ quoted | join(', ') }}, false as _merge_deleted from {{ name }}__new_rows
      union all
      select {% for column in columns %}{{ 'scope.merge_key' if column == key else 'null' }}{{ ', ' }}{% endfor %}true
      from {{ name }}__scope as scope
      left anti join {{ name }}__new_rows as new_rows on new_rows.{{ key }} = scope.merge_key
      union all
      select {{ quoted | join(', ') }}, _merge_deleted from {{ delta }} as delta
      left anti join {{ name }}__scope as scope on delta.{{ key }} = scope.merge_key
      -- a model may recompute keys beyond the scope (fct_mrr, everyone in a new month): their new rows replace these
      left anti join {{ name }}__new_rows as new_rows on delta.{{ key }} = new_rows.{{ key }}
    {%- endcall -%}
    {%- if identity -%}
      {%- do run_query(log_identity_changes(name ~ '__new_rows', view, scope=name ~ '__scope')) -%}
    {%- endif -%}
    {%- if config.get('lake_merge_touched') -%}
      {%- do run_query(log_touched_values(all_values=false, columns=columns)) -%}
    {%- endif -%}
    {%- do run_query("insert overwrite table " ~ delta ~ " select * from " ~ staging) -%}
    {%- set sizes = run_query(
        "select (select count(*) from " ~ delta ~ "), (select count(*) from " ~ base ~ ")").rows[0] -%}
    {%- if sizes[0] | float > var('lake_compact_fraction') | float * sizes[1] | float -%}
      {#- compaction: the merged rows become the base, the delta empties -#}
      {%- do log(name ~ ": compacting (" ~ sizes[0] ~ " delta rows against " ~ sizes[1] ~ " in the base)", info=true) -%}
      {%- do run_query(
          "insert overwrite table " ~ staging ~ " select " ~ quoted | join(', ') ~ ", false from " ~ base ~ " as base "
          ~ "left anti join " ~ delta ~ " as delta on base." ~ key ~ " = delta." ~ key
          ~ " union all select " ~ quoted | join(', ') ~ ", false from " ~ delta ~ " where not _merge_deleted") -%}
      {%- do run_query("insert overwrite table " ~ base ~ " select " ~ quoted | join(', ') ~ " from " ~ staging) -%}
      {%- do run_query("insert overwrite table " ~ delta ~ " select * from " ~ staging ~ " where false") -%}
    {%- endif -%}
    {%- do run_query("insert overwrite table " ~ staging ~ " select * from " ~ delta ~ " where false") -%}
    {%- do run_query("uncache table if exists " ~ name ~ "__new_rows") -%}
    {%- do run_query("uncache table if exists " ~ name ~ "__scope") -%}
    {%- do run_query("uncache table if exists " ~ name ~ "__lost") -%}
  {%- endif -%}
  {%- set base_columns = adapter.get_columns_in_relation(base) | map(attribute='name') | list -%}
  {%- set quoted_base = [] -%}
  {%- for column in base_columns -%}{%- do quoted_base.append(adapter.quote(column)) -%}{%- endfor -%}
  {%- do run_query(
      "create or replace view " ~ view ~ " as select " ~ quoted_base | join(', ') ~ " from " ~ base ~ " as base "
      ~ "left anti join " ~ delta ~ " as delta on base." ~ key ~ " = delta." ~ key
      ~ " union all select " ~ quoted_base | join(', ') ~ " from " ~ delta ~ " where not _merge_deleted") -%}
  {%- do run_query(
      "insert overwrite table ops.lake_merge_builds partition (model) select cast('"
      ~ run_started_at.isoformat() ~ "' as timestamp) as built_at, " ~ sql_string(key) ~ " as merge_key, "
      ~ sql_string(name) ~ " as model") -%}
  {{ run_hooks(post_hooks) }}
  {{ return({'relations': [view]}) }}
{% endmacro %}
