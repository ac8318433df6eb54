{#-
  Date-partitioned incremental tables on PostgreSQL.

  A model opts in with
    partition_by={'column': 'event_date'}                   (a date column; one range partition per day)
    incremental_strategy='partitioned_upsert'
    unique_key=[..., 'event_date']                          (a unique key must contain the partition column)
    change_ignore_columns=[...]                             (columns that do not count as a change, e.g. load ids)

  First build: the parent table is created from the contract's columns with `partition by range (column)`.
  With partition_by's `bounds` (a macro's name; it returns a query of the first and last date, e.g. min and max of an indexed source
  column), a partition per date between them is created, the rows are inserted straight in and the partitions
  left empty are dropped; without it, the rows are staged and the partitions they need created first. The
  contract's table constraints (the primary key) are added after the rows, one index build per partition.
  Incremental build: partitions for the new rows are created as needed, then rows are upserted on the
  unique key; an existing row is only rewritten when one of its other columns changed, so `_built_at`
  style audit columns advance only for rows that really changed.
-#}

{% macro postgres__create_table_as(temporary, relation, sql) -%}
  {%- set partition_by = config.get('partition_by') -%}
  {%- if temporary or not partition_by -%}
    {{ postgres_create_table_as(temporary, relation, sql) }}
  {%- else -%}
    {%- set contract_config = config.get('contract') -%}
    {%- if not (contract_config and contract_config.enforced) -%}
      {{ exceptions.raise_compiler_error(
          "Model " ~ model.name ~ " sets partition_by but has no enforced contract: partitioned tables are "
          ~ "created from the contract's columns. Add `contract: {enforced: true}` and the column data types.") }}
    {%- endif -%}
    {%- set column = partition_by['column'] -%}
    {%- set columns = adapter.render_raw_columns_constraints(raw_columns=model['columns']) -%}
    {%- set table_constraints = adapter.render_raw_model_constraints(raw_constraints=model['constraints']) -%}
    {{ get_assert_columns_equivalent(sql) }}
    {#- the table's own constraints (a primary key) come after the rows: one sorted index build per partition,
        not an index maintained row by row through the whole insert -#}
    create table {{ relation }} (
      {{ columns | join(',\n      ') }}
    )
    partition by range ({{ adapter.quote(column) }});
    {%- if partition_by.get('bounds') %}

    {#- `bounds` (the name of a macro that returns a query of the first and last date the rows can have, e.g.
        min/max of an indexed column): the partitions of every date between them, the rows straight in, the
        partitions left empty dropped -#}
    {{ create_partitions_between(relation, context[partition_by['bounds']](), column) }}

    insert into {{ relation }} ({{ adapter.dispatch('get_column_names', 'dbt')() }})
    {{ sql }};

    {{ drop_empty_partitions(relation) }}
    {%- else %}

    {%- set stage = relation.identifier ~ '__stage' %}
    create temporary table {{ adapter.quote(stage) }} as (
      {{ sql }}
    );

    {{ create_date_partitions(relation, adapter.quote(stage), column) }}

    insert into {{ relation }} ({{ adapter.dispatch('get_column_names', 'dbt')() }})
    select {{ adapter.dispatch('get_column_names', 'dbt')() }} from {{ adapter.quote(stage) }};

    drop table {{ adapter.quote(stage) }};
    {%- endif %}
    {%- for constraint in table_constraints %}

    alter table {{ relation }} add {{ constraint }};
    {%- endfor %}

    {{ reset_written_days() }}
  {%- endif -%}
{%- endmacro %}


{#- dbt-postgres 1.11's postgres__create_table_as, unchanged (an override cannot call the original). -#}
{% macro postgres_create_table_as(temporary, relation, sql) -%}
  {%- set unlogged = config.get('unlogged', default=false) -%}
  {%- set sql_header = config.get('sql_header', none) -%}

  {{ sql_header if sql_header is not none }}

  create {% if temporary -%}
    temporary
  {%- elif unlogged -%}
    unlogged
  {%- endif %} table {{ relation }}
  {% set contract_config = config.get('contract') %}
  {% if contract_config.enforced %}
    {{ get_assert_columns_equivalent(sql) }}
  {% endif -%}
  {% if contract_config.enforced and (not temporary) -%}
      {{ get_table_columns_and_constraints() }} ;
    insert into {{ relation }} (
      {{ adapter.dispatch('get_column_names', 'dbt')() }}
    )
    {%- set sql = get_select_subquery(sql) %}
  {% else %}
    as
  {% endif %}
  (
    {{ sql }}
  );
{%- endmacro %}


{#- One partition per distinct date found in `source` that has none yet. Partitions are named
    <table>_pYYYYMMDD (renamed to that after a full refresh swaps tables, see rename_partitions). -#}
{% macro create_date_partitions(relation, source, column) -%}
{%- set relation = relation.include(database=false) -%}
do $$
declare
    day date;
begin
    for day in
        select distinct {{ adapter.quote(column) }} from {{ source }}
        where {{ adapter.quote(column) }} is not null
        except
        select {{ partition_lower_bound('child') }}
        from pg_inherits
        join pg_class as child on child.oid = pg_inherits.inhrelid
        where pg_inherits.inhparent = '{{ relation }}'::regclass
    loop
        execute format(
            'create table %I.%I partition of {{ relation }} for values from (%L) to (%L)',
            '{{ relation.schema }}',
            '{{ relation.identifier }}_p' || to_char(day, 'YYYYMMDD'),
            day,
            day + 1
        );
    end loop;
end
$$;
{%- endmacro %}


{#- One partition per date from the first to the last date `bounds` (a query of two dates) returns. -#}
{% macro create_partitions_between(relation, bounds, column) -%}
  {%- set dates -%}
    (
        select cast(generate_series(bounds.first_day, bounds.last_day, interval '1 day') as date) as {{ adapter.quote(column) }}
        from ({{ bounds }}) as bounds (first_day, last_day)
    ) as dates
  {%- endset -%}
  {{ create_date_partitions(relation, dates, column) }}
{%- endmacro %}


{#- Drop the partitions of `relation` that hold no row (days without events between the first and the last). -#}
{% macro drop_empty_partitions(relation) -%}
{%- set relation = relation.include(database=false) -%}
do $$
declare
    child regclass;
    holds_rows boolean;
begin
    for child in select inhrelid::regclass from pg_inherits where inhparent = '{{ relation }}'::regclass loop
        execute format('select exists (select from %s)', child) into holds_rows;
        if not holds_rows then
            execute format('drop table %s', child);
        end if;
    end loop;
end
$$;
{%- endmacro %}


{#- The first day a partition holds: the date in its bound `FOR VALUES FROM ('YYYY-MM-DD') TO (...)`;
    `child` is the pg_class alias of the partition. -#}
{% macro partition_lower_bound(child) -%}
cast(substring(pg_get_expr({{ child }}.relpartbound, {{ child }}.oid) from $r$FROM \('([0-9-]+)'\)$r$) as date)
{%- endmacro %}


{% macro get_incremental_partitioned_upsert_sql(arg_dict) %}
  {%- set target = arg_dict['target_relation'] -%}
  {%- set source = arg_dict['temp_relation'] -%}
  {%- set partition_by = config.require('partition_by') -%}
  {%- set unique_key = arg_dict['unique_key'] -%}
  {%- set unique_key = [unique_key] if unique_key is string else unique_key -%}
  {%- if partition_by['column'] not in unique_key -%}
    {{ exceptions.raise_compiler_error(
        "Model " ~ model.name ~ ": unique_key must include the partition column '" ~ partition_by['column'] ~ "'.") }}
  {%- endif -%}
  {%- set partitioned = run_query(
      "select count(*) from pg_partitioned_table where partrelid = to_regclass('"
      ~ target.include(database=false) ~ "')").columns[0].values()[0] -%}
  {%- if partitioned == 0 -%}
    {{ exceptions.raise_compiler_error(
        target.include(database=false) ~ " exists but is not partitioned (an earlier version of AnalyticsPro built "
        ~ "it). Rebuild it once: `analyticspro materialize --full-refresh` (or `dbt build --full-refresh`).") }}
  {%- endif -%}
  {%- set ignore = config.get('change_ignore_columns', []) -%}
  {%- set columns = arg_dict['dest_columns'] | map(attribute='name') | list -%}
  {%- set updated = columns | reject('in', unique_key) | list -%}
  {%- set compared = updated | reject('in', ignore) | list -%}

  {{ create_date_partitions(target, source, partition_by['column']) }}

  {{ record_written_days(source, partition_by['column']) }}

  insert into {{ target }} as target ({{ columns | join(', ') }})
  select {{ columns | join(', ') }} from {{ source }}
  on conflict ({{ unique_key | join(', ') }}) do update set
  {%- for column in updated %}
    {{ column }} = excluded.{{ column }}{{ "," if not loop.last }}
  {%- endfor %}
  where ({% for column in compared %}target.{{ column }}{{ ", " if not loop.last }}{% endfor %})
    is distinct from ({% for column in compared %}excluded.{{ column }}{{ ", " if not loop.last }}{% endfor %})
{% endmacro %}


{#- After a full refresh the partitions carry the intermediate table's name; give them canonical names.
    Runs as a non-transactional post-hook, after dbt has dropped the old table. -#}
{% macro rename_partitions(relation) -%}
{%- if target.type != 'postgres' %}{{ return('') }}{% endif -%}
{%- set relation = relation.include(database=false) -%}
do $$
declare
    part record;
begin
    for part in
        select child.relname as name,
               '{{ relation.identifier }}_p' || to_char({{ partition_lower_bound('child') }}, 'YYYYMMDD') as wanted
        from pg_inherits
        join pg_class as child on child.oid = pg_inherits.inhrelid
        where pg_inherits.inhparent = '{{ relation }}'::regclass
    loop
        if part.name <> part.wanted then
            execute format('alter table %I.%I rename to %I', '{{ relation.schema }}', part.name, part.wanted);
        end if;
    end loop;
end
$$;
{%- endmacro %}


{#- Every partition carries the model's column comments too, and a table comment naming its day and parent: BI
    tools list partitions as tables of their own. Only comments that differ are written, so a build that adds no
    partition writes none. Runs as a non-transactional post-hook (after rename_partitions); `model` is the
    partitioned model being built. Each run leaves every partition's comments right (the block is one statement:
    all or nothing), so the column comments are compared on every partition only when the newest partition that
    already has its table comment shows a column description changed; otherwise only partitions without their
    table comment (new ones) are looked at: an hourly build does not read every day's comments. -#}
{% macro comment_partitions(relation) -%}
{%- if target.type != 'postgres' %}{{ return('') }}{% endif -%}
{%- set relation = relation.include(database=false) -%}
{%- set described = [] -%}
{%- for name, column in model.columns.items() if column.description -%}
  {%- do described.append((name, column.description)) -%}
{%- endfor -%}
do $comments$
declare
    part record;
    wanted text;
    descriptions_changed boolean := false;
begin
    {%- if described %}
    select coalesce(bool_or(
        {%- for name, description in described %}
        col_description(newest.oid, (
            select attnum from pg_attribute where attrelid = newest.oid and attname = {{ sql_string(name) }}
        )) is distinct from {{ sql_string(description) }}{{ ' or' if not loop.last }}
        {%- endfor %}
    ), false)
    into descriptions_changed
    from (
        select child.oid
        from pg_inherits
        join pg_class as child on child.oid = pg_inherits.inhrelid
        where
            pg_inherits.inhparent = {{ sql_string(relation) }}::regclass
            and obj_description(child.oid, 'pg_class') is not null
        order by {{ partition_lower_bound('child') }} desc nulls last
        limit 1
    ) as newest;
    {%- endif %}
    for part in
        select child.oid, child.relname, {{ partition_lower_bound('child') }} as day,
               obj_description(child.oid, 'pg_class') as table_comment
        from pg_inherits
        join pg_class as child on child.oid = pg_inherits.inhrelid
        where pg_inherits.inhparent = {{ sql_string(relation) }}::regclass
    loop
        wanted := 'The ' || coalesce(part.day::text, 'default') || ' partition of '
            || {{ sql_string(relation.schema ~ '.' ~ relation.identifier) }} || ': query the parent table.';
        continue when part.table_comment is not distinct from wanted and not descriptions_changed;
        if part.table_comment is distinct from wanted then
            execute format('comment on table %I.%I is %L', {{ sql_string(relation.schema) }}, part.relname, wanted);
        end if;
        {%- for name, description in described %}
        if col_description(part.oid, (
            select attnum from pg_attribute where attrelid = part.oid and attname = {{ sql_string(name) }}
        )) is distinct from {{ sql_string(description) }} then
            execute format(
                'comment on column %I.%I.%I is %L', {{ sql_string(relation.schema) }}, part.relname, {{ sql_string(name) }},
                {{ sql_string(description) }}
            );
        end if;
        {%- endfor %}
    end loop;
end
$comments$;
{%- endmacro %}


{#- Post-hook: VACUUM the partitions of `relation` this run wrote rows to (the days ops.written_days records for this
    run; after a full build, those holding a row with this run's _built_at), so an hourly build vacuums today's
    partition and the late days', not the whole history. -#}
{% macro vacuum_changed_partitions(relation) %}{{ return(adapter.dispatch('vacuum_changed_partitions')(relation)) }}{% endmacro %}

{% macro default__vacuum_changed_partitions(relation) -%}
  {%- if execute -%}
    {%- set written = run_query(
        "select day::text from ops.written_days where model = " ~ sql_string(model_build_key())
        ~ " and written_at = " ~ built_at()).columns[0].values() | list -%}
    {%- if written and none not in written -%}
      {%- set days = sql_date_list(written) -%}
    {%- elif written -%}
      {#- a full build, or the first run that keeps the record: the days holding this run's rows -#}
      {%- set days = "select distinct " ~ adapter.quote(config.require('partition_by')['column']) ~ " from "
          ~ relation ~ " where _built_at = " ~ built_at() -%}
    {%- endif -%}
    {%- set found = run_query(
        "select format('%I.%I', namespace.nspname, child.relname) from pg_inherits "
        ~ "join pg_class as child on child.oid = pg_inherits.inhrelid "
        ~ "join pg_namespace as namespace on namespace.oid = child.relnamespace "
        ~ "where pg_inherits.inhparent = '" ~ relation.include(database=false) ~ "'::regclass and "
        ~ partition_lower_bound('child') ~ " in (" ~ days ~ ")").columns[0].values() | list if written else [] -%}
    {%- if found -%}
      vacuum {{ found | join(', ') }}
    {%- endif -%}
  {%- endif -%}
{%- endmacro %}

{% macro spark__vacuum_changed_partitions(relation) %}{% endmacro %}


{#- The first and last UTC date of raw.events: fct_events' partition bounds on a full build (min and max through the
    index on "timestamp"). -#}
{% macro raw_event_date_bounds() -%}
  {%- set at = adapter.quote('timestamp') -%}
  {{ return("select cast(" ~ at_utc("min(" ~ at ~ ")") ~ " as date), cast(" ~ at_utc("max(" ~ at ~ ")") ~ " as date) from "
            ~ source('raw', 'events')) }}
{%- endmacro %}
