{#- A person's aggregates, written once. dim_users computes them over a person's warm events and adds the
    aggregates of their archived days; the archive (warehouse/archive.py) records a day's aggregates before the
    day leaves PostgreSQL, through the function ops.person_aggregates(day) that dim_users' post-hook creates from
    these same macros. Archived and warm days never overlap, so counts and sums add up. -#}

{#- The columns of a person's aggregates, in order, with their PostgreSQL types and the constraints of the
    table that keeps them (ops.person_archive_history): the one list dim_users, the archive's function and
    that table share. -#}
{% macro person_aggregate_columns() -%}
  {{ return([
      ('person_id', 'text', 'not null'),
      ('user_id', 'text', ''),
      ('first_seen_at', 'timestamptz', ''),
      ('last_seen_at', 'timestamptz', ''),
      ('first_activity_at', 'timestamptz', ''),
      ('last_activity_at', 'timestamptz', ''),
      ('signed_up_at', 'timestamptz', ''),
      ('activity_events', 'bigint', 'not null default 0'),
      ('active_days', 'integer', 'not null default 0'),
      ('total_revenue', 'numeric(20,6)', 'not null default 0'),
  ]) }}
{%- endmacro %}

{#- The table that keeps them (ops.person_archive_history): per person and archive file, with the latest traits. The
    column types in PostgreSQL's names; `spark_types` maps them to Spark's. -#}
{% macro person_archive_history_columns(spark_types=false) -%}
  {%- set spark = {'text': 'string', 'timestamptz': 'timestamp', 'integer': 'int', 'jsonb': 'string',
                   'numeric(20,6)': 'decimal(20, 6)'} -%}
  {%- set columns = person_aggregate_columns() -%}
  {%- set table = [columns[0], ('archive_file', 'text', 'not null')] + columns[1:]
                  + [('traits', 'jsonb', ''), ('last_identified_at', 'timestamptz', '')] -%}
  {%- set rendered = [] -%}
  {%- for name, type, constraints in table -%}
    {%- do rendered.append(name ~ ' ' ~ (spark.get(type, type) if spark_types else (type ~ ' ' ~ constraints) | trim)) -%}
  {%- endfor -%}
  {{ return(rendered) }}
{%- endmacro %}

{#- The same names, comma-separated (a select list). -#}
{% macro person_aggregate_names() -%}
  {%- for column in person_aggregate_columns() %}{{ column[0] }}{{ ', ' if not loop.last }}{% endfor -%}
{%- endmacro %}

{#- One row per person of `events` (fct_events rows): first/last seen, first/last activity, signup, activity
    events, active days, revenue (docs/metrics.md, People). -#}
{% macro person_aggregates(events) -%}
    select
        person_id,
        max(user_id) as user_id,
        min(event_at) as first_seen_at,
        max(event_at) as last_seen_at,
        min(event_at) filter (where is_activity) as first_activity_at,
        max(event_at) filter (where is_activity) as last_activity_at,
        min(event_at) filter (where {{ is_metric_event('signup') }}) as signed_up_at,
        count(*) filter (where is_activity) as activity_events,
        count(distinct event_date) filter (where is_activity) as active_days,
        coalesce(sum(revenue) filter (where {{ is_metric_event('purchase') }}), 0) as total_revenue
    from {{ events }}
    group by person_id
{%- endmacro %}

{#- Every trait key and value sent in the identify calls of `events`, with when. -#}
{% macro identify_trait_values(events) -%}
    select
        events.person_id,
        trait.key,
        trait.value,
        events.event_at,
        events.message_id
    from {{ events }} as events
    cross join lateral {{ json_each('events.traits', 'trait') }}
    where events.event_type = 'identify' and {{ json_kind('events.traits') }} = 'object'
{%- endmacro %}

{#- One row per person of `trait_values` (person_id, key, value, event_at, message_id): the latest value of every
    key as one object, and when the person was last identified. -#}
{% macro latest_traits(trait_values) -%}
    select
        person_id,
        {{ json_object_agg('key', 'value') }} as traits,
        max(last_identified_at) as last_identified_at
    from (
        select
            person_id,
            key,
            {{ last_by('value', 'event_at, message_id') }} as value,
            max(event_at) as last_identified_at
        from {{ trait_values }}
        group by person_id, key
    ) as latest_trait_values
    group by person_id
{%- endmacro %}

{#- ops.person_aggregates(day): the aggregates and latest traits of each person over the fct_events rows of one
    day (PostgreSQL only: the cold tier is PostgreSQL's). -#}
{% macro create_person_aggregates_function() %}
  {{ return(adapter.dispatch('create_person_aggregates_function')()) }}
{% endmacro %}

{% macro default__create_person_aggregates_function() -%}
-- dropped first: `create or replace` cannot change the columns it returns
drop function if exists ops.person_aggregates(date);
create function ops.person_aggregates(day date)
returns table (
    {%- for name, type, _ in person_aggregate_columns() %}
    {{ name }} {{ type }},
    {%- endfor %}
    traits jsonb,
    last_identified_at timestamptz
)
language sql stable as $function$
    with
    day_events as (select * from {{ ref('fct_events') }} where event_date = day),
    people as ({{ person_aggregates('day_events') }}),
    trait_values as ({{ identify_trait_values('day_events') }}),
    traits as ({{ latest_traits('trait_values') }})
    select
        {%- for name, type, _ in person_aggregate_columns() %}
        cast(people.{{ name }} as {{ type }}),
        {%- endfor %}
        traits.traits,
        traits.last_identified_at
    from people
    left join traits on people.person_id = traits.person_id
$function$
{%- endmacro %}

{% macro spark__create_person_aggregates_function() %}{% endmacro %}
