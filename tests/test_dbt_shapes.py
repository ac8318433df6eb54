"""Models that loop over dbt_project.yml's funnels still compile to valid SQL of the right shape when an analyst
configures none (the `no_rows` branch is not exercised by any build of the default project)."""

from __future__ import annotations

import os
import subprocess

import psycopg2

from orchestration.defs.transform.project import DBT_PROJECT_DIR, dbt_executable

FUNNEL_MODELS = {
    "int_funnel_events": ["funnel_name", "definition_hash", "step_index", "message_id", "person_id", "event_at",
                          "attributes", "_built_at"],
    "int_funnel_persons": ["funnel_name", "definition_hash", "person_id", "step_index", "step_name", "entry_at",
                           "cohort_date", "entry_message_id", "entry_attributes", "reached_at",
                           "seconds_from_previous", "_built_at"],
    "int_funnel_breakdown_persons": ["funnel_name", "definition_hash", "person_id", "cohort_date", "steps_reached",
                                     "breakdown_by", "breakdown_value", "_built_at"],
}  # fmt: skip


def test_funnel_models_without_funnels_are_empty_and_well_formed(own_database, tmp_path):
    # an empty database of its own: where the models were built, they compile as incremental runs
    settings = own_database
    target = tmp_path / "target"
    subprocess.run(
        [dbt_executable(), "compile", "--quiet", "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target),
         "--select", *FUNNEL_MODELS, "--vars", "{funnels: []}"],
        cwd=DBT_PROJECT_DIR, env=dict(os.environ, DATABASE_URL=settings.database_url), check=True,
    )  # fmt: skip
    compiled = {path.stem: path.read_text() for path in target.rglob("compiled/**/int_funnel_*.sql")}
    assert set(compiled) == set(FUNNEL_MODELS)
    connection = psycopg2.connect(settings.database_url)
    try:
        with connection.cursor() as cursor:
            for model, columns in FUNNEL_MODELS.items():
                cursor.execute(compiled[model])
                assert cursor.fetchall() == []
                assert [column.name for column in cursor.description] == columns
    finally:
        connection.close()
