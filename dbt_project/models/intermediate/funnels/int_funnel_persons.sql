-- Per funnel and person: the steps they reached and when. A person enters on their first-ever
-- step-1 event; step k is reached by their earliest step-k event at or after the time they reached
-- step k-1 and no later than entry + conversion_window_days x 24 h. One row per reached step.
-- Incremental: persons who gained an event matching a funnel step (a new page view elsewhere changes no funnel)
-- and persons who lost events are recomputed from their whole history; a funnel whose
-- definition changed is recomputed for everyone. A person's rows of a funnel that come out as before keep their
-- _built_at, so the funnel marts recompute only the entry cohorts of persons whose funnel really changed (found
-- through the _built_at index).
-- depends_on: {{ ref('int_identity_map') }}, {{ ref('fct_events') }}
{{ config(
    incremental_strategy='append',
    pre_hook=[
        "{{ delete_changed_funnels() }}",
        "{{ rebuild_changed_persons(keep_previous=true, relevant=any_funnel_step_condition()) }}",
    ],
    post_hook=[
        "{{ record_funnel_cohort_changes() }}", "{{ record_funnel_definitions() }}", "{{ record_identity_built() }}",
    ],
    lake_merge_key='person_id',
    lake_merge_touched='cohort_date',
    lake_merge_kind='funnels',
    indexes=[{'columns': ['funnel_name', 'cohort_date']}, {'columns': ['person_id']}, {'columns': ['_built_at']}],
) }}

{%- set unchanged = unchanged_funnels() %}
{%- set merging = lake_merge_incremental() %}
{%- set scope = adapter.quote(this.identifier ~ '__scope') %}

-- Steps read int_funnel_events directly (not through a CTE), so each join can use its statistics and
-- its (funnel_name, person_id, step_index, event_at) index.
with

{%- for funnel in funnels() %}
    {%- set f = loop.index %}
    {%- set window = "interval '" ~ (funnel.get('conversion_window_days') or 14) ~ " days'" %}

    f{{ f }}_step_1 as (

        select
            person_id,
            cast(null as {{ timestamptz_type() }}) as previous_reached_at,
            min(event_at) as entry_at,
            min(event_at) as reached_at,
            {{ first_by('message_id', 'event_at, message_id') }} as entry_message_id,
            {{ first_by('attributes', 'event_at, message_id') }} as entry_attributes
        from {{ ref('int_funnel_events') }}
        where
            funnel_name = {{ funnel_name_literal(funnel) }}
            and step_index = 1
        {%- if funnel['name'] in unchanged %}
                and person_id in (select scope.person_id from {{ scope }} as scope)
            {%- elif merging %}
                -- on Spark, the run's persons (merge-on-read: macros/lake_merge.sql)
                and {{ lake_merge_filter('person_id') }}
            {%- endif %}
        group by person_id

    ),

    {%- for step in funnel['steps'][1:] %}
        {%- set k = loop.index + 1 %}

        f{{ f }}_step_{{ k }} as (

            select
                previous.person_id,
                previous.entry_at,
                previous.reached_at as previous_reached_at,
                previous.entry_message_id,
                min(step.event_at) as reached_at
            from f{{ f }}_step_{{ k - 1 }} as previous
            inner join {{ ref('int_funnel_events') }} as step
                on
                    step.funnel_name = {{ funnel_name_literal(funnel) }}
                    and step.step_index = {{ k }}
                    and previous.person_id = step.person_id
                    and previous.reached_at <= step.event_at
                    and step.event_at <= previous.entry_at + {{ window }}
            {%- if funnel['name'] in unchanged %}
                    -- the recomputed persons' step events by the index (a join alone may read the step's whole
                    -- index: a merge join over every person who ever reached it)
                    and step.person_id = any(array(select scope.person_id from {{ scope }} as scope))
                {%- elif merging %}
                    and {{ lake_merge_filter('step.person_id') }}
                {%- endif %}
            group by previous.person_id, previous.entry_at, previous.reached_at, previous.entry_message_id

        ),
    {%- endfor %}

    f{{ f }}_reached as (

        {%- for step in funnel['steps'] %}
            select
                {{ funnel_key_columns(funnel) }},
                {{ loop.index }} as step_index,
                cast({{ sql_string(funnel_step_name(step, loop.index)) }} as {{ text_type() }}) as step_name,
                person_id,
                entry_at,
                entry_message_id,
                {%- if loop.index == 1 %}
                    entry_attributes,
                {%- else %}
                    cast(null as {{ json_type() }}) as entry_attributes,
                {%- endif %}
                reached_at,
                previous_reached_at
            from f{{ f }}_step_{{ loop.index }}
            {{ "union all" if not loop.last }}
        {%- endfor %}

    ),
{%- endfor %}

reached as (

    {%- if not funnels() %}
        {{ no_rows([
            ('funnel_name', text_type()), ('definition_hash', text_type()), ('step_index', 'integer'),
            ('step_name', text_type()), ('person_id', text_type()), ('entry_at', timestamptz_type()),
            ('entry_message_id', text_type()), ('entry_attributes', json_type()),
            ('reached_at', timestamptz_type()), ('previous_reached_at', timestamptz_type()),
        ]) }}
    {%- endif %}
    {%- for funnel in funnels() %}
        select * from f{{ loop.index }}_reached
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

computed as (

    select
        funnel_name,
        definition_hash,
        person_id,
        cast(step_index as integer) as step_index,
        step_name,
        entry_at,
        cast({{ at_utc('entry_at') }} as date) as cohort_date,
        entry_message_id,
        entry_attributes,
        reached_at,
        cast({{ seconds_between('previous_reached_at', 'reached_at') }} as numeric(20, 3)) as seconds_from_previous
    from reached

)

{{ built_at_unless_unchanged('computed', ['funnel_name', 'person_id'], [
    'definition_hash', 'step_index', 'step_name', 'entry_at', 'cohort_date', 'entry_message_id', 'entry_attributes',
    'reached_at', 'seconds_from_previous',
]) }}
{# the funnel marts read whole (funnel, cohort date)s: a full build lays each one's rows together, where person order
    spreads a cohort date over every page and the read grows with history #}
{{ order_on_full_build('funnel_name, cohort_date') }}
