"""Jobs, schedules and sensors: what runs by itself once `dagster dev` (or the daemon) is up.

- `realtime_load` (raw/events + hot_metrics) is what the sensors start: within a minute of new objects in
  EVENTS_BUCKET_URL or new records on KINESIS_STREAM_NAME, the new events are loaded and folded into Redis.
  While `analyticspro realtime` runs (warehouse/follow.py: seconds, not a minute), the sensors leave new data to it.
- `materialize_all` (every load-and-transform asset and hot_metrics) runs hourly for today's partition (new
  events, incremental marts) and daily after midnight UTC for the closed day and the lookback days before it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, timedelta
from pathlib import Path

import dagster as dg
import redis

from common.dbt_vars import lookback_days
from common.redis_keys import follower_heartbeat
from common.settings import get_settings, normalize_bucket_url, utc_today
from ingestion.bucket import object_date, object_key
from ingestion.events import unloaded_objects
from ingestion.kinesis import has_new_records
from ingestion.pipeline import committed_positions, events_pipeline
from orchestration.engines import pipeline_executor
from orchestration.partitions import NEW_DATA_TAGS, partition_range_tags, run_windows
from orchestration.triggers import running_sensor, utc_schedule
from warehouse.realtime import refresh_windows

MATERIALIZE_ALL_JOB = "materialize_all"
REALTIME_JOB = "realtime_load"
SENSOR_INTERVAL_SECONDS = 15

RAW_EVENTS = dg.AssetKey(["raw", "events"])
HOT_METRICS = dg.AssetKey(["hot_metrics"])
# assets outside the partitioned pipeline, run by their own jobs
OUTSIDE_PIPELINE = dg.AssetSelection.groups("storage", "privacy")


def materialize_all_job() -> dg.UnresolvedAssetJobDefinition:
    """The marts job, on the executor DAGSTER_EXECUTOR names (orchestration/engines.py; multiprocess by default)."""
    return dg.define_asset_job(
        MATERIALIZE_ALL_JOB,
        selection=dg.AssetSelection.all() - OUTSIDE_PIPELINE,
        description="Load the events of the selected days, build every dbt model and test for them (vars start_date/"
        "end_date; on Spark: sync the lake, rebuild from it), fold new events into the Redis hot metrics. Backfill any "
        "range from the Partitions tab.",
        tags={"analyticspro/pipeline": "marts"},
        executor_def=pipeline_executor(),
    )


realtime_load = dg.define_asset_job(
    REALTIME_JOB,
    selection=dg.AssetSelection.assets(RAW_EVENTS, HOT_METRICS).without_checks(),
    description="Load new events and update the Redis hot metrics (no marts): what the sensors start.",
    tags={"analyticspro/pipeline": "realtime"},
    # both steps in the run's own process: a process per step would load the code twice more (seconds each)
    executor_def=dg.in_process_executor,
)


@utc_schedule("5 * * * *", job_name=MATERIALIZE_ALL_JOB)
def hourly_marts(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every hour: load everything new (late objects of old days too) and build the incremental marts from it."""
    at = context.scheduled_execution_time
    return dg.RunRequest(
        run_key=f"hourly-{at.isoformat()}", partition_key=at.astimezone(UTC).date().isoformat(), tags=NEW_DATA_TAGS
    )


