{#-
  How the incremental models find what changed.

  Every incremental model carries `_built_at`: the start time of the dbt run that last wrote the row.
  fct_events only rewrites a row when something in it changed (see partitioned_tables.sql), so
  "fct_events rows with _built_at later than this model's newest _built_at" is exactly the set of
  events this model has not seen yet: new events, late events, and events whose person changed
  because their anonymous id was stitched. A model that failed or was skipped catches up on its next
  run, because its own high-water mark did not move.
-#}

{#- The run start time, as a timestamptz literal: the value written to _built_at. -#}
{% macro built_at() -%}
  cast('{{ run_started_at.isoformat() }}' as {{ timestamptz_type() }})
{%- endmacro %}


{#- max(column) of this model's table as text, or none (first build, full refresh, or parsing). -#}
{% macro high_water_mark(column='_built_at') -%}
  {%- if execute and is_incremental() -%}
    {%- set result = run_query('select max(' ~ column ~ ')::text from ' ~ this) -%}
    {{ return(result.columns[0].values()[0]) }}
  {%- endif -%}
  {{ return(none) }}
{%- endmacro %}


{#- Which loads a model has read. Loads commit in any order (a retried load keeps its older id), so "load ids above
    the newest one seen" could skip one; instead ops.model_loads records, per model, every load it has read.
    Pre-hook collect_unread_loads() puts the committed loads (raw._dlt_loads, status 0: dlt writes that row after the
    load's rows are in) the model has not read into a temporary table <model>__loads; the model reads raw rows
    whose load_id is in unread_loads(); post-hook record_read_loads() records them. A full build reads every row and
    records every load committed when it started (a load committed later is read again next run: upserts make that
    harmless). PostgreSQL only: Spark rebuilds from the lake. -#}
{% macro unread_loads() -%}
  select loads.load_id from {{ adapter.quote(this.identifier ~ '__loads') }} as loads
{%- endmacro %}

{% macro collect_unread_loads() %}{{ return(adapter.dispatch('collect_unread_loads')()) }}{% endmacro %}

{% macro default__collect_unread_loads() -%}
  {%- set loads = adapter.quote(this.identifier ~ '__loads') -%}
  {%- set model = sql_string(this.identifier) -%}
  {%- if not is_incremental() %}
    delete from ops.model_loads where model = {{ model }};
  {%- endif %}
  drop table if exists {{ loads }};
  create temporary table {{ loads }} as
  select dlt_loads.load_id
  from {{ source('raw', 'events').schema }}._dlt_loads as dlt_loads
  where
      dlt_loads.status = 0
      and not exists (
          select from ops.model_loads as read_loads
          where read_loads.model = {{ model }} and read_loads.load_id = dlt_loads.load_id
      );
  analyze {{ loads }};
{%- endmacro %}

{% macro spark__collect_unread_loads() %}{% endmacro %}

{% macro record_read_loads() %}{{ return(adapter.dispatch('record_read_loads')()) }}{% endmacro %}

{% macro default__record_read_loads() -%}
  insert into ops.model_loads (model, load_id)
  select {{ sql_string(this.identifier) }}, loads.load_id from ({{ unread_loads() }}) as loads
  on conflict do nothing
{%- endmacro %}

{% macro spark__record_read_loads() %}{% endmacro %}


{#- A SQL condition true for fct_events rows written after `since` (always true when since is none). -#}
{% macro changed_since(since, alias=none) -%}
  {%- if since is none -%}
    true
  {%- else -%}
    {{ (alias ~ '.') if alias else '' }}_built_at > cast('{{ since }}' as timestamptz)
  {%- endif -%}
{%- endmacro %}


{#- The persons whose events changed after `since`, with the time of their earliest changed event.
    A re-stitched event also touches its previous person: the anonymous id it counted under before,
    or the user id an anonymous id was mapped to before a late, earlier identify re-mapped it. -#}
{% macro changed_persons_sql(since) -%}
  with changed as (

      select person_id, anonymous_id, event_at
      from {{ ref('fct_events') }}
      where {{ changed_since(since) }}

  ),

  remapped as (

      select
          identity_map.previous_user_id as person_id,
          min(changed.event_at) as first_changed_at
      from {{ ref('int_identity_map') }} as identity_map
      inner join changed
          on identity_map.anonymous_id = changed.anonymous_id
      where identity_map.previous_user_id is not null
      group by identity_map.previous_user_id

  ),

  candidates as (

      select person_id, event_at as first_changed_at from changed
      union all
      select anonymous_id, event_at from changed
      where anonymous_id is not null and anonymous_id <> person_id
      union all
      select person_id, first_changed_at from remapped

  )

  select person_id, min(first_changed_at) as first_changed_at
  from candidates
  group by person_id
{%- endmacro %}


{#- The (event_date, event_name) of events a GDPR erasure deleted after `since` (none on a full build: the events
    are gone from fct_events). An erasure deletes a person's rows from every table with a person column; what it
    leaves are the aggregates their events counted in, which recompute these dates. -#}
{% macro erased_events_sql(since) -%}
  {%- if since is none -%}
    select cast(null as date) as event_date, cast(null as text) as event_name where false
  {%- else -%}
    select event_date, event_name from ops.erased_events where erased_at > cast('{{ since }}' as timestamptz)
  {%- endif -%}
{%- endmacro %}


{#- The distinct event dates of fct_events rows written after `since` or erased after it, as a SQL list of date literals
    (so PostgreSQL prunes fct_events to those partitions when planning), or `null` when none. -#}
{% macro changed_dates_list(since) -%}
  {%- if not execute -%}{{ return('null') }}{%- endif -%}
  {%- set result = run_query(
      'select event_date::text from ' ~ ref('fct_events') ~ ' where ' ~ changed_since(since)
      ~ ' union select event_date::text from (' ~ erased_events_sql(since) ~ ') as erased') -%}
  {%- set dates = result.columns[0].values() | list -%}
  {%- if not dates -%}{{ return('null') }}{%- endif -%}
  {%- set literals = [] -%}
  {%- for day in dates | sort -%}{%- do literals.append("date '" ~ day ~ "'") -%}{%- endfor -%}
  {{ return(literals | join(', ')) }}
{%- endmacro %}


{#- 'a', 'b' as a SQL list from a list of strings (for `in (...)`). -#}
{% macro sql_list(values) -%}
  {%- for value in values -%}{{ sql_string(value) }}{{ ", " if not loop.last }}{%- endfor -%}
{%- endmacro %}


{#- Pre-hook for person-level models: collect the changed persons in a temporary table
    <model>__scope (person_id, first_changed_at) and delete their rows; the model then re-inserts
    them computed from their full history. Nothing happens on a first build or a full refresh. -#}
{% macro rebuild_changed_persons() -%}
  {%- if is_incremental() -%}
    {%- set scope = adapter.quote(this.identifier ~ '__scope') -%}
    drop table if exists {{ scope }};
    create temporary table {{ scope }} as
    {{ changed_persons_sql(high_water_mark('_built_at')) }};
    analyze {{ scope }};
    delete from {{ this }} where person_id in (select scope.person_id from {{ scope }} as scope);
  {%- endif -%}
{%- endmacro %}


{#- Pre-hook of fct_sessions: per changed person, T = their earliest changed event; their sessions
    ending at or after T - timeout are deleted, and rebuild_from = the start of the earliest of them
    (or T when there is none). Every earlier session of the person ended more than one timeout before
    T, so the events from rebuild_from on form exactly the sessions that were deleted, recomputed. -#}
{% macro rebuild_changed_sessions() -%}
  {%- if is_incremental() -%}
    {%- set scope = adapter.quote(this.identifier ~ '__scope') -%}
    {%- set timeout = "interval '" ~ var('session_timeout_minutes') ~ " minutes'" -%}
    drop table if exists {{ scope }};
    create temporary table {{ scope }} as
    with changed as (
        {{ changed_persons_sql(high_water_mark('_built_at')) }}
    )
    select
        changed.person_id,
        changed.first_changed_at,
        least(changed.first_changed_at, min(sessions.session_start)) as rebuild_from
    from changed
    left join {{ this }} as sessions
        on
            changed.person_id = sessions.person_id
            and sessions.session_end >= changed.first_changed_at - {{ timeout }}
    group by changed.person_id, changed.first_changed_at;
    analyze {{ scope }};
    delete from {{ this }} as sessions
    using {{ scope }} as scope
    where
        sessions.person_id = scope.person_id
        and sessions.session_end >= scope.first_changed_at - {{ timeout }};
  {%- endif -%}
{%- endmacro %}


{#- Post-hook: ANALYZE a table that has no statistics yet (just created or rebuilt), so the models
    built after it in the same run get good plans. Later incremental runs leave it to autovacuum. -#}
{% macro analyze_if_new() -%}
  {%- if execute and target.type == 'postgres' -%}
    {%- set found = run_query(
        "select count(*) from pg_stats where schemaname = '" ~ this.schema ~ "' and tablename = '"
        ~ this.identifier ~ "'").columns[0].values()[0] -%}
    {%- if found == 0 -%}
      analyze {{ this }}
    {%- endif -%}
  {%- endif -%}
{%- endmacro %}


{#- Pre-hook of dim_event_properties: the catalogue rows of event names a GDPR erasure deleted events of since the
    last build go (the model recomputes them from the remaining rows). -#}
{% macro delete_erased_event_names() -%}
  {%- if is_incremental() -%}
    delete from {{ this }}
    where event_name in (
        select erased.event_name from ({{ erased_events_sql(high_water_mark('_built_at')) }}) as erased
    )
  {%- endif -%}
{%- endmacro %}


{#- Pre-hook of a model with one row per date (`column`): the dates a GDPR erasure touched since its last build go
    (the model recomputes them; a date with no event left stays gone). -#}
{% macro delete_erased_dates(column) -%}
  {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ column }} in (
        select erased.event_date from ({{ erased_events_sql(high_water_mark('_built_at')) }}) as erased
    )
  {%- endif -%}
{%- endmacro %}
