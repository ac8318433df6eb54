"""`analyticspro realtime` (warehouse/follow.py) and the hot metrics' read tracking, each in its own database.

- The follower loads a new object (a folder's, an S3 prefix's) or new stream records on its next look and Redis
  holds the numbers computed by hand; a look with nothing new loads nothing; while it runs, the bucket sensor
  leaves new objects to it.
- A load that commits after a newer one (an interrupted run's package, finished by the next run under its older
  load id) is still folded in, once.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import dagster as dg
import psycopg2
import pytest
import redis

from cli import main as cli_main
from common.redis_keys import HotKeys, follower_heartbeat
from common.settings import get_settings
from orchestration.definitions import build_definitions
from testing.db import rows
from warehouse.follow import Follower
from warehouse.realtime import update_hot_metrics


@pytest.fixture
def isolated(own_database, monkeypatch, tmp_path, settings):
    monkeypatch.setenv("EVENTS_BUCKET_URL", str(tmp_path / "bucket"))
    monkeypatch.setenv("REDIS_KEY_PREFIX", f"{settings.redis_key_prefix}:{tmp_path.name}")
    (tmp_path / "bucket").mkdir()
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield settings, client, tmp_path / "bucket"
    stale = list(client.scan_iter(f"{settings.redis_key_prefix}:*"))
    if stale:
        client.delete(*stale)


def _event(kind: str, message_id: str, at: datetime, **fields) -> dict:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return {"type": kind, "messageId": message_id, "timestamp": stamp, **fields}


def _write(bucket: Path, name: str, events: list[dict], at: datetime) -> None:
    path = bucket / "events" / f"{at:%Y/%m/%d/%H}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(event) + "\n" for event in events).encode()))


def _recent() -> datetime:
    now = datetime.now(UTC)
    return max(now - timedelta(minutes=1), datetime.combine(now.date(), datetime.min.time(), UTC))


def _metrics(client: redis.Redis, keys: HotKeys, day) -> tuple[str, str, str, Decimal]:
    return (
        client.get(keys.metric("events", day)),
        client.get(keys.metric("dau", day)),
        client.get(keys.metric("signups", day)),
        Decimal(client.get(keys.metric("revenue", day)) or "NaN"),
    )


def _sensor(defs: dg.Definitions, instance: dg.DagsterInstance) -> tuple[list[dg.RunRequest], str]:
    result = defs.resolve_sensor_def("bucket_sensor").evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs)
    )
    return list(result.run_requests or []), result.skip_message or ""


def test_the_follower_loads_a_new_object_on_its_next_look_and_the_sensor_leaves_it_the_bucket(isolated):
    settings, client, bucket = isolated
    keys = HotKeys(settings.redis_key_prefix)
    at = _recent()
    today = at.date()
    follower = Follower([settings.events_bucket_url], interval=0.5, settings=settings)

    first = follower.tick()
    assert (first.objects, first.stored) == (0, 0)
    assert _metrics(client, keys, today)[:3] == ("0", "0", "0")

    # anon-a views a page and signs up as u-a; anon-b views a page; u-c buys twice (49.5 + 10.25)
    _write(
        bucket,
        "a.jsonl.gz",
        [
            _event("page", "r1", at, anonymousId="anon-a", properties={"path": "/"}),
            _event("page", "r2", at, anonymousId="anon-b", properties={"path": "/"}),
            _event("identify", "r3", at, anonymousId="anon-a", userId="u-a"),
            _event("track", "r4", at, anonymousId="anon-a", userId="u-a", event="user_signed_up"),
            _event("track", "r5", at, userId="u-c", event="purchase_completed", properties={"revenue": 49.5}),
            _event("track", "r6", at, userId="u-c", event="purchase_completed", properties={"revenue": 10.25}),
        ],
        at,
    )
    second = follower.tick()
    assert (second.objects, second.stored, second.loads, second.published) == (1, 6, 1, True)
    # activity events: 1 page + 1 page + 3 tracks = 5; people: u-a (anon-a stitched), anon-b, u-c
    assert _metrics(client, keys, today) == ("5", "3", "1", Decimal("59.75"))
    assert rows(settings, "select count(*) from raw.events") == [(6,)]

    third = follower.tick()  # nothing new: nothing loaded, nothing counted twice
    assert (third.objects, third.stored, third.loads) == (0, 0, 0)
    assert _metrics(client, keys, today) == ("5", "3", "1", Decimal("59.75"))

    # while the follower's heartbeat is there, the sensor starts no run of its own for a new object
    heartbeat = json.loads(client.get(follower_heartbeat(settings.redis_key_prefix)))
    assert heartbeat["sources"] == [settings.events_bucket_url]
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    _write(bucket, "b.jsonl.gz", [_event("page", "r7", at, anonymousId="anon-d", properties={"path": "/"})], at)
    requests, reason = _sensor(defs, instance)
    assert requests == [] and "analyticspro realtime" in reason
    follower.stop()
    requests, _ = _sensor(defs, instance)
    assert len(requests) == 1  # no follower: the sensor's run loads it

    # the command itself: two looks, then it stops and takes its heartbeat away
    assert cli_main(["realtime", "--ticks", "2", "--interval", "0.2"]) == 0
    assert _metrics(client, keys, today) == ("6", "4", "1", Decimal("59.75"))
    assert client.get(follower_heartbeat(settings.redis_key_prefix)) is None


def test_a_load_committed_after_a_newer_one_is_folded_in_once(isolated):
    settings, client, bucket = isolated
    keys = HotKeys(settings.redis_key_prefix)
    at = _recent()
    today = at.date()
    _write(bucket, "a.jsonl.gz", [_event("page", f"o{i}", at, anonymousId=f"v{i}") for i in range(4)], at)
    Follower([settings.events_bucket_url], interval=1, settings=settings).tick()
    assert _metrics(client, keys, today)[:2] == ("4", "4")

    # an interrupted run's package, finished later under its older load id: 3 more page views, by v0 and new v9
    connection = psycopg2.connect(settings.database_url)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            """
            insert into raw._dlt_loads (load_id, schema_name, status, inserted_at, schema_version_hash)
            select '1000000000.000001', schema_name, 0, now(), schema_version_hash from raw._dlt_loads limit 1;
            create temporary table late as select * from raw.events where message_id in ('o0', 'o1', 'o2');
            update late set message_id = message_id || '-late', _dlt_load_id = '1000000000.000001',
                _dlt_id = substr(md5(message_id), 1, 14),
                anonymous_id = case when message_id = 'o0' then 'v0' else 'v9' end;
            insert into raw.events select * from late;
            """
        )
    try:
        update = update_hot_metrics(connection, client, settings.redis_key_prefix, 3600)
        assert (update.loads_read, update.rows_read) == (1, 3)
        assert _metrics(client, keys, today)[:2] == ("7", "5")  # v0 again, v9 new
        again = update_hot_metrics(connection, client, settings.redis_key_prefix, 3600)
        assert (again.loads_read, again.rows_read) == (0, 0)
        assert _metrics(client, keys, today)[:2] == ("7", "5")

        # the state lost: rebuilt from raw.events, the same numbers
        client.delete(*client.scan_iter(f"{settings.redis_key_prefix}:hot:*"))
        rebuilt = update_hot_metrics(connection, client, settings.redis_key_prefix, 3600)
        assert rebuilt.rebuilt and rebuilt.rows_read == 7
        assert _metrics(client, keys, today)[:2] == ("7", "5")
        assert update_hot_metrics(connection, client, settings.redis_key_prefix, 3600).rows_read == 0
    finally:
        connection.close()


def test_the_follower_loads_new_stream_records_on_its_next_look(isolated, aws_endpoint, monkeypatch):
    settings, client, _ = isolated
    keys = HotKeys(settings.redis_key_prefix)
    kinesis = boto3.client("kinesis", endpoint_url=aws_endpoint, region_name="us-east-1")
    kinesis.create_stream(StreamName="follow", ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName="follow")
    follower = Follower(["kinesis://follow"], interval=1, settings=get_settings())
    assert follower.tick().stored == 0  # an empty stream

    at = _recent()
    for i in range(9):  # 9 page views by 4 visitors, over both shards
        record = _event("page", f"k{i}", at, anonymousId=f"kv-{i % 4}", properties={"path": "/"})
        kinesis.put_record(StreamName="follow", Data=json.dumps(record).encode(), PartitionKey=f"p{i}")
    tick = follower.tick()
    assert (tick.stored, tick.loads) == (9, 1)
    assert _metrics(client, keys, at.date())[:2] == ("9", "4")
    assert follower.tick().stored == 0  # everything committed: nothing read twice
    assert _metrics(client, keys, at.date())[:2] == ("9", "4")


def test_the_follower_loads_a_new_s3_object_on_its_next_look(isolated, aws_endpoint):
    settings, client, _ = isolated
    keys = HotKeys(settings.redis_key_prefix)
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="live-events")
    follower = Follower(["s3://live-events/firehose"], interval=1, settings=settings)
    assert follower.tick().objects == 0  # an empty prefix

    at = _recent()
    body = gzip.compress(
        "".join(json.dumps(_event("page", f"s{i}", at, anonymousId=f"sv-{i % 2}")) + "\n" for i in range(5)).encode()
    )
    s3.put_object(Bucket="live-events", Key=f"firehose/events/{at:%Y/%m/%d/%H}/batch-1.jsonl.gz", Body=body)
    tick = follower.tick()
    assert (tick.objects, tick.stored, tick.loads) == (1, 5, 1)
    assert _metrics(client, keys, at.date())[:2] == ("5", "2")
    assert follower.tick().objects == 0  # loaded: the next look lists it as loaded
