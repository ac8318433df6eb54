{#- The name of the track event that plays `role` in the metrics (var metric_events in dbt_project.yml), as a
    SQL string literal: where event_name = {{ metric_event('signup') }}. -#}
{% macro metric_event(role) -%}
  {%- set names = var('metric_events') -%}
  {%- if role not in names -%}
    {{ exceptions.raise_compiler_error(
        "var metric_events in dbt_project.yml has no '" ~ role ~ "' (it has: " ~ names.keys() | join(', ') ~ ")") }}
  {%- endif -%}
  {{- sql_string(names[role]) -}}
{%- endmacro %}

{#- A condition true for the track events that play `role`. -#}
{% macro is_metric_event(role, event_type='event_type', event_name='event_name') -%}
  ({{ event_type }} = 'track' and {{ event_name }} = {{ metric_event(role) }})
{%- endmacro %}
