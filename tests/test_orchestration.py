"""Partitions, the bucket sensor and the real-time hot metrics, through Dagster, each in its own database.

- A backfill of two daily partitions loads the objects of exactly those days and builds exactly those dates.
- The bucket sensor sees a new file, its run loads it, and Redis holds the numbers computed by hand.
"""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import dagster as dg
import pytest
import redis

from common.redis_keys import HotKeys
from common.settings import get_settings
from ingestion.generator import generate
from orchestration.definitions import build_definitions
from orchestration.partitions import NEW_DATA_TAGS, partition_range_tags
from testing.db import rows
from testing.reference import compute
from warehouse.realtime import refresh_windows


@pytest.fixture
def isolated(own_database, monkeypatch, tmp_path, settings):
    """Own database (own_database), bucket, Redis prefix and Dagster definitions built for them."""
    monkeypatch.setenv("EVENTS_BUCKET_URL", str(tmp_path / "bucket"))
    monkeypatch.setenv("REDIS_KEY_PREFIX", f"{settings.redis_key_prefix}:{tmp_path.name}")
    (tmp_path / "bucket").mkdir()

    yield get_settings(), build_definitions(), tmp_path / "bucket"


def day_folder(bucket: Path, day: date) -> Path:
    return bucket / "events" / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"


def test_a_backfill_of_two_partitions_loads_and_builds_exactly_those_dates(isolated, tmp_path):
    settings, defs, bucket = isolated
    last = datetime.now(UTC).date() - timedelta(days=3)
    generate(bucket, days=5, users=120, seed=5, end_date=last)
    chosen = [last - timedelta(days=2), last - timedelta(days=1)]
    # the reference: the same two days' files, alone in another folder
    reference = tmp_path / "reference"
    for day in chosen:
        shutil.copytree(day_folder(bucket, day), day_folder(reference, day))
    expected = compute(reference)
    assert expected.events

    job = defs.resolve_job_def("materialize_all")
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, tags=partition_range_tags(*chosen), raise_on_error=False)
    assert result.success

    loaded = {url.split("/events/", 1)[1] for (url,) in rows(settings, "select object_url from raw.loaded_objects")}
    assert loaded == {str(path.relative_to(reference / "events")) for path in reference.rglob("*.jsonl*")}
    assert {m for (m,) in rows(settings, "select message_id from raw.events")} == set(expected.events)
    # every date built is a date of those files' events, with their counts
    by_date = dict(rows(settings, "select event_date, count(*) from analytics.fct_events group by event_date"))
    expected_by_date: dict[date, int] = {}
    for event in expected.events.values():
        day = datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").date()
        expected_by_date[day] = expected_by_date.get(day, 0) + 1
    assert by_date == expected_by_date
    assert set(by_date) >= set(chosen)
    dau = dict(rows(settings, "select date, value from analytics.daily_metrics where metric_name = 'dau'"))
    for day in chosen:
        assert dau[day] == expected.daily[day]["dau"]
    # Dagster recorded exactly those partitions for the load and for a mart
    for key in (dg.AssetKey(["raw", "events"]), dg.AssetKey(["analytics", "daily_metrics"])):
        materialized = instance.get_materialized_partitions(key)
        assert materialized == {day.isoformat() for day in chosen}


def _event(kind: str, message_id: str, at: datetime, **fields) -> dict:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return {"type": kind, "messageId": message_id, "timestamp": stamp, "sentAt": stamp, **fields}


def _write(bucket: Path, name: str, events: list[dict], day: date) -> None:
    path = day_folder(bucket, day) / "12" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(event) + "\n" for event in events).encode()))


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    sensor = defs.resolve_sensor_def("bucket_sensor")
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    return list(result.run_requests or [])


