"""The sensor benchmark: one tick of the bucket sensor with 100,000 objects already loaded, in a folder and on S3
(a moto server on loopback, as the tests use), against the same tick with 1,000 objects and against a full listing
(what every tick did before the cursor, and what a sweep does now).

The objects lie in Firehose's layout, `events/YYYY/MM/DD/HH/`, spread over the 90 days before today, each a batch of
one event. They count as loaded when recorded in `raw.loaded_objects`: one real load of the first object makes the
tables and the index, the others are recorded as a load records them (COPY), since loading 100,000 one-event files
would time the loader, not the listing. Then a sweep sets the cursor, and each of TICKS rounds puts one new object
under the current hour and runs the sensor as `dagster dev` does (a RunRequest for the new object's day), then
records the object loaded (as its run would), and runs an idle tick (nothing new).

In the folder the objects' modification times are their keys' times, so the cursor passes them; on S3 they were
written seconds ago, so BUCKET_SETTLE_SECONDS is 0 there. moto answers a `ListObjectsV2` by sorting every key of
the bucket (S3 itself serves `StartAfter` from its index): the S3 figures include that, and the same request made
alone is reported as `s3_list_request_ms`.

BENCH_SENSOR_OBJECTS (default 100000), BENCH_SENSOR_SMALL (default 1000), BENCH_SENSOR_TICKS (default 15).

    python -m bench.sensor        # alone: prints the figures
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import dagster as dg
import psycopg2
import redis

from bench.environ import say_for, timings
from common.settings import get_settings
from ingestion.events import load_events
from ingestion.listing import list_after, list_new, object_key
from orchestration.defs.automation import bucket_sensor
from testing.dashboard_server import free_port
from testing.db import own_warehouse, restore_environ, set_environ

DAYS = 90
BODY = b'{"type":"track","event":"tick","messageId":"m-%d","anonymousId":"a","timestamp":"%s"}\n'


def _keys(n: int, now: datetime) -> list[tuple[str, datetime]]:
    """n keys over the DAYS before `now`'s hour, in Firehose's layout, with the time each was written."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / n
    keys = []
    for i in range(n):
        at = start + step * i
        keys.append((f"events/{at:%Y/%m/%d/%H}/batch-{at:%Y%m%d%H%M%S}-{i:07d}.jsonl", at))
    return keys


def _body(i: int, at: datetime) -> bytes:
    return BODY % (i, at.strftime("%Y-%m-%dT%H:%M:%SZ").encode())


class Folder:
    name = "folder"

    def __init__(self, root: Path):
        self.root = root
        self.url = str(root)

    def put(self, pairs: list[tuple[str, datetime]], first: int = 0) -> None:
        for i, (key, at) in enumerate(pairs, first):
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_body(i, at))
            os.utime(path, (at.timestamp(), at.timestamp()))

    def list_request(self) -> None:
        return None


class S3:
    name = "s3"

    def __init__(self, endpoint: str, bucket: str):
        self.client = boto3.client("s3", endpoint_url=endpoint)
        self.client.create_bucket(Bucket=bucket)
        self.bucket = bucket
        self.url = f"s3://{bucket}/segment"
        self.after = ""

    def put(self, pairs: list[tuple[str, datetime]], first: int = 0) -> None:
        def one(item: tuple[int, tuple[str, datetime]]) -> None:
            i, (key, at) = item
            self.client.put_object(Bucket=self.bucket, Key=f"segment/{key}", Body=_body(i, at))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, enumerate(pairs, first)))

    def list_request(self) -> None:
        """The one request a tick makes, alone: moto's own time for it."""
        self.client.list_objects_v2(Bucket=self.bucket, Prefix="segment/", StartAfter=f"segment/{self.after}")


def _record_loaded(database_url: str, items: list) -> int:
    """The objects `items`, recorded in raw.loaded_objects as a load records them (under the load id of the
    benchmark's one real load)."""
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select _dlt_load_id from raw.loaded_objects limit 1")
        (load_id,) = cursor.fetchone()
        rows = io.StringIO()
        now = datetime.now(UTC).isoformat()
        count = 0
        for item in items:
            url, size, modified = object_key(item)
            rows.write(f"{url}\t{size}\t{modified.isoformat()}\t1\t1\t0\t{now}\t{load_id}\t{uuid.uuid4().hex}\n")
            count += 1
        rows.seek(0)
        cursor.copy_expert(
            "copy raw.loaded_objects (object_url, size_bytes, modified_at, lines_read, events, rejected, loaded_at, "
            "_dlt_load_id, _dlt_id) from stdin",
            rows,
        )
        cursor.execute("analyze raw.loaded_objects")
    connection.close()
    return count