@utc_schedule("30 0 * * *", job_name=MATERIALIZE_ALL_JOB)
def daily_marts(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """After each UTC day closes: the day and the lookback days before it, loaded and rebuilt in one run (late
    objects under their folders, late events by their timestamps)."""
    closed = context.scheduled_execution_time.astimezone(UTC).date() - timedelta(days=1)
    first = closed - timedelta(days=lookback_days() - 1)
    return dg.RunRequest(run_key=f"daily-{closed.isoformat()}", tags=partition_range_tags(first, closed))


def _refresh_windows() -> None:
    settings = get_settings()
    # the run's own hot_metrics step reports Redis problems; a sensor must keep ticking
    with contextlib.suppress(redis.RedisError):
        refresh_windows(redis.Redis.from_url(settings.redis_url, decode_responses=True), settings.redis_key_prefix)


def _follower(source: str) -> str | None:
    """Who follows `source` in real time (`analyticspro realtime`, by its heartbeat in Redis), if anyone."""
    settings = get_settings()
    try:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        raw = client.get(follower_heartbeat(settings.redis_key_prefix))
    except redis.RedisError:
        return None
    if raw is None:
        return None
    follower = json.loads(raw)
    if source not in follower.get("sources", []):
        return None
    where = f"pid {follower.get('pid')} on {follower.get('host')}, every {follower.get('interval_s')} s"
    return f"analyticspro realtime ({where})"


def _waiting_run(instance: dg.DagsterInstance) -> str | None:
    """The id of a realtime_load run that has not started yet (it will read whatever is new when it starts)."""
    waiting = instance.get_run_records(
        dg.RunsFilter(job_name=REALTIME_JOB, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]),
        limit=1,
    )
    return waiting[0].dagster_run.run_id if waiting else None


@running_sensor(REALTIME_JOB, SENSOR_INTERVAL_SECONDS)
def bucket_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """New objects under EVENTS_BUCKET_URL -> one realtime_load run (today's partition, folding in every new object
    whatever day it belongs to)."""
    _refresh_windows()
    settings = get_settings()
    bucket = settings.events_bucket_url
    if "://" not in bucket and not Path(bucket).is_dir():
        return dg.SkipReason(f"EVENTS_BUCKET_URL {bucket} is not a folder yet")
    follower = _follower(normalize_bucket_url(bucket))
    if follower:
        return dg.SkipReason(f"{follower} loads new objects under {bucket} as they arrive")
    new = unloaded_objects(bucket)
    if not new:
        return dg.SkipReason(f"no new objects under {bucket}")
    waiting = _waiting_run(context.instance)
    if waiting:
        return dg.SkipReason(f"{len(new)} new objects; run {waiting} is queued and will load them")
    days = [object_date(item, settings.partitions_start_date, utc_today()) for item in new]
    digest = hashlib.sha256("\n".join(sorted("|".join(map(str, object_key(i))) for i in new)).encode()).hexdigest()
    windows = run_windows(days)
    context.log.info(f"{len(new)} new objects under {bucket}, days {', '.join(f'{a}..{b}' for a, b in windows)}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"bucket-{digest[:24]}", partition_key=utc_today().isoformat(), tags=NEW_DATA_TAGS)
        ]
    )


@running_sensor(REALTIME_JOB, SENSOR_INTERVAL_SECONDS)
def kinesis_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Records after the committed positions on KINESIS_STREAM_NAME -> a realtime_load run for today."""
    _refresh_windows()
    settings = get_settings()
    stream = settings.kinesis_stream_name
    if not stream:
        return dg.SkipReason("KINESIS_STREAM_NAME is not set")
    follower = _follower(f"kinesis://{stream}")
    if follower:
        return dg.SkipReason(f"{follower} loads new records on {stream} as they arrive")
    pipeline = events_pipeline(settings, progress=False)
    pipeline.sync_destination()
    if not has_new_records(stream, committed_positions(pipeline)):
        return dg.SkipReason(f"no new records on {stream}")
    waiting = _waiting_run(context.instance)
    if waiting:
        return dg.SkipReason(f"new records on {stream}; run {waiting} is queued and will load them")
    return dg.SensorResult(run_requests=[dg.RunRequest(partition_key=utc_today().isoformat())])


def build_automation_defs() -> dg.Definitions:
    return dg.Definitions(
        jobs=[materialize_all_job(), realtime_load],
        schedules=[hourly_marts, daily_marts],
        sensors=[bucket_sensor, kinesis_sensor],
    )
