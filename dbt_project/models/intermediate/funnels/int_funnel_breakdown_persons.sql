-- Per funnel with breakdowns, person and breakdown dimension: the person's entry cohort date, the furthest step they
-- reached, and their value of the dimension ('(none)' when missing): a person trait from dim_users or a column or
-- property of their entry event. fct_funnel_breakdown counts these rows. Incremental: the persons whose events
-- changed (and those they counted under before) are deleted and recomputed, every person of a funnel whose
-- definition or breakdowns changed too (pre-hook rebuild_changed_breakdown_persons), and what that changed in each
-- breakdown cell is recorded in ops.funnel_breakdown_changes (post-hook; macros/funnel_breakdown_changes.sql).
-- depends_on: {{ ref('int_identity_map') }}, {{ ref('fct_events') }}, {{ ref('int_funnel_persons') }}
{{ config(
    incremental_strategy='append',
    pre_hook=["{{ rebuild_changed_breakdown_persons() }}"],
    lake_merge_key='person_id',
    lake_merge_touched='cohort_date',
    lake_merge_kind='funnel_breakdowns',
    post_hook=[
        "{{ record_funnel_breakdown_changes() }}", "{{ record_funnel_definitions(breakdowns_only=true) }}",
        "{{ record_identity_built() }}",
    ],
    indexes=[{'columns': ['person_id']}],
) }}

{%- set names = configured_funnel_definitions(breakdowns_only=true) | map(attribute=0) | list %}

{%- if not names %}

{{ no_rows([
    ('funnel_name', text_type()), ('definition_hash', text_type()), ('person_id', text_type()),
    ('cohort_date', 'date'), ('steps_reached', 'integer'), ('breakdown_by', text_type()),
    ('breakdown_value', text_type()), ('_built_at', timestamptz_type()),
]) }}

{%- else %}

    with

    reached as (

        select reached.*
        from {{ ref('int_funnel_persons') }} as reached
        where
            reached.funnel_name in ({{ sql_list(names) }})
        {%- if lake_merge_incremental() %}
            -- on Spark, the run's persons (merge-on-read: macros/lake_merge.sql)
            and {{ lake_merge_filter('reached.person_id') }}
        {%- endif %}
        {%- if is_incremental() %}
            and reached.person_id in (
                select scope.person_id from {{ adapter.quote(this.identifier ~ '__scope') }} as scope
            )
        {%- endif %}

    ),

    -- one row per funnel and person: cohort, how far they got, and their entry event's attributes
    entries as (

        select
            funnel_name,
            definition_hash,
            person_id,
            min(cohort_date) as cohort_date,
            max(step_index) as steps_reached,
            {{ first_by('entry_attributes', 'step_index', filter='step_index = 1') }} as entry_attributes
        from reached
        group by funnel_name, definition_hash, person_id

    ),

    -- one join with dim_users, then one row per configured dimension (a lateral VALUES list)
    labelled as (

        {%- set selects = [] %}
        {%- for funnel in funnels() if funnel.get('breakdowns') %}
            {%- set dimensions = [] %}
            {%- for dimension in funnel['breakdowns'] %}
                {%- do dimensions.append(
                    ["'" ~ dimension ~ "'", "cast(" ~ funnel_breakdown_expression(dimension) ~ " as " ~ text_type() ~ ")"]) %}
            {%- endfor %}
            {%- do selects.append(
                "select entries.funnel_name, entries.definition_hash, entries.person_id, entries.cohort_date, "
                ~ "entries.steps_reached, dimension.breakdown_by, "
                ~ "coalesce(dimension.breakdown_value, '(none)') as breakdown_value "
                ~ "from entries "
                ~ "left join " ~ ref('dim_users') ~ " as people on entries.person_id = people.person_id "
                ~ "cross join " ~ lateral_rows(dimensions, 'dimension', ['breakdown_by', 'breakdown_value']) ~ " "
                ~ "where entries.funnel_name = " ~ funnel_name_literal(funnel)
            ) %}
        {%- endfor %}
        {{ selects | join('\n        union all\n        ') }}

    )

    select
        cast(funnel_name as {{ text_type() }}) as funnel_name,
        cast(definition_hash as {{ text_type() }}) as definition_hash,
        cast(person_id as {{ text_type() }}) as person_id,
        cast(cohort_date as date) as cohort_date,
        cast(steps_reached as integer) as steps_reached,
        cast(breakdown_by as {{ text_type() }}) as breakdown_by,
        cast(breakdown_value as {{ text_type() }}) as breakdown_value,
        {{ built_at() }} as _built_at
    from labelled

{%- endif %}
