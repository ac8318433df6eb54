{#- Tables AnalyticsPro writes outside dbt that models read, created before every dbt run so a model can
    always select from them (on-run-start in dbt_project.yml).
    ops.person_archive_history: per person and archive file, the aggregates of their events that were moved
    to the cold tier (warehouse/archive.py), so dim_users keeps a person's whole history. -#}
{% macro create_ops_tables() %}{{ return(adapter.dispatch('create_ops_tables')()) }}{% endmacro %}

{% macro default__create_ops_tables() -%}
create schema if not exists ops;
create table if not exists ops.person_archive_history (
    person_id text not null,
    archive_file text not null,
    user_id text,
    first_seen_at timestamptz,
    last_seen_at timestamptz,
    first_activity_at timestamptz,
    last_activity_at timestamptz,
    signed_up_at timestamptz,
    activity_events bigint not null default 0,
    active_days integer not null default 0,
    total_revenue numeric(20, 6) not null default 0,
    traits jsonb,
    last_identified_at timestamptz,
    primary key (person_id, archive_file)
);
{%- endmacro %}
