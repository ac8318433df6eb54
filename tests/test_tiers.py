"""The cold tier (archive and restore) and GDPR erasure across every tier, each in a database of its own."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import dagster as dg
import psycopg2
import pyarrow.parquet as pq
import pytest
import redis

from cli import main
from common.settings import get_settings
from ingestion.events import load_events
from ingestion.generator import generate
from insights.store import store_dir
from orchestration.definitions import build_definitions
from orchestration.partitions import partition_range_tags
from testing.db import rows
from warehouse.archive import partition_dates, refuse_full_refresh_if_archived, restore_dates
from warehouse.erasure import NothingToForget, forget
from warehouse.lake import sync_lake

TODAY = datetime.now(UTC).date()
FCT_COLUMNS = "message_id, person_id, user_id, anonymous_id, event_name, event_at, revenue::text, properties::text"


@pytest.fixture
def tiers(own_database, monkeypatch, tmp_path, settings):
    monkeypatch.setenv("EVENTS_BUCKET_URL", str(tmp_path / "bucket"))
    monkeypatch.setenv("REDIS_KEY_PREFIX", f"{settings.redis_key_prefix}:{tmp_path.name}")
    monkeypatch.setenv("WARM_DAYS", "3")

    generate(tmp_path / "bucket", days=6, users=150, seed=31, end_date=TODAY)
    defs = build_definitions()
    instance = dg.DagsterInstance.ephemeral()
    first = TODAY - timedelta(days=5)
    job = defs.resolve_job_def("materialize_all")
    assert job.execute_in_process(instance=instance, tags=partition_range_tags(first, TODAY)).success
    return get_settings(), defs, instance


def archive(defs, instance) -> None:
    assert defs.resolve_job_def("archive_cold_partitions").execute_in_process(instance=instance).success


def test_archive_moves_old_days_to_parquet_and_restore_brings_them_back(tiers):
    settings, defs, instance = tiers
    old_days = [TODAY - timedelta(days=5), TODAY - timedelta(days=4)]  # older than today - WARM_DAYS (3)
    before = {
        day: sorted(rows(settings, f"select {FCT_COLUMNS} from analytics.fct_events where event_date = %s", (day,)))
        for day in old_days
    }
    raw_before = {
        day: sorted(
            rows(settings, "select * from raw.events where (\"timestamp\" at time zone 'UTC')::date = %s", (day,))
        )
        for day in old_days
    }
    assert all(before.values()) and all(raw_before.values())
    metrics_before = rows(settings, "select * from analytics.daily_metrics order by date, metric_name")
    dim_persons_before = rows(settings, "select person_id from analytics.dim_users")
    dim_rows_before = {
        person_id: rest
        for person_id, *rest in rows(
            settings,
            "select person_id, first_seen_at, signed_up_at, first_activity_at, activity_events, active_days, "
            "total_revenue, plan from analytics.dim_users",
        )
    }
    archive(defs, instance)

    connection = psycopg2.connect(settings.database_url)
    remaining = partition_dates(connection)
    connection.close()
    assert not set(old_days) & set(remaining) and TODAY - timedelta(days=3) in remaining
    for day in old_days:
        assert rows(settings, "select count(*) from analytics.fct_events where event_date = %s", (day,)) == [(0,)]
        files = sorted((Path(settings.events_bucket_url) / "archive" / "events" / f"date={day}").glob("*.parquet"))
        assert [f.name.split("-")[0] for f in files] == ["fct_events", "raw_events"]
        table = pq.read_table(io.BytesIO(files[0].read_bytes())).to_pylist()
        from_parquet = sorted(
            (
                r["message_id"],
                r["person_id"],
                r["user_id"],
                r["anonymous_id"],
                r["event_name"],
                r["event_at"],
                r["revenue"],
                r["properties"],
            )
            for r in table
        )
        # same rows (jsonb and numeric compared as PostgreSQL prints them)
        assert [row[:6] for row in from_parquet] == [row[:6] for row in before[day]]
        assert len(from_parquet) == len(before[day])
        recorded = rows(
            settings,
            "select table_name, row_count from ops.archived_partitions where event_date = %s order by 1",
            (day,),
        )
        assert recorded == [("fct_events", len(before[day])), ("raw_events", len(raw_before[day]))]
    # the marts keep their history
    assert rows(settings, "select * from analytics.daily_metrics order by date, metric_name") == metrics_before

    # the lake Spark builds from holds every day: the archived ones copied from the cold tier's files

    lake = Path(settings.events_bucket_url).parent / "lake"
    synced = sync_lake(settings, str(lake), say=lambda _: None)
    assert synced.days_written == len(old_days) + len(remaining)
    for day in old_days:
        lake_day = pq.read_table(lake / "events" / f"event_date={day}" / "events.parquet")
        assert sorted(lake_day.column("message_id").to_pylist()) == sorted(r[0] for r in raw_before[day])
    assert sync_lake(settings, str(lake), say=lambda _: None).days_written == 0

    # a person whose first days are archived comes back: dim_users keeps their history and adds the new event
    dims = "first_seen_at, signed_up_at, first_activity_at, activity_events, active_days, total_revenue, plan"
    person, active_today = rows(
        settings,
        "select person_id, bool_or(event_date = %s and is_activity) from analytics.fct_events "
        "where user_id is not null group by person_id order by min(event_at) limit 1",
        (TODAY,),
    )[0]
    assert person in {p for (p,) in dim_persons_before}
    dim_before = dim_rows_before[person]
    path = Path(settings.events_bucket_url) / "events" / f"{TODAY:%Y/%m/%d}" / "23" / "returning.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    path.write_text(json.dumps({"type": "page", "messageId": "back-1", "userId": person, "timestamp": stamp}) + "\n")
    job = defs.resolve_job_def("materialize_all")
    assert job.execute_in_process(instance=instance, tags=partition_range_tags(TODAY, TODAY)).success
    [dim_after] = rows(settings, f"select {dims} from analytics.dim_users where person_id = %s", (person,))
    expected_after = (*dim_before[:3], dim_before[3] + 1, dim_before[4] + (0 if active_today else 1), *dim_before[5:])
    assert dim_after == expected_after
    assert rows(settings, "select count(*) from ops.person_archive_history")[0][0] > 0

    # a full rebuild would lose the archived days: it refuses and says what to do

    with pytest.raises(ValueError, match="restore --from"):
        refuse_full_refresh_if_archived()

    assert main(["restore", "--from", old_days[0].isoformat(), "--to", old_days[-1].isoformat()]) == 0
    for day in old_days:
        again = sorted(rows(settings, f"select {FCT_COLUMNS} from analytics.fct_events where event_date = %s", (day,)))
        assert again == before[day]
        raw_again = sorted(
            rows(settings, "select * from raw.events where (\"timestamp\" at time zone 'UTC')::date = %s", (day,))
        )
        assert raw_again == raw_before[day]
    # restoring again changes nothing
    assert main(["restore", "--from", old_days[0].isoformat(), "--to", old_days[-1].isoformat()]) == 0
    assert rows(settings, "select count(*) from analytics.fct_events where event_date = %s", (old_days[0],)) == [
        (len(before[old_days[0]]),)
    ]


def _bucket_lines(bucket: Path) -> list[dict]:
    found = []
    for path in bucket.rglob("*.jsonl*"):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        found.extend(json.loads(line) for line in data.splitlines() if line.strip())
    return found


def _store_rows(settings, identities: list[str]) -> int:
    """Rows of these ids in every Parquet file of the insights copy (listed in its manifest or not)."""
    found = 0
    for path in store_dir(settings).rglob("*.parquet"):
        for row in pq.read_table(path).to_pylist():
            found += any(row.get(column) in identities for column in ("person_id", "user_id", "anonymous_id"))
    return found


def test_forget_erases_a_person_from_every_tier_and_keeps_them_out(tiers):
    settings, defs, instance = tiers
    bucket = Path(settings.events_bucket_url)
    # a user stitched to anonymous ids, active in an old (to be archived) day and recently
    candidates = rows(
        settings,
        """
        select person_id, array_agg(distinct anonymous_id) filter (where anonymous_id is not null)
        from analytics.fct_events
        where user_id is not null or person_id <> anonymous_id
        group by person_id
        having min(event_date) <= %s and max(event_date) >= %s and count(distinct anonymous_id) >= 1
        order by count(*) desc limit 1
        """,
        (TODAY - timedelta(days=4), TODAY - timedelta(days=1)),
    )
    assert candidates, "the generated data has no stitched user active in old and recent days"
    user_id, anonymous = candidates[0]
    everyone = [user_id, *anonymous]
    archive(defs, instance)  # part of their history is now in the cold tier
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    prefix = settings.redis_key_prefix
    in_redis = sum(client.sismember(key, p) for key in client.scan_iter(f"{prefix}:hot:*:persons:*") for p in everyone)
    in_bucket = [e for e in _bucket_lines(bucket) if e.get("userId") == user_id or e.get("anonymousId") in anonymous]
    assert in_bucket

    in_store_before = _store_rows(settings, everyone)
    assert main(["forget", "--user-id", user_id, "--requested-by", "dpo@example.com"]) == 0

    # PostgreSQL: raw and every table with person columns
    assert rows(
        settings, "select count(*) from raw.events where user_id = %s or anonymous_id = any(%s)", (user_id, anonymous)
    ) == [(0,)]
    tables = rows(
        settings,
        "select table_schema, table_name, array_agg(column_name::text) from information_schema.columns "
        "where table_schema in ('intermediate', 'analytics') "
        "and column_name in ('person_id', 'user_id', 'anonymous_id') "
        "group by 1, 2",
    )
    assert len(tables) >= 6
    for schema, table, columns in tables:
        condition = " or ".join(f"{column} = any(%s)" for column in columns)
        found = rows(
            settings, f"select count(*) from {schema}.{table} where {condition}", tuple([everyone] * len(columns))
        )
        assert found == [(0,)], f"{schema}.{table} still holds the person"
    # Redis state
    assert not any(client.sismember(key, p) for key in client.scan_iter(f"{prefix}:hot:*:persons:*") for p in everyone)
    assert all(client.zscore(f"{prefix}:hot:v1:seen", p) is None for p in everyone)
    # the archive
    for path in (bucket / "archive").rglob("*.parquet"):
        table = pq.read_table(io.BytesIO(path.read_bytes())).to_pylist()
        assert not [r for r in table if r["user_id"] == user_id or r["anonymous_id"] in anonymous], path
    # the landing files
    assert not [e for e in _bucket_lines(bucket) if e.get("userId") == user_id or e.get("anonymousId") in anonymous]
    # the insights engine's columnar copy: no file of it, current or old, holds them
    assert in_store_before
    assert _store_rows(settings, everyone) == 0
    # the audit row: counts, never the ids
    audit = rows(settings, "select requested_by, identities, rows_deleted::text from ops.erasure_requests")
    assert len(audit) == 1 and audit[0][0] == "dpo@example.com" and audit[0][1] == len(everyone)
    counts = json.loads(audit[0][2])
    assert counts["raw.events"] > 0 and counts["bucket_lines"] == len(in_bucket) and counts["archive"] > 0
    assert counts["insights"] == in_store_before
    assert counts["redis"] >= in_redis
    assert user_id not in audit[0][2] and not any(a in audit[0][2] for a in anonymous)

    # nothing brings them back: a full re-read of the bucket, events still in flight, a new build
    late = bucket / "events" / f"{TODAY:%Y/%m/%d}" / "23" / "inflight.jsonl"
    late.parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{TODAY.isoformat()}T00:00:01.000Z"
    late.write_text(
        "\n".join(
            json.dumps({"type": "track", "event": "x", "messageId": f"inflight-{i}", "timestamp": stamp, **ids})
            for i, ids in enumerate([{"userId": user_id}, {"anonymousId": anonymous[0]}, {"anonymousId": "someone"}])
        )
        + "\n"
    )

    summary = load_events(rescan=True, progress=False)
    assert summary.suppressed == 2
    assert (
        defs.resolve_job_def("materialize_all")
        .execute_in_process(instance=instance, tags=partition_range_tags(TODAY, TODAY))
        .success
    )
    assert rows(
        settings, "select count(*) from raw.events where user_id = %s or anonymous_id = any(%s)", (user_id, anonymous)
    ) == [(0,)]
    assert rows(settings, "select count(*) from analytics.fct_events where person_id = any(%s)", (everyone,)) == [(0,)]
    assert rows(settings, "select count(*) from raw.events where message_id = 'inflight-2'") == [(1,)]
    assert _store_rows(settings, everyone) == 0


def test_forget_needs_a_user_id(settings):
    with pytest.raises(NothingToForget, match="--user-id"):
        forget(settings, " ", "test")


def test_archive_restore_and_erasure_on_s3(aws_endpoint, own_database, monkeypatch, tmp_path, settings):
    """The same tiers with EVENTS_BUCKET_URL=s3://…: Parquet written to and read back from S3, landing objects
    rewritten in S3."""
    monkeypatch.setenv("EVENTS_BUCKET_URL", "s3://lake/segment")
    monkeypatch.setenv("REDIS_KEY_PREFIX", f"{settings.redis_key_prefix}:{tmp_path.name}")
    monkeypatch.setenv("WARM_DAYS", "2")

    dataset = generate(tmp_path / "gen", days=4, users=80, seed=9, end_date=TODAY)
    s3 = boto3.client("s3", endpoint_url=aws_endpoint)
    s3.create_bucket(Bucket="lake")
    for path in dataset.files:
        s3.upload_file(str(path), "lake", "segment/" + path.relative_to(dataset.out_dir).as_posix())
    own = get_settings()
    defs = build_definitions()
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("materialize_all")
    assert job.execute_in_process(
        instance=instance, tags=partition_range_tags(TODAY - timedelta(days=3), TODAY)
    ).success
    old = TODAY - timedelta(days=3)
    before = sorted(rows(own, f"select {FCT_COLUMNS} from analytics.fct_events where event_date = %s", (old,)))
    assert before
    # someone whose events are in the day to be archived (and so in the landing objects)
    user_id, anonymous = rows(
        own,
        "select person_id, coalesce(array_agg(distinct anonymous_id) filter (where anonymous_id is not null), '{}') "
        "from analytics.fct_events where user_id is not null and event_date = %s "
        "group by person_id order by count(*) desc limit 1",
        (old,),
    )[0]
    archive(defs, instance)
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix=f"segment/archive/events/date={old}/")["Contents"]
    ]
    assert sorted(k.rsplit("/", 1)[1].split("-")[0] for k in keys) == ["fct_events", "raw_events"]
    assert rows(own, "select count(*) from analytics.fct_events where event_date = %s", (old,)) == [(0,)]

    report = forget(own, user_id, "test")
    assert report.rows["bucket_lines"] > 0 and report.rows["archive"] > 0
    for key in (o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="segment/events/")["Contents"]):
        body = s3.get_object(Bucket="lake", Key=key)["Body"].read()
        text = gzip.decompress(body) if key.endswith(".gz") else body
        for line in text.splitlines():
            event = json.loads(line)
            assert event.get("userId") != user_id and event.get("anonymousId") not in anonymous

    assert restore_dates(own, old, old) == {
        old: len([r for r in before if r[1] != user_id and r[2] != user_id and r[3] not in anonymous])
    }
    again = sorted(rows(own, f"select {FCT_COLUMNS} from analytics.fct_events where event_date = %s", (old,)))
    assert again == [r for r in before if r[1] != user_id and r[2] != user_id and r[3] not in anonymous]
