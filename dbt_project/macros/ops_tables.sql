{#- Tables AnalyticsPro writes outside dbt that models read, created before every dbt run so a model can
    always select from them (on-run-start in dbt_project.yml).
    ops.person_archive_history: per person and archive file, the aggregates of their events that were moved
    to the cold tier (warehouse/archive.py), so dim_users keeps a person's whole history.
    ops.model_loads: per incremental model, the raw loads it has read (macros/incremental_scope.sql).
    ops.erased_events: the (date, event name) pairs of events a GDPR erasure deleted (warehouse/erasure.py), no ids:
    incremental models recompute the dates and keys they feed.
    ops.cohort_changes: per retention cell, what an int_cohort_persons build changed in it (members, active
    persons, persons whose last active period it is), no ids: fct_cohort_retention adds them to its cells
    (macros/cohort_changes.sql).
    ops.activity_coverage_changes: per date, what an int_person_days build changed in the running sums of WAU and MAU
    (no ids; a row without a date marks a full build): int_active_coverage adds them (macros/coverage_changes.sql).
    ops.model_builds: per model, the start of the run that last built it, and for the funnel models the definitions
    (funnel name -> hash) their rows were built from (macros/incremental_scope.sql, macros/funnels.sql).
    ops.funnel_breakdown_changes: per funnel breakdown cell and furthest step reached, what an
    int_funnel_breakdown_persons build changed in it (no ids; a row without a dimension marks a funnel, or with no
    funnel every funnel, to recount): fct_funnel_breakdown adds them (macros/funnel_breakdown_changes.sql).
    ops.funnel_cohort_changes: the (funnel, cohort date) keys an int_funnel_persons build took persons out of (no ids;
    a row without a date marks a funnel, or with no funnel every funnel, to compare whole): fct_funnel_steps
    recomputes them (macros/funnels.sql).
    ops.written_days: per date-partitioned model (fct_events), the days each run wrote rows to, and one row without a
    day from when the record is complete (macros/written_days.sql): "rows written after T" reads only those
    days' partitions (events_changed_since in macros/incremental_scope.sql). -#}
{% macro create_ops_tables() %}{{ return(adapter.dispatch('create_ops_tables')()) }}{% endmacro %}

{% macro default__create_ops_tables() -%}
create schema if not exists ops;
create table if not exists ops.person_archive_history (
    {%- for column in person_archive_history_columns() %}
    {{ column }},
    {%- endfor %}
    primary key (person_id, archive_file)
);
create table if not exists ops.model_loads (
    model text not null,
    load_id text not null,
    read_at timestamptz not null default now(),
    primary key (model, load_id)
);
create table if not exists ops.erased_events (
    event_date date not null,
    event_name text,
    erased_at timestamptz not null default now()
);
create table if not exists ops.cohort_changes (
    cohort_grain text not null,
    cohort_start date,
    period_number integer,
    members bigint not null,
    active bigint not null,
    last_active bigint not null,
    changed_at timestamptz not null
);
create table if not exists ops.activity_coverage_changes (
    step_date date,
    wau_step bigint not null,
    mau_step bigint not null,
    changed_at timestamptz not null
);
create table if not exists ops.model_builds (
    model text primary key,
    built_at timestamptz not null,
    funnel_definitions jsonb
);
create table if not exists ops.written_days (
    model text not null,
    day date,
    written_at timestamptz not null
);
create index if not exists written_days_model_written_at on ops.written_days (model, written_at);
create table if not exists ops.funnel_cohort_changes (
    funnel_name text,
    cohort_date date,
    changed_at timestamptz not null
);
create table if not exists ops.funnel_breakdown_changes (
    funnel_name text,
    breakdown_by text,
    breakdown_value text,
    cohort_date date,
    steps_reached integer,
    persons bigint not null,
    changed_at timestamptz not null
);
{%- endmacro %}
