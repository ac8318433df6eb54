{#- ops.written_days: the days each run of fct_events (day-partitioned) wrote rows to, so that "the rows written after
    T" can name their partitions and PostgreSQL plans and reads only those (events_changed_since in
    incremental_scope.sql): with a year of day partitions, a query that cannot prune plans and opens every partition
    and its indexes. fct_mrr records its months the same way, for revenue_monthly; the scoped tests read the days a
    build wrote (macros/tests/scoped_tests.sql).
    The row without a day says from when the record is complete: a query for rows written after T can use the days
    only when that row's written_at <= T (a full build writes every day at its written_at; a table built before the
    record existed gets the row on its next incremental run; records older than 30 days are pruned and the row moves
    to the newest one pruned). Written in the model's transaction, with its rows. -#}
{% macro reset_written_days() -%}
    delete from ops.written_days where model = {{ sql_string(model_build_key()) }};
    insert into ops.written_days (model, day, written_at) values ({{ sql_string(model_build_key()) }}, null, {{ built_at() }});
{%- endmacro %}

{#- Incremental run: the days of the rows staged for the upsert (a superset of the days it rewrites: unchanged rows are
    not rewritten), at this run's _built_at. -#}
{% macro record_written_days(source, column) -%}
  {%- set key = sql_string(model_build_key()) -%}
    insert into ops.written_days (model, day, written_at)
    select {{ key }}, null, {{ built_at() }}
    where not exists (select from ops.written_days where model = {{ key }} and day is null);
    insert into ops.written_days (model, day, written_at)
    select distinct {{ key }}, {{ adapter.quote(column) }}, {{ built_at() }} from {{ source }}
    where {{ adapter.quote(column) }} is not null;
    with pruned as (
        delete from ops.written_days
        where model = {{ key }} and day is not null and written_at < {{ built_at() }} - interval '30 days'
        returning written_at
    )
    update ops.written_days set written_at = greatest(written_at, (select max(pruned.written_at) from pruned))
    where model = {{ key }} and day is null and exists (select from pruned);
{%- endmacro %}


{#- Post-hook of fct_mrr: the months its run deleted rows in (the rebuilt persons' old rows, kept by the pre-hook in
    fct_mrr__previous) or wrote rows in, in ops.written_days (a full build starts the record again). -#}
{% macro record_rewritten_months() -%}
  {%- if target.type != 'postgres' -%}
  {%- elif not is_incremental() -%}
    {{ reset_written_days() }}
  {%- else -%}
    {{ record_written_days(
        "(select previous.month from " ~ adapter.quote(this.identifier ~ '__previous') ~ " as previous union "
        ~ "select written.month from " ~ this ~ " as written where written._built_at = " ~ built_at() ~ ") as months",
        'month') }}
  {%- endif -%}
{%- endmacro %}


{#- The days of `relation` written after `since` (text; with `exactly`, by the run that started at `since`), as a sorted
    list of 'YYYY-MM-DD' strings, or none when the record cannot tell (no record, or not complete since then; on Spark;
    when parsing). -#}
{% macro written_days_since(relation, since, exactly=false) -%}
  {%- if not execute or since is none or target.type != 'postgres' -%}{{ return(none) }}{%- endif -%}
  {%- set result = run_query(
      "select coalesce(bool_or(day is null and written_at <= cast('" ~ since ~ "' as timestamptz)), false), "
      ~ "coalesce(array_to_string(array_agg(distinct day::text order by day::text) filter (where day is not null), ','), '') "
      ~ "from ops.written_days where model = '" ~ relation.schema ~ "." ~ relation.identifier ~ "' "
      ~ "and (day is null or written_at " ~ ('=' if exactly else '>') ~ " cast('" ~ since ~ "' as timestamptz))") -%}
  {%- set row = result.rows[0] -%}
  {%- if not row[0] -%}{{ return(none) }}{%- endif -%}
  {{ return(row[1].split(',') if row[1] else []) }}
{%- endmacro %}
