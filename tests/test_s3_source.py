"""EVENTS_BUCKET_URL=s3://… works through the standard AWS variables, against moto's S3 server on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import date

import boto3
import psycopg2
import pytest
from moto.server import ThreadedMotoServer

from ingestion.events import load_events
from ingestion.generator import generate
from ingestion.settings import get_settings
from orchestration.cli import main
from orchestration.warehouse import drop_database, ensure_database
from tests.reference import compute


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch) -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def own_database(monkeypatch, tmp_path) -> Iterator[None]:
    """A second database, so this test's loads do not touch the end-to-end test's counts."""
    base = get_settings().database_url
    monkeypatch.setenv("DATABASE_URL", base + "_s3")
    monkeypatch.setenv("DLT_PIPELINES_DIR", str(tmp_path / "dlt"))
    ensure_database(get_settings())
    try:
        yield
    finally:
        drop_database(get_settings())


def test_load_from_s3_bucket_prefix(s3_endpoint, own_database, tmp_path, capsys):
    dataset = generate(tmp_path / "gen", days=3, users=60, seed=5, end_date=date(2026, 2, 1))
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="company-events")
    for path in dataset.files:
        key = "firehose/" + path.relative_to(dataset.out_dir).as_posix()
        client.upload_file(str(path), "company-events", key)
    client.put_object(Bucket="company-events", Key="other/unrelated.jsonl", Body=b'{"not": "ours"}\n')

    assert main(["load", "s3://company-events/firehose"]) == 0
    assert "events loaded" in capsys.readouterr().out
    expected = compute(tmp_path / "gen")
    with psycopg2.connect(get_settings().database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select message_id, source from raw.events")
        rows = cursor.fetchall()
    connection.close()
    assert {message_id for message_id, _ in rows} == set(expected.events)
    assert len(rows) == len(expected.events)
    assert all(source.startswith("s3://company-events/firehose/events/") for _, source in rows)
    # a second run finds no new objects and changes nothing
    summary = load_events("s3://company-events/firehose", progress=False)
    assert summary.events == 0 and summary.rejected == 0