def _measure(store: Folder | S3, n: int, ticks: int, say: Callable[[str], None]) -> dict[str, float]:
    settings = get_settings()
    now = datetime.now(UTC)
    pairs = _keys(n, now)
    started = time.perf_counter()
    store.put(pairs[:1])
    load_events(store.url, progress=False, say=lambda _: None)  # the tables, the index
    store.put(pairs[1:], first=1)
    _record_loaded(settings.database_url, list_after(store.url)[1:])  # the first was loaded above
    say(f"{store.name}, {n:,} objects written and recorded loaded in {time.perf_counter() - started:.0f} s")

    # a full listing (a sweep): once on S3, where moto sorts every key again for each page of 1,000
    sweep = timings(lambda: list_new(settings.database_url, store.url, sweep=True), 1 if isinstance(store, S3) else 3)
    with dg.DagsterInstance.ephemeral() as instance:
        busy, idle, requests = [], [], []
        for t in range(ticks):
            at = datetime.now(UTC)
            key = f"events/{at:%Y/%m/%d/%H}/new-{at:%Y%m%d%H%M%S%f}-{t:03d}.jsonl"
            store.put([(key, at)], first=n + t)
            context = dg.build_sensor_context(instance=instance)
            began = time.perf_counter()
            result = bucket_sensor(context)
            busy.append((time.perf_counter() - began) * 1000)
            assert isinstance(result, dg.SensorResult) and result.run_requests, f"tick {t} found nothing: {result}"
            # what its realtime_load run records: the objects after the cursor not loaded yet
            _record_loaded(settings.database_url, list_new(settings.database_url, store.url, sweep=False).new)
            began = time.perf_counter()
            result = bucket_sensor(dg.build_sensor_context(instance=instance))
            idle.append((time.perf_counter() - began) * 1000)
            assert isinstance(result, dg.SkipReason), f"idle tick {t} found objects: {result}"
            if isinstance(store, S3):
                row = list_new(settings.database_url, store.url, sweep=False)
                store.after = row.cursor or ""
                requests += timings(store.list_request, 1)
    figures = {
        "tick_ms": round(statistics.median(busy), 1),
        "idle_tick_ms": round(statistics.median(idle), 1),
        "sweep_ms": round(statistics.median(sweep), 1),
    }
    if requests:
        figures["s3_list_request_ms"] = round(statistics.median(requests), 1)
    say(f"{store.name}, {n:,} objects: {figures}")
    return figures


def _moto() -> tuple[subprocess.Popen, str]:
    """A moto server in a process of its own (it does not share this process's interpreter lock)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            boto3.client("s3", endpoint_url=endpoint).list_buckets()
            return server, endpoint
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the moto server did not start: is moto[server] installed (make install)?") from None
            time.sleep(0.2)


def bench_sensor(say: Callable[[str], None] | None = None) -> dict:
    say = say or say_for("sensor")
    large = int(os.environ.get("BENCH_SENSOR_OBJECTS", "100000"))
    small = int(os.environ.get("BENCH_SENSOR_SMALL", "1000"))
    ticks = int(os.environ.get("BENCH_SENSOR_TICKS", "15"))
    results: dict[str, float | int] = {"objects": large, "objects_small": small, "ticks": ticks}
    aws = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    prefix = f"analyticspro_bench_sensor_{uuid.uuid4().hex[:8]}"
    saved = set_environ({**aws, "REDIS_KEY_PREFIX": prefix, "AWS_ENDPOINT_URL": ""})
    server, endpoint = _moto()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        for n, label in ((small, "1k"), (large, "100k")):
            with own_warehouse(f"sensor_folder_{label}") as (_, root):
                folder = _measure(Folder(root / "bucket"), n, ticks, say)
            with own_warehouse(f"sensor_s3_{label}") as _:
                store = S3(endpoint, f"events-{label}")
                inner = set_environ({"BUCKET_SETTLE_SECONDS": "0", "EVENTS_BUCKET_URL": store.url})
                try:
                    s3 = _measure(store, n, ticks, say)
                finally:
                    restore_environ(inner)
            suffix = "" if n == large else "_small"
            for name, value in folder.items():
                results[f"{name}{suffix}"] = value
            for name, value in s3.items():
                results[f"{name}_s3{suffix}" if not name.startswith("s3_") else f"{name}{suffix}"] = value
    finally:
        client = redis.Redis.from_url(get_settings().redis_url)
        stale = list(client.scan_iter(match=f"{prefix}:*"))
        if stale:
            client.delete(*stale)
        restore_environ(saved)
        server.kill()
        server.wait()
    results["tick_ratio_100k_vs_1k"] = round(results["tick_ms"] / results["tick_ms_small"], 2)
    results["tick_ratio_100k_vs_1k_s3"] = round(results["tick_ms_s3"] / results["tick_ms_s3_small"], 2)
    results["tick_vs_full_listing"] = round(results["tick_ms"] / results["sweep_ms"], 3)
    return results


if __name__ == "__main__":
    print(bench_sensor())
