"""The Dagster instance configs in deploy/: the production one keeps runs, events and schedules in PostgreSQL."""

from __future__ import annotations

import dagster as dg
import psycopg2

from orchestration.instance import MANAGED_MARKER, prepare_dagster_home


@dg.asset
def tiny() -> None:
    """A one-step asset to run through the instance."""


def test_production_instance_stores_runs_in_postgres(own_database, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_PG_URL", own_database.database_url)
    home = prepare_dagster_home()
    assert "postgres_url" in (home / "dagster.yaml").read_text()
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        result = dg.materialize([tiny], instance=instance)
        assert result.success
    with psycopg2.connect(own_database.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select status from runs where run_id = %s", (result.run_id,))
        assert cursor.fetchone() == ("SUCCESS",)
        cursor.execute("select count(*) from event_logs where run_id = %s", (result.run_id,))
        assert cursor.fetchone()[0] > 0
    connection.close()


def test_local_instance_is_sqlite_and_an_operators_own_config_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    config = prepare_dagster_home() / "dagster.yaml"
    assert MANAGED_MARKER in config.read_text() and "postgres_url" not in config.read_text()
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ != "PostgresRunStorage"
    config.write_text("telemetry:\n  enabled: false\n")  # the operator's own file
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql://elsewhere/dagster")
    prepare_dagster_home()
    assert config.read_text() == "telemetry:\n  enabled: false\n"
