"""`analyticspro realtime`: load new events as they arrive and keep the Redis hot metrics seconds behind them.

The Dagster sensors tick every 15 s and each run they start spends seconds starting up, so an event waits 15 s
or more for the hot metrics that way. The follower is one long-lived process that looks every
REALTIME_POLL_SECONDS (default 1):

- a bucket: one listing after the bucket's cursor (ingestion/listing.py: on S3 one ListObjectsV2 with
  StartAfter, on a folder a walk of the newest folders); new objects are loaded at once (`load_bucket`, the same
  load as every other: validated, deduplicated, quarantined, under the load lock);
- a stream: a probe of each shard after its committed position (`has_new_records`), then `load_kinesis`;
- then the hot metrics fold whatever loads they have not read yet (its own and any other process's), and the
  rolling windows move on every tick.

What it costs on S3: a LIST per poll, 86,400 a day at 1 s ($0.005 per 1,000: about $0.43 a day), plus the GETs of
the objects themselves, which any loader pays. On Kinesis a probe is a ListShards, and a GetShardIterator and a
GetRecords per open shard, within the 5 reads a second a shard allows; provisioned streams bill no reads.

While it runs, it keeps a heartbeat in Redis (`P:realtime:v1:follower`, see common.redis_keys), and the Dagster
sensors leave new data to it rather than start runs it would race; the hourly and daily schedules (marts,
sweeps of late objects in old folders) run as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import redis

from common.locks import HOT_METRICS_LOCK, advisory_lock
from common.redis_keys import follower_heartbeat
from common.settings import Settings, get_settings
from ingestion.events import load_bucket, load_kinesis, unloaded_objects
from ingestion.kinesis import has_new_records
from ingestion.pipeline import committed_positions, events_pipeline
from warehouse.realtime import refresh_windows, update_hot_metrics

PUBLISH_EVERY_SECONDS = 15.0  # the hot metrics are refreshed at least this often (loads by other processes)


@dataclass
class Tick:
    """What one look did."""

    objects: int = 0  # new objects found in the bucket
    stored: int = 0  # rows added to raw.events by this tick's loads
    loads: int = 0  # loads folded into the hot metrics
    published: bool = False
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)


def heartbeat_ttl(interval: float) -> int:
    return max(30, int(interval * 10))


class Follower:
    """Look for new data every `interval` seconds, load it and fold it into the hot metrics (one `tick` per look)."""

    def __init__(self, sources: list[str], interval: float, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.sources = sources
        self.interval = interval
        self.client = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        self.heartbeat = follower_heartbeat(self.settings.redis_key_prefix)
        self.started = datetime.now(UTC)
        self._published_at = 0.0

    def beat(self) -> None:
        """Tell the sensors a follower is running (and what it follows) for the next heartbeat_ttl seconds."""
        value = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "sources": self.sources,
            "interval_s": self.interval,
            "since": self.started.isoformat(timespec="seconds"),
        }
        self.client.set(self.heartbeat, json.dumps(value), ex=heartbeat_ttl(self.interval))

    def stop(self) -> None:
        self.client.delete(self.heartbeat)

    def _load(self, source: str, quiet: Callable[[str], None], tick: Tick) -> None:
        if source.startswith("kinesis://"):
            stream = source.removeprefix("kinesis://") or self.settings.kinesis_stream_name or ""
            pipeline = events_pipeline(self.settings, progress=False)
            pipeline.sync_destination()
            if has_new_records(stream, committed_positions(pipeline)):
                summary = load_kinesis(stream, progress=False, say=quiet)
                tick.stored += summary.stored
                tick.messages.append(summary.describe())
            return
        if "://" not in source and not Path(source).is_dir():
            return  # no folder yet: nothing has arrived
        new = unloaded_objects(source)
        if new:
            tick.objects += len(new)
            summary = load_bucket(source, progress=False, say=quiet)
            tick.stored += summary.stored
            tick.messages.append(summary.describe())

    def tick(self, say: Callable[[str], None] = print) -> Tick:
        """One look at every source, the loads it calls for, and the hot metrics."""
        started = time.perf_counter()
        tick = Tick()
        self.beat()
        for source in self.sources:
            self._load(source, lambda message: None, tick)
        if tick.messages or time.monotonic() - self._published_at >= PUBLISH_EVERY_SECONDS:
            with advisory_lock(self.settings.database_url, HOT_METRICS_LOCK, say):
                connection = psycopg2.connect(self.settings.database_url)
                try:
                    update = update_hot_metrics(
                        connection, self.client, self.settings.redis_key_prefix, self.settings.hot_metrics_ttl_seconds
                    )
                finally:
                    connection.close()
            self._published_at = time.monotonic()
            tick.loads, tick.published = update.loads_read, True
        else:
            refresh_windows(self.client, self.settings.redis_key_prefix)
        tick.seconds = time.perf_counter() - started
        return tick

    def run(self, say: Callable[[str], None] = print, ticks: int | None = None) -> None:
        """Tick every `interval` seconds (`ticks` times, or until interrupted), saying what each load did."""
        say(
            f"following {', '.join(self.sources)} every {self.interval:g} s; hot metrics under "
            f"{self.settings.redis_key_prefix}:metrics:v1:* (Ctrl-C stops)"
        )
        done = failures = 0
        try:
            while ticks is None or done < ticks:
                began = time.monotonic()
                try:
                    tick = self.tick(say)
                except (psycopg2.OperationalError, redis.ConnectionError, OSError) as error:
                    # PostgreSQL restarting, Redis or the bucket unreachable: nothing was acknowledged, look again
                    failures += 1
                    wait = min(60.0, self.interval * 2**failures)
                    say(
                        f"could not follow ({type(error).__name__}: {str(error).strip()}); retrying in {wait:g} s: "
                        "check that PostgreSQL, Redis and the bucket are reachable (analyticspro setup)"
                    )
                    time.sleep(wait)
                    continue
                failures = 0
                for message in tick.messages:
                    say(message)
                if tick.messages:
                    say(f"hot metrics updated ({tick.loads} new loads folded in) {tick.seconds:.2f} s after the look")
                done += 1
                time.sleep(max(0.0, self.interval - (time.monotonic() - began)))
        finally:
            with contextlib.suppress(redis.RedisError):
                self.stop()
