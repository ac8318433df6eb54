"""`analyticspro load kinesis://STREAM` against a real moto server: every shard, every record format, a reshard,
throttling, and a run killed with SIGKILL that resumes with every record exactly once."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import psycopg2
import pytest
from botocore.exceptions import ClientError

from cli import main
from ingestion.events import load_events
from ingestion.kinesis import call_with_backoff, read_order

PROJECT = Path(__file__).resolve().parent.parent


def event(n: int, **extra: object) -> dict:
    return {
        "type": "track",
        "event": "button_clicked",
        "messageId": f"k-{n}",
        "anonymousId": f"anon-{n % 7}",
        "timestamp": "2026-03-01T12:00:00.000Z",
        "properties": {"n": n},
        **extra,
    }


def kinesis(endpoint: str):
    return boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")


def put_all(client, stream: str, payloads: list[bytes]) -> None:
    for start in range(0, len(payloads), 500):
        chunk = payloads[start : start + 500]
        records = [{"Data": data, "PartitionKey": f"p{start + i}"} for i, data in enumerate(chunk)]
        assert client.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended between the listing and the read
            continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited


def raw_events(database_url: str) -> list[tuple[str, str]]:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select message_id, source_position from raw.events")
        rows = cursor.fetchall()
    connection.close()
    return rows


def test_two_shards_every_record_format_and_a_reshard(aws_endpoint, own_database, capsys):
    client = kinesis(aws_endpoint)
    client.create_stream(StreamName="events", ShardCount=2)
    ndjson = b"".join(json.dumps(event(n)).encode() + b"\n" for n in range(10, 13))
    payloads = [
        *(json.dumps(event(n)).encode() for n in range(10)),  # one event per record
        ndjson,  # newline-delimited
        json.dumps([event(n) for n in range(13, 16)]).encode(),  # a JSON array
        gzip.compress(json.dumps([event(n) for n in range(16, 20)]).encode()),  # gzipped array
        gzip.compress(json.dumps(event(20)).encode()),  # gzipped single event
        b"{not json",  # rejected
        json.dumps([event(21), {"type": "track", "messageId": "no-id-holder"}]).encode(),  # one good, one bad
        json.dumps(event(3)).encode(),  # a duplicate of an earlier record
        b"\x1f\x8b broken gzip",  # rejected: the gzip magic, then garbage
    ]
    put_all(client, "events", payloads)

    assert main(["load", "kinesis://events"]) == 0
    out = capsys.readouterr().out
    # 26 lines: 10 single + 3 ndjson + 3 array + 4 gzipped array + 1 gzipped single + 1 malformed
    # + 2 in a mixed array (one bad) + 1 duplicate of k-3 + 1 broken gzip
    assert "read 26 lines from kinesis://events" in out
    assert "23 events loaded (22 new, 1 duplicates of stored message ids), 3 rejected" in out
    rows = raw_events(own_database.database_url)
    assert sorted(m for m, _ in rows) == sorted(f"k-{n}" for n in range(22))
    positions = {m: position for m, position in rows}
    assert positions["k-0"].startswith("shard shardId-") and " seq " in positions["k-0"]
    assert positions["k-11"].endswith(" line 2") and positions["k-14"].endswith(" item 1")
    with psycopg2.connect(own_database.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select source, source_position, reason from raw.rejected_events order by reason")
        rejected = cursor.fetchall()
    connection.close()
    assert len(rejected) == 3
    assert all(
        source == "kinesis://events" and position.startswith("shard shardId-") for source, position, _ in rejected
    )
    reasons = " | ".join(reason for _, _, reason in rejected)
    assert (
        "malformed JSON" in reasons and "not a valid gzip stream" in reasons and "userId or an anonymousId" in reasons
    )
    assert any(position.endswith(" item 1") for _, position, _ in rejected)

    # nothing new: nothing read
    assert load_events("kinesis://events", progress=False).lines_read == 0

    # reshard (split one shard), then more records: the load keeps going over every listed shard
    shard = client.list_shards(StreamName="events")["Shards"][0]
    low, high = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
    client.split_shard(StreamName="events", ShardToSplit=shard["ShardId"], NewStartingHashKey=str((low + high) // 2))
    put_all(client, "events", [json.dumps(event(n)).encode() for n in range(100, 140)])
    summary = load_events("kinesis://events", progress=False)
    assert (summary.lines_read, summary.stored, summary.rejected) == (40, 40, 0)
    assert len(client.list_shards(StreamName="events")["Shards"]) == 4


def test_killed_run_resumes_with_every_record_exactly_once(aws_endpoint, own_database, tmp_path):
    client = kinesis(aws_endpoint)
    client.create_stream(StreamName="busy", ShardCount=2)
    total = 20_000
    put_all(client, "busy", [json.dumps(event(n)).encode() for n in range(total)])
    env = {**os.environ, "INGEST_MAX_LINES": "2000", "INGEST_WORKERS": "2", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "cli", "load", "kinesis://busy"]

    process = subprocess.Popen(
        command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = []
    deadline = time.monotonic() + 240
    for line in process.stdout:  # kill it while it is in the middle of its third load
        seen.append(line)
        if "] load 2:" in line or time.monotonic() > deadline:
            break
    workers = children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    # its validation worker processes end with it
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers and not any(alive(pid) for pid in workers)
    assert any("] load 2:" in line for line in seen), "".join(seen)
    stored_after_kill = len(raw_events(own_database.database_url))
    assert 0 < stored_after_kill < total

    finished = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = raw_events(own_database.database_url)
    assert len(rows) == total
    assert {m for m, _ in rows} == {f"k-{n}" for n in range(total)}
    # and the run after that finds nothing
    assert load_events("kinesis://busy", progress=False).lines_read == 0


def test_throttling_is_retried_with_backoff():
    calls, sleeps = [], []

    def throttled(**kwargs):
        calls.append(kwargs)
        if len(calls) < 3:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "GetRecords")
        return {"Records": []}

    assert call_with_backoff(throttled, sleep=sleeps.append, ShardIterator="x") == {"Records": []}
    assert len(calls) == 3 and len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.2 and 0 <= sleeps[1] <= 0.4

    def denied(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "GetRecords")

    with pytest.raises(ClientError):
        call_with_backoff(denied, sleep=sleeps.append)


def test_read_order_puts_parents_before_children():
    closed = {"EndingSequenceNumber": "9"}
    shards = [
        {"ShardId": "c1", "ParentShardId": "p1", "SequenceNumberRange": {}},
        {"ShardId": "m", "ParentShardId": "c1", "AdjacentParentShardId": "c2", "SequenceNumberRange": {}},
        {"ShardId": "c2", "ParentShardId": "p1", "SequenceNumberRange": closed},
        {"ShardId": "p1", "SequenceNumberRange": closed},
        {"ShardId": "orphan", "ParentShardId": "expired-parent", "SequenceNumberRange": {}},
    ]
    order = [shard["ShardId"] for shard in read_order(shards, finished=set())]
    # p1 and c2 are closed (read to their end in this pass); c1 is open, so its child m waits
    assert order == ["p1", "orphan", "c1", "c2"]
    assert [s["ShardId"] for s in read_order(shards, finished={"p1", "c1", "c2"})] == ["m", "orphan"]


def test_duplicates_across_sources_keep_the_first_copy(aws_endpoint, own_database, tmp_path):
    folder = tmp_path / "bucket"
    folder.mkdir()
    first = event(1, properties={"copy": "bucket"})
    (folder / "batch.jsonl").write_bytes(json.dumps(first).encode() + b"\n")
    assert load_events(str(folder), progress=False).stored == 1

    client = kinesis(aws_endpoint)
    client.create_stream(StreamName="dups", ShardCount=1)
    later = [event(1, properties={"copy": "kinesis"}), event(2, properties={"copy": "kinesis"})]
    put_all(client, "dups", [json.dumps(later).encode(), json.dumps(event(2, properties={"copy": "again"})).encode()])
    summary = load_events("kinesis://dups", progress=False)
    # 3 events read: k-1 is already stored (from the bucket), k-2 arrives twice in the stream
    assert (summary.lines_read, summary.events, summary.stored, summary.duplicates) == (3, 3, 1, 2)
    with psycopg2.connect(own_database.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select message_id, properties->>'copy', source from raw.events order by 1")
        rows = cursor.fetchall()
    connection.close()
    assert rows == [("k-1", "bucket", f"file://{folder}/batch.jsonl"), ("k-2", "kinesis", "kinesis://dups")]