def test_the_bucket_sensor_loads_a_new_file_and_redis_follows(isolated):
    settings, defs, bucket = isolated
    instance = dg.DagsterInstance.ephemeral()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = HotKeys(settings.redis_key_prefix)
    now = datetime.now(UTC)
    today = now.date()
    recent = max(now - timedelta(minutes=2), datetime.combine(today, datetime.min.time(), UTC))
    assert _tick(defs, instance) == []  # nothing yet

    # three visitors: a page view each, one signs up (identify + track), one buys twice
    _write(
        bucket,
        "first.jsonl.gz",
        [
            _event("page", "m1", recent, anonymousId="anon-a", properties={"path": "/"}),
            _event("page", "m2", recent, anonymousId="anon-b", properties={"path": "/pricing"}),
            _event("page", "m3", recent, userId="u-c", properties={"path": "/"}),
            _event("identify", "m4", recent, anonymousId="anon-a", userId="u-a", traits={"plan": "free"}),
            _event("track", "m5", recent, anonymousId="anon-a", userId="u-a", event="user_signed_up"),
            _event("track", "m6", recent, userId="u-c", event="purchase_completed", properties={"revenue": 49.5}),
            _event("track", "m7", recent, userId="u-c", event="purchase_completed", properties={"revenue": 10.25}),
        ],
        today,
    )
    requests = _tick(defs, instance)
    assert len(requests) == 1
    # today's partition, folding in every new object (late ones of old days too)
    assert requests[0].partition_key == today.isoformat()
    assert NEW_DATA_TAGS.items() <= requests[0].tags.items()
    job = defs.resolve_job_def("realtime_load")
    assert job.execute_in_process(instance=instance, tags=requests[0].tags, partition_key=today.isoformat()).success

    # people: u-a (anon-a stitched by the identify), anon-b, u-c -> 3; activity events: 3 pages + 3 tracks
    assert client.get(keys.metric("dau", today)) == "3"
    assert client.get(keys.metric("events", today)) == "6"
    assert client.get(keys.metric("signups", today)) == "1"
    assert Decimal(client.get(keys.metric("revenue", today))) == Decimal("59.75")
    if now - recent < timedelta(minutes=5):
        assert client.get(keys.active_5m) == "3"
        assert client.get(keys.last_hour("events")) == "6"
        assert Decimal(client.get(keys.last_hour("revenue"))) == Decimal("59.75")
    assert 0 < client.ttl(keys.metric("dau", today)) <= settings.hot_metrics_ttl_seconds
    assert 0 < client.ttl(keys.active_5m) <= 180
    assert _tick(defs, instance) == []  # loaded: nothing new

    # a second file: anon-b views a page then signs up as u-b (an earlier anonymous visitor becomes the user),
    # a new visitor, and a re-delivered m6 (deduplicated by message id, counted once)
    _write(
        bucket,
        "second.jsonl.gz",
        [
            _event("page", "m8", recent, anonymousId="anon-b", properties={"path": "/signup"}),
            _event("track", "m9", recent, anonymousId="anon-b", userId="u-b", event="user_signed_up"),
            _event("page", "m10", recent, anonymousId="anon-d", properties={"path": "/"}),
            _event("track", "m6", recent, userId="u-c", event="purchase_completed", properties={"revenue": 49.5}),
        ],
        today,
    )
    requests = _tick(defs, instance)
    assert len(requests) == 1
    assert job.execute_in_process(
        instance=instance, tags=requests[0].tags, partition_key=requests[0].partition_key
    ).success
    # people: u-a, u-b (was anon-b), u-c, anon-d -> 4; events: 6 + 3 new (m6 again is a duplicate)
    assert client.get(keys.metric("dau", today)) == "4"
    assert client.get(keys.metric("events", today)) == "9"
    assert client.get(keys.metric("signups", today)) == "2"
    assert Decimal(client.get(keys.metric("revenue", today))) == Decimal("59.75")
    assert not client.sismember(keys.persons(today), "anon-b")

    # the state is lost (Redis flushed): the next run rebuilds the same numbers from raw.events
    client.delete(*client.scan_iter(f"{settings.redis_key_prefix}:*"))
    assert job.execute_in_process(instance=instance, tags=partition_range_tags(today, today)).success
    assert client.get(keys.metric("dau", today)) == "4"
    assert client.get(keys.metric("events", today)) == "9"
    assert Decimal(client.get(keys.metric("revenue", today))) == Decimal("59.75")


def test_the_kinesis_sensor_requests_a_run_only_when_the_stream_has_new_records(isolated, aws_endpoint, monkeypatch):
    settings, _, bucket = isolated
    monkeypatch.setenv("KINESIS_STREAM_NAME", "live")

    defs = build_definitions()
    client = boto3.client("kinesis", endpoint_url=aws_endpoint, region_name="us-east-1")
    client.create_stream(StreamName="live", ShardCount=2)
    client.get_waiter("stream_exists").wait(StreamName="live")
    instance = dg.DagsterInstance.ephemeral()
    sensor = defs.resolve_sensor_def("kinesis_sensor")

    def tick() -> list[dg.RunRequest]:
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        return list(result.run_requests or [])

    assert tick() == []  # an empty stream
    now = datetime.now(UTC)
    records = [_event("page", f"k{i}", now, anonymousId=f"kv-{i % 3}", properties={"path": "/"}) for i in range(12)]
    for i, record in enumerate(records):
        client.put_record(StreamName="live", Data=json.dumps(record).encode(), PartitionKey=f"p{i}")
    requests = tick()
    assert len(requests) == 1 and requests[0].partition_key == now.date().isoformat()
    job = defs.resolve_job_def("realtime_load")
    assert job.execute_in_process(instance=instance, partition_key=requests[0].partition_key).success
    assert rows(settings, "select count(*) from raw.events where source like 'kinesis://live%'") == [(12,)]
    keys = HotKeys(settings.redis_key_prefix)
    redis_client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    assert redis_client.get(keys.metric("events", now.date())) == "12"
    assert redis_client.get(keys.metric("dau", now.date())) == "3"
    assert tick() == []  # everything committed: nothing new


def test_rolling_windows_count_the_past_only(settings):
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    prefix = f"{settings.redis_key_prefix}:windows"
    keys = HotKeys(prefix)
    now = datetime(2026, 5, 1, 12, 30, 20, tzinfo=UTC)
    # p1 active a minute ago, p2 40 minutes ago, p3 two hours ago, p4 stamped 10 minutes in the future
    client.zadd(
        keys.seen, {"p1": (now - timedelta(minutes=1)).timestamp(), "p2": (now - timedelta(minutes=40)).timestamp()}
    )
    client.zadd(
        keys.seen, {"p3": (now - timedelta(hours=2)).timestamp(), "p4": (now + timedelta(minutes=10)).timestamp()}
    )
    client.hset(keys.minute(now - timedelta(minutes=1)), mapping={"events": 2, "revenue_micros": 1_500_000})
    client.hset(keys.minute(now - timedelta(minutes=59)), mapping={"events": 3, "signups": 1})
    client.hset(keys.minute(now - timedelta(minutes=61)), mapping={"events": 100})  # outside the hour
    client.hset(keys.minute(now + timedelta(minutes=5)), mapping={"events": 7})  # in the future
    try:
        written = refresh_windows(client, prefix, now)
        assert written[keys.active_5m] == "1"
        assert written[keys.last_hour("active_people")] == "2"
        assert written[keys.last_hour("events")] == "5"
        assert written[keys.last_hour("signups")] == "1"
        assert written[keys.last_hour("revenue")] == "1.5"
        assert client.get(keys.last_hour("events")) == "5" and 0 < client.ttl(keys.active_5m) <= 180
    finally:
        client.delete(*client.scan_iter(f"{prefix}:*"))
