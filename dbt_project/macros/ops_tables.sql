{#- Tables AnalyticsPro writes outside dbt that models read, created before every dbt run so a model can
    always select from them (on-run-start in dbt_project.yml).
    ops.person_archive_history: per person and archive file, the aggregates of their events that were moved
    to the cold tier (warehouse/archive.py), so dim_users keeps a person's whole history. -#}
{% macro create_ops_tables() %}{{ return(adapter.dispatch('create_ops_tables')()) }}{% endmacro %}

{% macro default__create_ops_tables() -%}
create schema if not exists ops;
create table if not exists ops.person_archive_history (
    archive_file text not null,
    {%- for name, type, constraints in person_aggregate_columns() %}
    {{ name }} {{ type }} {{ constraints }},
    {%- endfor %}
    traits jsonb,
    last_identified_at timestamptz,
    primary key (person_id, archive_file)
);
{%- endmacro %}
