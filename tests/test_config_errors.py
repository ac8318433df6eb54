"""Bad configuration and unreachable services get a clear message that says what to do, and a non-zero exit."""

from __future__ import annotations

import pytest

from ingestion.settings import get_settings
from orchestration.cli import main


def test_bad_number_in_env(monkeypatch):
    monkeypatch.setenv("HOT_METRICS_TTL_SECONDS", "two days")
    with pytest.raises(ValueError, match=r"HOT_METRICS_TTL_SECONDS='two days' is not a whole number"):
        get_settings()


@pytest.mark.parametrize("command", [["load", "{missing}"], ["materialize"]])
def test_missing_bucket_folder(command, monkeypatch, tmp_path, capsys):
    missing = tmp_path / "no-such-bucket"
    monkeypatch.setenv("EVENTS_BUCKET_URL", str(missing))
    assert main([part.format(missing=missing) for part in command]) == 2
    err = capsys.readouterr().err
    assert f"the events folder {missing} does not exist" in err
    assert "analyticspro generate --out" in err


def test_postgres_unreachable(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/analytics")
    assert main(["setup"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:1/analytics" in err
    assert "scripts/ensure-services.sh" in err


def test_redis_unreachable(monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["setup"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in err


def test_password_is_not_printed(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db.example:5432/analytics")
    assert "s3cret" not in get_settings().redacted_database_url
