{#-
  One dbt project, two engines: PostgreSQL (the `dev` target, the default) and Apache Spark (the `spark`
  targets, over the Parquet lake under EVENTS_LAKE_URL). Every piece of SQL whose spelling differs between the
  two sits behind one of these macros (adapter.dispatch: `postgres__x` / `default__x` for PostgreSQL,
  `spark__x` for Spark), so a model reads the same on both and an analyst edits one model per metric.

  JSON columns (properties, traits, context) are jsonb on PostgreSQL and JSON text on Spark.
  Timestamps are timestamptz on PostgreSQL; on Spark they are TIMESTAMP read in the session time zone, which
  the spark targets set to UTC (spark.sql.session.timeZone), so dates are UTC dates on both.
-#}

{#- Column types used in casts. -#}
{% macro text_type() %}{{ return(adapter.dispatch('text_type')()) }}{% endmacro %}
{% macro default__text_type() %}text{% endmacro %}
{% macro spark__text_type() %}string{% endmacro %}

{% macro timestamptz_type() %}{{ return(adapter.dispatch('timestamptz_type')()) }}{% endmacro %}
{% macro default__timestamptz_type() %}timestamptz{% endmacro %}
{% macro spark__timestamptz_type() %}timestamp{% endmacro %}

{#- A number of any size and scale (PostgreSQL's unconstrained numeric; Spark's decimals stop at 38 digits). -#}
{% macro numeric_type() %}{{ return(adapter.dispatch('numeric_type')()) }}{% endmacro %}
{% macro default__numeric_type() %}numeric{% endmacro %}
{% macro spark__numeric_type() %}decimal(38, 12){% endmacro %}

{% macro json_type() %}{{ return(adapter.dispatch('json_type')()) }}{% endmacro %}
{% macro default__json_type() %}jsonb{% endmacro %}
{% macro spark__json_type() %}string{% endmacro %}

{% macro empty_json_object() %}cast('{}' as {{ json_type() }}){% endmacro %}


{#- The text of the JSON value at a path of keys: json_text('context', 'campaign', 'source') is
    context -> 'campaign' ->> 'source' (null when missing; a nested object or array as JSON text). -#}
{% macro json_text(column) %}{{ return(adapter.dispatch('json_text')(column, varargs)) }}{% endmacro %}

{% macro default__json_text(column, keys) -%}
  {{ column }}{% for key in keys %} {{ '->>' if loop.last else '->' }} '{{ key | replace("'", "''") }}'{% endfor %}
{%- endmacro %}

{% macro spark__json_text(column, keys) -%}
  get_json_object({{ column }}, '{{ json_path(keys) }}')
{%- endmacro %}


{#- PostgreSQL's jsonb_typeof of the value at a path of keys: 'object', 'array', 'string', 'number',
    'boolean' or 'null' (a JSON null), and SQL null when the key is missing. -#}
{% macro json_kind(column) %}{{ return(adapter.dispatch('json_kind')(column, varargs)) }}{% endmacro %}

{% macro default__json_kind(column, keys) -%}
  jsonb_typeof({{ column }}{% for key in keys %} -> '{{ key | replace("'", "''") }}'{% endfor %})
{%- endmacro %}

{% macro spark__json_kind(column, keys) -%}
  {%- if keys -%}
    {{ variant_kind("variant_get(try_parse_json(" ~ column ~ "), '" ~ json_path(keys) ~ "')") }}
  {%- else -%}
    {{ variant_kind("try_parse_json(" ~ column ~ ")") }}
  {%- endif -%}
{%- endmacro %}


{#- The key/value rows of a JSON object, as a FROM item `alias (key, value)` to join laterally; the value's
    kind is json_value_kind(alias.value) and its JSON text json_value_text(alias.value). -#}
{% macro json_each(column, alias) %}{{ return(adapter.dispatch('json_each')(column, alias)) }}{% endmacro %}
{% macro default__json_each(column, alias) %}jsonb_each({{ column }}) as {{ alias }}{% endmacro %}
{% macro spark__json_each(column, alias) -%}
  variant_explode(try_parse_json({{ column }})) as {{ alias }}
{%- endmacro %}

{% macro json_value_kind(value) %}{{ return(adapter.dispatch('json_value_kind')(value)) }}{% endmacro %}
{% macro default__json_value_kind(value) %}jsonb_typeof({{ value }}){% endmacro %}
{% macro spark__json_value_kind(value) %}{{ variant_kind(value) }}{% endmacro %}


{#- A JSON object built from rows of (key, value) of json_each, one row per key. -#}
{% macro json_object_agg(key, value) %}{{ return(adapter.dispatch('json_object_agg')(key, value)) }}{% endmacro %}
{% macro default__json_object_agg(key, value) %}jsonb_object_agg({{ key }}, {{ value }}){% endmacro %}
{% macro spark__json_object_agg(key, value) -%}
  to_json(map_from_entries(collect_list(struct({{ key }}, {{ value }}))))
{%- endmacro %}


{#- `base` (a JSON object or null) with the non-null values of `entries` (a dict of key: SQL expression)
    set over it: PostgreSQL's base || jsonb_strip_nulls(jsonb_build_object(...)). -#}
{% macro json_merge_non_null(base, entries) %}{{ return(adapter.dispatch('json_merge_non_null')(base, entries)) }}{% endmacro %}

{% macro default__json_merge_non_null(base, entries) -%}
  coalesce({{ base }}, {{ empty_json_object() }}) || jsonb_strip_nulls(jsonb_build_object(
    {%- for key, expression in entries.items() %}
      '{{ key }}', {{ expression }}{{ "," if not loop.last }}
    {%- endfor %}
  ))
{%- endmacro %}

{% macro spark__json_merge_non_null(base, entries) -%}
  {%- set added -%}
    map_filter(map(
      {%- for key, expression in entries.items() %}
        '{{ key }}', cast({{ expression }} as variant){{ "," if not loop.last }}
      {%- endfor %}
    ), (k, v) -> v is not null)
  {%- endset -%}
  to_json(map_concat(
    map_filter(
      coalesce(cast(try_parse_json({{ base }}) as map<string, variant>), cast(map() as map<string, variant>)),
      (k, v) -> not array_contains(map_keys({{ added }}), k)
    ),
    {{ added }}
  ))
{%- endmacro %}


{#- A timestamp's UTC wall-clock time (timestamptz -> timestamp on PostgreSQL), or a UTC wall-clock
    timestamp as an instant (timestamp -> timestamptz): `cast(at_utc('event_at') as date)` is the UTC date.
    On Spark timestamps already read in the session time zone, UTC. -#}
{% macro at_utc(expression) %}{{ return(adapter.dispatch('at_utc')(expression)) }}{% endmacro %}
{% macro default__at_utc(expression) %}({{ expression }} at time zone 'UTC'){% endmacro %}
{% macro spark__at_utc(expression) %}({{ expression }}){% endmacro %}


{#- Seconds from one timestamp to another, exact to the microsecond. -#}
{% macro seconds_between(start, stop) %}{{ return(adapter.dispatch('seconds_between')(start, stop)) }}{% endmacro %}
{% macro default__seconds_between(start, stop) %}extract(epoch from {{ stop }} - {{ start }}){% endmacro %}
{% macro spark__seconds_between(start, stop) -%}
  ((unix_micros({{ stop }}) - unix_micros({{ start }})) / 1000000.0)
{%- endmacro %}


{#- Whole days from one date to another. -#}
{% macro days_between(start, stop) %}{{ return(adapter.dispatch('days_between')(start, stop)) }}{% endmacro %}
{% macro default__days_between(start, stop) %}({{ stop }} - {{ start }}){% endmacro %}
{% macro spark__days_between(start, stop) %}datediff({{ stop }}, {{ start }}){% endmacro %}


{#- Integer division, truncating (PostgreSQL's / on integers). -#}
{% macro int_div(dividend, divisor) %}{{ return(adapter.dispatch('int_div')(dividend, divisor)) }}{% endmacro %}
{% macro default__int_div(dividend, divisor) %}({{ dividend }}) / ({{ divisor }}){% endmacro %}
{% macro spark__int_div(dividend, divisor) %}({{ dividend }}) div ({{ divisor }}){% endmacro %}


{#- The value of the first row in `order_by` order (ties must be broken by it), with an optional filter:
    an aggregate. -#}
{% macro first_by(value, order_by, filter=none) %}{{ return(adapter.dispatch('first_by')(value, order_by, filter)) }}{% endmacro %}
{% macro default__first_by(value, order_by, filter) -%}
  (array_agg({{ value }} order by {{ order_by }}){% if filter %} filter (where {{ filter }}){% endif %})[1]
{%- endmacro %}
{% macro spark__first_by(value, order_by, filter) -%}
  min_by({{ value }}, struct({{ order_by }})){% if filter %} filter (where {{ filter }}){% endif %}
{%- endmacro %}

{#- The value of the last row in `order_by` order. -#}
{% macro last_by(value, order_by) %}{{ return(adapter.dispatch('last_by')(value, order_by)) }}{% endmacro %}
{% macro default__last_by(value, order_by) -%}
  (array_agg({{ value }} order by {{ order_by | replace(',', ' desc,') }} desc))[1]
{%- endmacro %}
{% macro spark__last_by(value, order_by) %}max_by({{ value }}, struct({{ order_by }})){% endmacro %}


{#- The distinct values of a text column, sorted, joined by commas: an aggregate. -#}
{% macro sorted_distinct_list(column) %}{{ return(adapter.dispatch('sorted_distinct_list')(column)) }}{% endmacro %}
{% macro default__sorted_distinct_list(column) %}string_agg(distinct {{ column }}, ',' order by {{ column }}){% endmacro %}
{% macro spark__sorted_distinct_list(column) %}array_join(array_sort(collect_set({{ column }})), ','){% endmacro %}


{#- A FROM item `alias (alias)`: the values from start to stop (inclusive) by step (an interval for dates and
    timestamps, omitted for integers); no rows when stop < start. -#}
{#- `value` as a SQL string literal. PostgreSQL doubles a quote; Spark's parser escapes with a backslash (and reads
    'a''b' as two literals, 'ab'), so both the backslash and the quote are escaped there. -#}
{% macro sql_string(value) %}{{ return(adapter.dispatch('sql_string')(value)) }}{% endmacro %}
{% macro default__sql_string(value) -%}
  '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
{% macro spark__sql_string(value) -%}
  '{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'
{%- endmacro %}

{% macro series(start, stop, alias, step=none) %}{{ return(adapter.dispatch('series')(start, stop, alias, step)) }}{% endmacro %}
{% macro default__series(start, stop, alias, step) -%}
  generate_series({{ start }}, {{ stop }}{% if step %}, {{ step }}{% endif %}) as {{ alias }} ({{ alias }})
{%- endmacro %}
{% macro spark__series(start, stop, alias, step) -%}
  explode(case
    when {{ stop }} >= {{ start }} then sequence({{ start }}, {{ stop }}{% if step %}, {{ step }}{% endif %})
  end) as {{ alias }} ({{ alias }})
{%- endmacro %}


{#- Spark helpers. -#}

{#- A JSONPath for get_json_object / variant_get: $.key, or $['key'] for keys that are not plain names. -#}
{% macro json_path(keys) -%}
  ${% for key in keys %}{% if modules.re.match('^[A-Za-z_][A-Za-z0-9_]*$', key) %}.{{ key }}{% else %}[\'{{ key | replace("'", "") }}\']{% endif %}{% endfor %}
{%- endmacro %}

{#- jsonb_typeof's name for a variant's type (SQL null stays null). -#}
{% macro variant_kind(value) -%}
  case
    when {{ value }} is null then null
    when schema_of_variant({{ value }}) = 'VOID' then 'null'
    when schema_of_variant({{ value }}) = 'STRING' then 'string'
    when schema_of_variant({{ value }}) = 'BOOLEAN' then 'boolean'
    when schema_of_variant({{ value }}) like 'OBJECT%' then 'object'
    when schema_of_variant({{ value }}) like 'ARRAY%' then 'array'
    else 'number'
  end
{%- endmacro %}


{#- A FROM item joined laterally: one row per entry of `rows` (each a list of SQL expressions, which may use
    the columns of the tables before it), as `alias (columns)`. -#}
{% macro lateral_rows(rows, alias, columns) %}{{ return(adapter.dispatch('lateral_rows')(rows, alias, columns)) }}{% endmacro %}
{% macro default__lateral_rows(rows, alias, columns) -%}
  lateral (values
    {%- for row in rows %}
    ({{ row | join(', ') }}){{ "," if not loop.last }}
    {%- endfor %}
  ) as {{ alias }} ({{ columns | join(', ') }})
{%- endmacro %}
{% macro spark__lateral_rows(rows, alias, columns) -%}
  lateral stack({{ rows | length }},
    {%- for row in rows %}
    {{ row | join(', ') }}{{ "," if not loop.last }}
    {%- endfor %}
  ) as {{ alias }} ({{ columns | join(', ') }})
{%- endmacro %}


{#- A double precision value as a decimal type, rounded as PostgreSQL rounds: from the double's 15 significant
    digits (80.96549999999999 is 80.9655000000000, so 80.966 at scale 3, where Spark would round the binary
    value down to 80.965). -#}
{% macro double_to_decimal(expression, type) %}{{ return(adapter.dispatch('double_to_decimal')(expression, type)) }}{% endmacro %}
{% macro default__double_to_decimal(expression, type) %}cast({{ expression }} as {{ type }}){% endmacro %}
{% macro spark__double_to_decimal(expression, type) -%}
  case when {{ expression }} is not null then cast(format_string('%.15g', {{ expression }}) as {{ type }}) end
{%- endmacro %}


{#- The UTC date of a raw event. On Spark, raw.events is the lake, whose event_date partition folders hold each
    event under the UTC date of its timestamp (warehouse/lake.py): the same value, and a filter on it reads only
    those folders. -#}
{% macro raw_event_date() %}{{ return(adapter.dispatch('raw_event_date')()) }}{% endmacro %}
{% macro default__raw_event_date() %}cast({{ at_utc(adapter.quote('timestamp')) }} as date){% endmacro %}
{% macro spark__raw_event_date() %}cast(event_date as date){% endmacro %}


{#- `materialized` before a CTE's body on PostgreSQL (computed once, where a CTE read by a correlated subquery would be
    inlined and computed again per outer row); nothing on Spark, which has no such keyword. -#}
{% macro cte_materialized() %}{{ return(adapter.dispatch('cte_materialized')()) }}{% endmacro %}
{% macro default__cte_materialized() %}materialized{% endmacro %}
{% macro spark__cte_materialized() %}{% endmacro %}
