"""Bad configuration and unreachable services get a clear message that says what to do, and a non-zero exit."""

from __future__ import annotations

import pytest

import common.settings as settings_module
from cli import main
from common.settings import get_settings
from ingestion.events import configured_sources


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


@pytest.mark.parametrize(
    ("variable", "url", "message"),
    [
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/analytics", "cannot reach PostgreSQL at {url}"),
        ("REDIS_URL", "redis://127.0.0.1:1/0", "cannot reach Redis at {url}"),
    ],
)
def test_service_unreachable(variable, url, message, monkeypatch, capsys):
    monkeypatch.setenv(variable, url)
    assert main(["setup"]) == 2
    err = capsys.readouterr().err
    assert message.format(url=url) in err
    assert "scripts/ensure-services.sh" in err


def test_password_is_not_printed(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db.example:5432/analytics")
    assert "s3cret" not in get_settings().redacted_database_url


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ANONYMIZE_IP", "maybe", "ANONYMIZE_IP='maybe' is not a boolean; set it to true or false"),
        ("INGEST_WORKERS", "0", "INGEST_WORKERS=0 must be at least 1"),
        ("INGEST_MAX_LINES", "lots", "INGEST_MAX_LINES='lots' is not a whole number"),
    ],
)
def test_bad_ingestion_settings(name, value, message, monkeypatch):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        get_settings()


def test_unknown_kinesis_stream(aws_endpoint, monkeypatch, capsys):
    assert main(["load", "kinesis://no-such-stream"]) == 2
    err = capsys.readouterr().err
    assert "Kinesis stream 'no-such-stream' was not found in us-east-1" in err
    assert "KINESIS_STREAM_NAME" in err and "AWS_ENDPOINT_URL" in err


def test_configured_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("EVENTS_BUCKET_URL", str(tmp_path))
    monkeypatch.delenv("KINESIS_STREAM_NAME", raising=False)
    assert configured_sources() == [str(tmp_path)]
    monkeypatch.setenv("KINESIS_STREAM_NAME", "product-events")
    assert configured_sources() == [str(tmp_path), "kinesis://product-events"]
    # the default folder is skipped when only a stream is configured and the folder does not exist
    monkeypatch.delenv("EVENTS_BUCKET_URL")
    monkeypatch.chdir(tmp_path)

    monkeypatch.setattr(settings_module, "DEFAULT_BUCKET", tmp_path / "absent")
    assert configured_sources() == ["kinesis://product-events"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("COLLECTOR_SINK", "ftp://example/events", "is not a sink this collector writes to; use a folder, s3://"),
        ("COLLECTOR_SINK", "kinesis://", "names no stream; use kinesis://STREAM"),
        ("ANALYTICSPRO_WRITE_KEYS", "good-key,bad:key", "':' or whitespace, which HTTP Basic auth cannot carry"),
        ("COLLECTOR_FLUSH_MS", "-5", "COLLECTOR_FLUSH_MS=-5 must be 0 or more"),
        ("COLLECTOR_BUFFER_SECONDS", "a minute", "COLLECTOR_BUFFER_SECONDS='a minute' is not a whole number"),
    ],
)
def test_bad_collector_settings_stop_the_collector_before_it_listens(name, value, message, monkeypatch, capsys):
    monkeypatch.setenv(name, value)
    assert main(["collector", "--port", "1"]) == 2
    assert message in capsys.readouterr().err
