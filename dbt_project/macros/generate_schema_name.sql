{#- Models go to the schema their folder names (staging, intermediate, analytics), not
    <target>_<custom>: BI tools and the dashboards read fixed schema names. Isolation between
    runs comes from separate databases (DATABASE_URL), not schema prefixes. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
