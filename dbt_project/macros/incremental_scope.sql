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


{#- When this model was last built, as text (the `built_at()` of that run, recorded in ops.model_builds by every
    model's post-hook), or none (first build, full refresh, or parsing). Reading it costs one primary-key lookup, where
    max(_built_at) of the table (the fallback for a table built before the record existed) reads every row: a cost
    that grew with history in every incremental model. The record is written in the model's transaction, so it
    moves exactly when the model's rows do; a model that failed or was skipped catches up on its next run. -#}
{% macro high_water_mark(column='_built_at') -%}
  {%- if execute and is_incremental() -%}
    {%- if column == '_built_at' and target.type == 'postgres' -%}
      {%- set recorded = recorded_built_at(model_build_key()) -%}
      {%- if recorded is not none -%}{{ return(recorded) }}{%- endif -%}
    {%- endif -%}
    {%- set result = run_query('select max(' ~ column ~ ')::text from ' ~ this) -%}
    {{ return(result.columns[0].values()[0]) }}
  {%- endif -%}
  {{ return(none) }}
{%- endmacro %}

{#- The start of the run that last built `model` ('schema.table'), as text, from ops.model_builds; none when not
    recorded (PostgreSQL only). -#}
{% macro recorded_built_at(model) -%}
  {%- set recorded = run_query("select built_at::text from ops.model_builds where model = " ~ sql_string(model)) -%}
  {{ return(recorded.columns[0].values()[0] if recorded.rows | length > 0 else none) }}
{%- endmacro %}

{% macro model_build_key() %}{{ return(this.schema ~ '.' ~ this.identifier) }}{% endmacro %}

{#- Post-hook of every model (dbt_project.yml): this run built it (ops.model_builds). -#}
{% macro record_model_build() %}{{ return(adapter.dispatch('record_model_build')()) }}{% endmacro %}

{% macro default__record_model_build() -%}
    insert into ops.model_builds (model, built_at) values ('{{ model_build_key() }}', {{ built_at() }})
    on conflict (model) do update set built_at = excluded.built_at
{%- endmacro %}

{% macro spark__record_model_build() %}{% endmacro %}


{#- Which loads a model has read. Loads commit in any order (a retried load keeps its older id), so "load ids above
    the newest one seen" could skip one; instead ops.model_loads records, per model, every load it has read.
    Pre-hook collect_unread_loads() finds the committed loads (raw._dlt_loads, status 0: dlt writes that row after the
    load's rows are in) the model has not read, puts them in a temporary table <model>__loads and, in an incremental
    run, their rows through the staging view in a temporary table <model>__unread (analyzed: the planner then knows
    the hour's row count); the model reads them with unread_events(); post-hook record_read_loads() records the loads
    of <model>__loads, so what is recorded is exactly what was read.
    The rows are found by load id, given as literals: a load's rows sit together in raw.events and at the right edge of
    its load-id index, whatever the history. (By message id, the hour's random UUIDs are spread over the whole
    message-id index: a page read from disk per event once the history outgrows the cache. And a load-id set from a
    subquery is estimated from the column's statistics: after one big first load they say "half the table", and the
    planner scans raw.events whole.) Other lookups by a set of keys are written `key = any(array(select ...))`: the
    planner then probes the key's index (a semi-join through the staging view's casts gets estimates far off and a
    sequential scan of raw.events).
    Above var('max_literal_loads') unread loads (a backlog), the ids go through the temporary table instead.
    A full build reads every row and records every load committed when it started (a load committed later is read
    again next run: upserts make that harmless). Only loads written since a day before the model's last read are
    candidates, and records older than two days are pruned, so this costs the recent loads, whatever the history.
    PostgreSQL only: Spark rebuilds from the lake. -#}
{% macro unread_events() -%}
  {{ adapter.quote(this.identifier ~ '__unread') }}
{%- endmacro %}

{#- `column = any(array(<the loads of this run>))`: true for the rows of the loads collect_unread_loads() found. -#}
{% macro in_unread_loads(column) -%}
  {{ column }} = any(array(select loads.load_id from {{ adapter.quote(this.identifier ~ '__loads') }} as loads))
{%- endmacro %}

{% macro collect_unread_loads() %}{{ return(adapter.dispatch('collect_unread_loads')()) }}{% endmacro %}

{% macro default__collect_unread_loads() -%}
  {%- set loads = adapter.quote(this.identifier ~ '__loads') -%}
  {%- set unread = adapter.quote(this.identifier ~ '__unread') -%}
  {%- set model = sql_string(this.identifier) -%}
  {%- set raw_loads = source('raw', 'events').schema ~ '._dlt_loads' -%}
  drop table if exists {{ loads }};
  drop table if exists {{ unread }};
  {%- if not is_incremental() %}
    delete from ops.model_loads where model = {{ model }};
    create temporary table {{ loads }} as
    select dlt_loads.load_id::text as load_id from {{ raw_loads }} as dlt_loads where dlt_loads.status = 0;
  {%- else %}
    {%- set limit = var('max_literal_loads') | int -%}
    {#- only loads written since a day before this model's last read: older ones were read then (a load is visible
        once dlt wrote its row, seconds after inserted_at), so the work follows the new loads, not all -#}
    {%- set unread_query = "select dlt_loads.load_id::text as load_id from " ~ raw_loads ~ " as dlt_loads"
        ~ " where dlt_loads.status = 0"
        ~ " and dlt_loads.inserted_at > coalesce((select max(read_loads.read_at) from ops.model_loads as read_loads"
        ~ " where read_loads.model = " ~ model ~ "), '-infinity') - interval '1 day'"
        ~ " and not exists (select from ops.model_loads as read_loads where read_loads.model = " ~ model
        ~ " and read_loads.load_id = dlt_loads.load_id)" -%}
    {%- set load_ids = [] -%}
    {%- if execute -%}
      {%- set load_ids = run_query(unread_query ~ " order by 1 limit " ~ (limit + 1)).columns[0].values() | list -%}
    {%- endif %}
    {%- if load_ids | length <= limit %}
    create temporary table {{ loads }} as select unnest({{ sql_text_array(load_ids) }}) as load_id;
    create temporary table {{ unread }} as
    select * from {{ ref('stg_segment__events') }} as staged
    where staged.load_id = any({{ sql_text_array(load_ids) }});
    {%- else %}
    -- more than var('max_literal_loads') unread loads: through a temporary table
    create temporary table {{ loads }} as {{ unread_query }};
    analyze {{ loads }};
    create temporary table {{ unread }} as
    select * from {{ ref('stg_segment__events') }} as staged
    where {{ in_unread_loads('staged.load_id') }};
    {%- endif %}
    analyze {{ unread }};
  {%- endif %}
{%- endmacro %}

{% macro spark__collect_unread_loads() %}{% endmacro %}

{% macro record_read_loads() %}{{ return(adapter.dispatch('record_read_loads')()) }}{% endmacro %}

{% macro default__record_read_loads() -%}
  insert into ops.model_loads (model, load_id)
  select {{ sql_string(this.identifier) }}, loads.load_id from {{ adapter.quote(this.identifier ~ '__loads') }} as loads
  on conflict do nothing;
  -- older than any load the next run looks at (a day before this read): not needed any more
  delete from ops.model_loads
  where model = {{ sql_string(this.identifier) }} and read_at < now() - interval '2 days'
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


{#- changed_since() for fct_events (aliased `alias`): with the days the rows written after `since` are on
    (ops.written_days), `and event_date in (...)` as date literals, so PostgreSQL plans and opens only those day
    partitions (and none, `false`, when nothing was written); with a year of partitions, a query that cannot prune
    costs milliseconds to plan and opens every partition's index. Plain changed_since() when the record cannot tell. -#}
{% macro events_changed_since(since, alias=none) -%}
  {%- set days = written_days_since(ref('fct_events'), since) -%}
  {%- if days is none -%}
    {{ changed_since(since, alias) }}
  {%- elif not days -%}
    false
  {%- else -%}
    {{ changed_since(since, alias) }} and {{ (alias ~ '.') if alias else '' }}event_date in ({{ sql_date_list(days) }})
  {%- endif -%}
{%- endmacro %}


{#- The persons who lost events among the fct_events rows of the CTE `changed` (person_id, anonymous_id, event_at),
    with the time of the earliest: the anonymous id a re-stitched event counted under before, when it has rows in
    the calling model (`this`, indexed on person_id; one without rows, the usual case since every event of an
    identified user carries their anonymous id, has nothing to recompute), and the user id an anonymous id was
    mapped to before a late, earlier identify re-mapped it. -#}
{% macro persons_who_lost_events(changed) -%}
      select {{ changed }}.anonymous_id as person_id, {{ changed }}.event_at as first_changed_at from {{ changed }}
      where
          {{ changed }}.anonymous_id is not null and {{ changed }}.anonymous_id <> {{ changed }}.person_id
          and exists (select from {{ this }} as target where target.person_id = {{ changed }}.anonymous_id)
      union all
      select identity_map.previous_user_id, {{ changed }}.event_at
      from {{ ref('int_identity_map') }} as identity_map
      inner join {{ changed }} on identity_map.anonymous_id = {{ changed }}.anonymous_id
      where
          identity_map.previous_user_id is not null
          -- by the unique index: a join alone lets the planner read the whole map
          and identity_map.anonymous_id = any(array(select {{ changed }}.anonymous_id from {{ changed }}))
{%- endmacro %}


{#- The persons whose events changed after `since`, with the time of their earliest changed event.
    A re-stitched event also touches its previous person: the anonymous id it counted under before (when it has
    rows in the calling model, `this`, indexed on person_id), or the user id an anonymous id was mapped to before a
    late, earlier identify re-mapped it. `relevant`, a condition on fct_events' columns, keeps only the persons who
    gained an event it holds for (a model that reads only some events: a new page view changes no funnel); every
    person who lost events stays. -#}
{% macro changed_persons_sql(since, relevant=none) -%}
  with changed as (

      select person_id, anonymous_id, event_at{{ ', (' ~ relevant ~ ') as is_relevant' if relevant }}
      from {{ ref('fct_events') }}
      where {{ events_changed_since(since) }}

  ),

  candidates as (

      select person_id, event_at as first_changed_at from changed{{ ' where is_relevant' if relevant }}
      union all
      {{ persons_who_lost_events('changed') }}

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
    (so PostgreSQL prunes fct_events to those partitions when planning), or `null` when none.
    With `new_events_only`, only the dates whose events' content may have changed: of the rows written after `since`,
    those from a raw load fct_events read after `since` (ops.model_loads; a new event, where an event re-stitched to
    another person keeps the load it came in with), and the dates erased. For models whose rows do not depend on the
    person (int_event_days' counts): an identify that stitches a visitor's months of history changes no date's
    counts, and the dates of those months are not recounted. All changed dates instead when the record of loads may
    not reach back to `since` (older than a day: ops.model_loads keeps two), in a run over a window of dates (vars
    start_date/end_date), or on Spark. -#}
{% macro changed_dates_list(since, new_events_only=false) -%}
  {%- if not execute -%}{{ return('null') }}{%- endif -%}
  {%- set condition = events_changed_since(since) -%}
  {%- if new_events_only and since is not none and target.type == 'postgres' and not var('start_date', none) -%}
    {%- set since_literal = "cast('" ~ since ~ "' as timestamptz)" -%}
    {%- if run_query("select " ~ since_literal ~ " > now() - interval '1 day'").columns[0].values()[0] -%}
      {%- set condition = condition ~ " and load_id = any(array(select read_loads.load_id from ops.model_loads as "
          ~ "read_loads where read_loads.model = 'fct_events' and read_loads.read_at > " ~ since_literal ~ "))" -%}
    {%- endif -%}
  {%- endif -%}
  {%- set result = run_query(
      'select event_date::text from ' ~ ref('fct_events') ~ ' where ' ~ condition
      ~ ' union select event_date::text from (' ~ erased_events_sql(since) ~ ') as erased') -%}
  {%- set dates = result.columns[0].values() | list -%}
  {{ return(sql_date_list(dates | sort) if dates else 'null') }}
{%- endmacro %}


{#- date 'YYYY-MM-DD', ... as a SQL list from a list of 'YYYY-MM-DD' strings (for `in (...)`). -#}
{% macro sql_date_list(days) -%}
  {%- for day in days -%}date '{{ day }}'{{ ", " if not loop.last }}{%- endfor -%}
{%- endmacro %}


{#- 'a', 'b' as a SQL list from a list of strings (for `in (...)`). -#}
{% macro sql_list(values) -%}
  {%- for value in values -%}{{ sql_string(value) }}{{ ", " if not loop.last }}{%- endfor -%}
{%- endmacro %}


{#- A PostgreSQL text[] literal from a list of strings (for `= any(...)`: a constant the planner estimates by value). -#}
{% macro sql_text_array(values) -%}
  cast(array[{{ sql_list(values) }}] as text[])
{%- endmacro %}


{#- A pre-hook's work list: the rows of the caller's select (a temporary table <model>__scope, analyzed) and this
    model's rows with the same `keys` deleted, for the model to insert them again, recomputed. With `keep_previous`
    the deleted rows are kept first in <model>__previous, for the model to tell which really changed
    (built_at_unless_unchanged). `scope_name` names the work list's table when a model keeps more than one.
    On one key, the matching rows are also asked for by `= any(array(...))`, a lookup of the key's index: with a join
    alone the planner may read the whole table to hash it (fct_mrr's did, every hour). -#}
{% macro replace_scope(keys, keep_previous=false, scope_name='scope') -%}
  {%- set scope = adapter.quote(this.identifier ~ '__' ~ scope_name) -%}
  {%- set previous = adapter.quote(this.identifier ~ '__previous') -%}
  {%- set matches -%}
    {% for key in keys %}target.{{ key }} = scope.{{ key }}{{ ' and ' if not loop.last }}{% endfor %}
    {%- if keys | length == 1 %}
    and target.{{ keys[0] }} = any(array(select scope.{{ keys[0] }} from {{ scope }} as scope))
    {%- endif %}
  {%- endset -%}
  drop table if exists {{ scope }};
  create temporary table {{ scope }} as
  {{ caller() }};
  analyze {{ scope }};
  {%- if keep_previous %}
  drop table if exists {{ previous }};
  create temporary table {{ previous }} as
  select target.* from {{ this }} as target inner join {{ scope }} as scope on {{ matches }};
  analyze {{ previous }};
  {%- endif %}
  delete from {{ this }} as target
  using {{ scope }} as scope
  where {{ matches }};
{%- endmacro %}


{#- Pre-hook for person-level models: collect the changed persons in a temporary table
    <model>__scope (person_id, first_changed_at) and delete their rows; the model then re-inserts
    them computed from their full history. Nothing happens on a first build or a full refresh.
    `keep_previous`: see replace_scope; `relevant`: see changed_persons_sql. -#}
{% macro rebuild_changed_persons(keep_previous=false, relevant=none) -%}
  {%- if is_incremental() -%}
    {%- call replace_scope(['person_id'], keep_previous) -%}
    {{ changed_persons_sql(high_water_mark('_built_at'), relevant) }}
    {%- endcall -%}
  {%- endif -%}
{%- endmacro %}


{#- The rows of the CTE `computed` (this model's columns but _built_at) with their _built_at: a group of rows (by
    `keys`) identical, in every one of `columns`, to the rows the pre-hook kept of it in <model>__previous keeps its
    _built_at; any other group gets this run's. The models downstream, which recompute what changed since they last
    read, then see only the groups a run really changed, not every group it recomputed. -#}
{% macro built_at_unless_unchanged(computed, keys, columns) -%}
  {%- if is_incremental() -%}
    {%- set print = "md5(string_agg(cast(row(" ~ columns | join(", ") ~ ") as text), '|' order by cast(row("
                    ~ columns | join(", ") ~ ") as text)))" -%}
    select
        {{ computed }}.*,
        coalesce(kept.built_at, {{ built_at() }}) as _built_at
    from {{ computed }}
    left join (
        select {{ 'new_groups.' ~ keys | join(', new_groups.') }}, old_groups.built_at
        from (
            select {{ keys | join(', ') }}, {{ print }} as print
            from {{ computed }}
            group by {{ keys | join(', ') }}
        ) as new_groups
        inner join (
            select {{ keys | join(', ') }}, {{ print }} as print, max(_built_at) as built_at
            from {{ adapter.quote(this.identifier ~ '__previous') }}
            group by {{ keys | join(', ') }}
        ) as old_groups
            on
                {%- for key in keys %}
                    new_groups.{{ key }} = old_groups.{{ key }} and
                {%- endfor %}
                new_groups.print = old_groups.print
    ) as kept
        on {% for key in keys %}{{ computed }}.{{ key }} = kept.{{ key }}{{ ' and ' if not loop.last }}{% endfor %}
  {%- else -%}
    select
        {{ computed }}.*,
        {{ built_at() }} as _built_at
    from {{ computed }}
  {%- endif -%}
{%- endmacro %}


{#- Pre-hook of dim_users: the persons whose events changed after the last build, in temporary tables (and their
    changed rows, <model>__changed).
    <model>__scope (person_id): recomputed from their whole history, their rows deleted here. These are the
    persons who lost events (an anonymous id whose events were stitched to a user, the user an anonymous id was
    mapped to before a re-mapping), and those whose new events include an identify at or before the time their
    traits were last identified (a late identify can change an older trait's latest value).
    <model>__merge (person_id): every other person with changed events. A changed fct_events row of theirs is one
    they did not count before (a new event, or an event stitched to them from an anonymous id; fct_events rows
    change in nothing but the person), so the model adds the aggregates of those rows to the person's row:
    minimums, maximums and sums add up, an active day counts when the person had no other activity that day,
    and the new traits, all identified later than the old ones, override theirs key by key. -#}
{% macro rebuild_or_merge_changed_persons() -%}
  {%- if is_incremental() -%}
    {%- set since = high_water_mark('_built_at') -%}
    {%- set scope = adapter.quote(this.identifier ~ '__scope') -%}
    {%- set merge = adapter.quote(this.identifier ~ '__merge') -%}
    {%- set changed = adapter.quote(this.identifier ~ '__changed') -%}
    drop table if exists {{ scope }};
    drop table if exists {{ merge }};
    drop table if exists {{ changed }};
    -- the changed fct_events rows, once, with statistics: the planner takes "_built_at after the last build" for
    -- about no rows (fct_events' statistics predate them), and nested loops planned for one row ran the new
    -- active days' lookups once per person (18 s instead of 0.3 s)
    create temporary table {{ changed }} as
    select changed.*
    from {{ ref('fct_events') }} as changed
    where {{ events_changed_since(since, 'changed') }};
    analyze {{ changed }};
    create temporary table {{ merge }} as
    select
        changed.person_id,
        min(changed.event_at) filter (where changed.event_type = 'identify') as first_identify_at
    from {{ changed }} as changed
    group by changed.person_id;
    create temporary table {{ scope }} as
    with changed as (
        select changed.person_id, changed.anonymous_id, changed.event_at from {{ changed }} as changed
    )
    select lost.person_id from ({{ persons_who_lost_events('changed') }}) as lost
    union
    select merge.person_id
    from {{ merge }} as merge
    inner join {{ this }} as old on merge.person_id = old.person_id
    where merge.first_identify_at <= old.last_identified_at;
    delete from {{ merge }} as merge using {{ scope }} as scope where merge.person_id = scope.person_id;
    analyze {{ scope }};
    analyze {{ merge }};
    -- the traits of the persons recomputed, as they were (their _traits_changed_at stays when they come out equal)
    drop table if exists {{ adapter.quote(this.identifier ~ '__previous') }};
    create temporary table {{ adapter.quote(this.identifier ~ '__previous') }} as
    select target.person_id, target.traits, target._traits_changed_at
    from {{ this }} as target inner join {{ scope }} as scope on target.person_id = scope.person_id;
    delete from {{ this }} as target using {{ scope }} as scope where target.person_id = scope.person_id;
  {%- endif -%}
{%- endmacro %}


{#- Pre-hook of int_person_days: the (person, date) pairs of fct_events rows written after the last build, for the
    person each event counts under now, the anonymous id it counted under before it was stitched, and the user id an
    anonymous id was mapped to before a re-mapping, in a temporary table <model>__scope (person_id, activity_date);
    their rows are deleted and the model re-inserts those that still have activity. (An erasure deletes the rows of
    the person itself.) -#}
{% macro rebuild_changed_person_days(keep_previous=false) -%}
  {%- if is_incremental_in_place() -%}
    {%- call replace_scope(['person_id', 'activity_date'], keep_previous) -%}
    with changed as (
        select person_id, anonymous_id, event_date
        from {{ ref('fct_events') }}
        where {{ events_changed_since(high_water_mark('_built_at')) }}
    )
    select person_id, event_date as activity_date from changed
    union
    select anonymous_id, event_date from changed where anonymous_id is not null and anonymous_id <> person_id
    union
    select identity_map.previous_user_id, changed.event_date
    from {{ ref('int_identity_map') }} as identity_map
    inner join changed on identity_map.anonymous_id = changed.anonymous_id
    where
        identity_map.previous_user_id is not null
        and identity_map.anonymous_id = any(array(select changed.anonymous_id from changed))
    {%- endcall -%}
  {%- endif -%}
{%- endmacro %}


{#- Pre-hook of fct_sessions: per changed person, T = their earliest changed event; their sessions
    ending at or after T - timeout are deleted, and rebuild_from = the start of the earliest of them
    (or T when there is none). Every earlier session of the person ended more than one timeout before
    T, so the events from rebuild_from on form exactly the sessions that were deleted, recomputed. -#}
{% macro rebuild_changed_sessions() -%}
  {%- if is_incremental_in_place() -%}
    {%- set scope = adapter.quote(this.identifier ~ '__scope') -%}
    {%- set timeout = session_timeout() -%}
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
  {%- if is_incremental_in_place() -%}
    delete from {{ this }}
    where {{ column }} in (
        select erased.event_date from ({{ erased_events_sql(high_water_mark('_built_at')) }}) as erased
    )
  {%- endif -%}
{%- endmacro %}


{#- The number of the period containing `last_day` (a date) for a cohort of `grain` ('week' or 'month') starting on
    `start`: fct_cohort_retention's rows run from period 0 to it. -#}
{% macro cohort_last_period(grain, start, last_day) -%}
    cast(case
        when {{ grain }} = 'week'
            then {{ int_div(days_between(start, "cast(date_trunc('week', cast(" ~ last_day ~ " as timestamp)) as date)"), 7) }}
        else
            (extract(year from {{ last_day }}) - extract(year from {{ start }})) * 12
            + extract(month from {{ last_day }}) - extract(month from {{ start }})
    end as integer)
{%- endmacro %}


{#- Pre-hook of fct_cohort_retention: the cohorts recounted whole, in <model>__scope (their rows deleted): those
    whose size differs from their members now (someone left or came outside the differences: a GDPR erasure; a
    cohort with no member left goes, a new one comes), those whose last period is not the one containing the last
    event date (a new week or month began), and every cohort after a full build of int_cohort_persons. Every other
    cohort gets the differences of ops.cohort_changes added (macros/cohort_changes.sql). The members are counted in
    int_cohort_persons only when an erasure happened since the last build (ops.erased_events: an erasure of a person
    with a cohort records their signup and first activity dates), the one change outside the differences; otherwise
    a cohort's members now are its stored size plus its recorded difference, and an hour reads no cohort's members. -#}
{% macro rebuild_changed_cohorts() -%}
  {%- if is_incremental_in_place() -%}
    {%- set since = high_water_mark('_built_at') -%}
    {%- set rebuilt = cohort_persons_rebuilt_since(since) -%}
    {%- set erased = execute and since is not none and run_query(
        "select exists (select from (" ~ erased_events_sql(since) ~ ") as erased)").columns[0].values()[0] -%}
    {%- call replace_scope(['cohort_grain', 'cohort_start']) -%}
    with stored as (
        select cohort_grain, cohort_start, max(cohort_size) as cohort_size, max(period_number) as last_period
        from {{ this }}
        group by cohort_grain, cohort_start
    ),
    changes as (
        select cohort_grain, cohort_start, sum(members) as members
        from ({{ cohort_changes_since(since) }}) as cells
        group by cohort_grain, cohort_start
    ),
    members as (
    {%- if erased or rebuilt %}
        select cohort_grain, cohort_start, count(*) as cohort_size
        from {{ ref('int_cohort_persons') }}
        where period_number = 0
        group by cohort_grain, cohort_start
    {%- else %}
        select
            coalesce(stored.cohort_grain, changes.cohort_grain) as cohort_grain,
            coalesce(stored.cohort_start, changes.cohort_start) as cohort_start,
            coalesce(stored.cohort_size, 0) + coalesce(changes.members, 0) as cohort_size
        from stored
        full outer join changes
            on stored.cohort_grain = changes.cohort_grain and stored.cohort_start = changes.cohort_start
        where coalesce(stored.cohort_size, 0) + coalesce(changes.members, 0) > 0
    {%- endif %}
    ),
    last_day as (
        select max(event_date) as last_day from {{ ref('int_event_days') }}
    )
    select coalesce(stored.cohort_grain, members.cohort_grain) as cohort_grain,
           coalesce(stored.cohort_start, members.cohort_start) as cohort_start
    from stored
    full outer join members
        on stored.cohort_grain = members.cohort_grain and stored.cohort_start = members.cohort_start
    left join changes
        on
            coalesce(stored.cohort_grain, members.cohort_grain) = changes.cohort_grain
            and coalesce(stored.cohort_start, members.cohort_start) = changes.cohort_start
    cross join last_day
    where
        {{ 'true or ' if rebuilt }}
        stored.cohort_grain is null or members.cohort_grain is null
        or stored.cohort_size + coalesce(changes.members, 0) <> members.cohort_size
        or stored.last_period <> {{ cohort_last_period('stored.cohort_grain', 'stored.cohort_start', 'last_day.last_day') }}
    {%- endcall -%}
  {%- endif -%}
{%- endmacro %}


{#- fct_mrr: true when the last event's month is later than the table's last month (every paying person needs a row
    for the new month: the run recomputes everyone), false otherwise or on a full build. On PostgreSQL and on an
    incremental Spark build (merge-on-read: the recomputed rows go to the delta, macros/lake_merge.sql). -#}
{% macro mrr_new_month() -%}
  {%- if not (execute and (is_incremental() or lake_merge_incremental())) -%}{{ return(false) }}{%- endif -%}
  {%- set result = run_query(
      "select coalesce((select max(month) from " ~ this ~ ") < (select cast(date_trunc('month', "
      ~ "cast(max(event_date) as timestamp)) as date) from " ~ ref('int_event_days') ~ "), false)") -%}
  {{ return(result.columns[0].values()[0]) }}
{%- endmacro %}

{#- Pre-hook of fct_mrr: in a new month, every row goes (the model recomputes everyone). -#}
{% macro delete_all_in_a_new_month() -%}
  {%- if is_incremental_in_place() and mrr_new_month() -%}
    delete from {{ this }}
  {%- endif -%}
{%- endmacro %}


{#- `order by <columns>` on a full build on PostgreSQL: the table's rows then lie in that order, and an incremental
    run, which appends the new rows at the end, keeps it roughly so. daily_metrics reads the dates an hour touched
    (a bitmap scan): pages holding only those dates, where an unordered table spreads each date over every page and
    the read grows with the history. Nothing on an incremental run or on Spark. -#}
{% macro order_on_full_build(columns) -%}
  {%- if target.type == 'postgres' and not is_incremental() -%}
    order by {{ columns }}
  {%- endif -%}
{%- endmacro %}


{#- Post-hook of a mart that reads a ledger of changes (ops.funnel_cohort_changes for fct_funnel_steps,
    ops.funnel_breakdown_changes for fct_funnel_breakdown): what was recorded up to this run has been added (or
    recounted) and goes. -#}
{% macro prune_changes_ledger(ledger) %}{{ return(adapter.dispatch('prune_changes_ledger')(ledger)) }}{% endmacro %}

{% macro default__prune_changes_ledger(ledger) -%}
    delete from ops.{{ ledger }} where changed_at <= {{ built_at() }}
{%- endmacro %}

{% macro spark__prune_changes_ledger(ledger) %}{% endmacro %}
