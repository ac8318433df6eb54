"""EVENTS_BUCKET_URL=s3://… works through the standard AWS variables, against moto's S3 server on loopback."""

from __future__ import annotations

import json
from datetime import date

import boto3
import psycopg2

from cli import main
from common.settings import get_settings
from ingestion.events import load_events
from ingestion.generator import generate
from testing.reference import compute


def test_load_from_s3_bucket_prefix(aws_endpoint, own_database, tmp_path, capsys):
    dataset = generate(tmp_path / "gen", days=3, users=60, seed=5, end_date=date(2026, 2, 1))
    client = boto3.client("s3", endpoint_url=aws_endpoint)
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
    assert (summary.lines_read, summary.events, summary.rejected, summary.stored) == (0, 0, 0, 0)

    # a late object under an old date folder (key sorts before everything loaded) is loaded on the next run
    late = [
        {
            "type": "track",
            "event": "late_event",
            "messageId": f"late-{n}",
            "anonymousId": "a-late",
            "timestamp": "2026-01-29T10:00:00Z",
        }
        for n in range(3)
    ]
    body = b"".join(json.dumps(event).encode() + b"\n" for event in late) + b"not json\n"
    client.put_object(Bucket="company-events", Key="firehose/events/2026/01/29/10/late-0001.jsonl", Body=body)
    summary = load_events("s3://company-events/firehose", progress=False)
    assert (summary.lines_read, summary.events, summary.rejected, summary.stored) == (4, 3, 1, 3)
    with psycopg2.connect(get_settings().database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from raw.events")
        assert cursor.fetchone()[0] == len(expected.events) + 3
        cursor.execute("select source, source_position, reason, payload from raw.rejected_events")
        [(source, position, reason, payload)] = cursor.fetchall()
        assert (source, position, payload) == (
            "s3://company-events/firehose/events/2026/01/29/10/late-0001.jsonl",
            "line 4",
            "not json",
        )
        assert reason.startswith("malformed JSON")
    connection.close()
