{#- Tables AnalyticsPro writes outside dbt that models read, created before every dbt run so a model can
    always select from them (on-run-start in dbt_project.yml).
    ops.person_archive_history: per person and archive file, the aggregates of their events that were moved
    to the cold tier (warehouse/archive.py), so dim_users keeps a person's whole history. -#}
{% macro create_ops_tables() %}{{ return(adapter.dispatch('create_ops_tables')()) }}{% endmacro %}

{% macro default__create_ops_tables() -%}
create schema if not exists ops;
create table if not exists ops.person_archive_history (
    {%- for column in person_archive_history_columns() %}
    {{ column }},
    {%- endfor %}
    primary key (person_id, archive_file)
);
{%- endmacro %}
