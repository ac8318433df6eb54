"""Load events into PostgreSQL `raw.events` from any source: a bucket (S3 or a local folder) or a Kinesis stream.

    python -m ingestion.events [s3://bucket/prefix | ./folder | kinesis://STREAM]

Plain dlt, no Dagster (Dagster wraps the same function in `orchestration/defs/ingestion`). Every source goes
through one shared step (validation, clock-skew correction, IP anonymization, user-agent parsing), and every
load reports lines read = events + rejected; events already stored (by message id) are counted as duplicates.

Work is cut into loads of about INGEST_MAX_LINES lines (default 250,000) so memory stays bounded however
large the backlog; each load commits its events, rejections and progress (objects read, stream positions)
together, so a killed run resumes where the last committed load ended. The next load is read and validated
while dlt writes the previous one, so Python and PostgreSQL work at the same time.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dlt

from common.locks import LOAD_LOCK, advisory_lock
from common.settings import get_settings, normalize_bucket_url, utc_today
from ingestion.batches import LoadCounts, PreparedLoad
from ingestion.bucket import check_bucket, object_date, object_key, objects_in_window, prepare_bucket_loads
from ingestion.chunks import ChunkRunner
from ingestion.kinesis import prepare_kinesis_loads
from ingestion.listing import advance, list_new
from ingestion.pipeline import (
    EVENTS_TABLE,
    REJECTED_TABLE,
    ImportFolder,
    committed_positions,
    ensure_raw_indexes,
    events_pipeline,
    new_rows,
    prepared_events,
)
from ingestion.suppression import drop_suppressed, load_suppressed
from ingestion.validation import Options

__all__ = ["LoadSummary", "check_bucket", "configured_sources", "load_events"]


@dataclass
class LoadSummary:
    source: str
    counts: LoadCounts = field(default_factory=LoadCounts)
    stored: int = 0  # rows added to raw.events
    rejected_stored: int = 0
    load_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    days: set[date] = field(default_factory=set)  # the daily partitions of the objects read (bucket loads)

    # the counts of what was read, as the summary's own fields
    lines_read = property(lambda self: self.counts.lines_read)
    events = property(lambda self: self.counts.events)
    rejected = property(lambda self: self.counts.rejected)
    suppressed = property(lambda self: self.counts.suppressed)

    @property
    def duplicates(self) -> int:
        return self.counts.events - self.stored - self.counts.suppressed

    def describe(self) -> str:
        rate = f" in {self.seconds:.1f}s ({self.lines_read / self.seconds:,.0f} lines/s)" if self.seconds else ""
        erased = (
            f", {self.suppressed:,} of erased people dropped (ops.suppressed_identities)" if self.suppressed else ""
        )
        return (
            f"read {self.lines_read:,} lines from {self.source}{rate}: {self.events:,} events loaded "
            f"({self.stored:,} new, {self.duplicates:,} duplicates of stored message ids{erased}), "
            f"{self.rejected:,} rejected (see raw.rejected_events)"
        )


def finish_pending(pipeline: dlt.Pipeline, say: Callable[[str], None]) -> None:
    """Load what an earlier, interrupted run extracted but did not load, before reading anything new."""
    if pipeline.has_pending_data:
        say("finishing a load an earlier run left pending (it was interrupted)")
        pipeline.normalize()
        pipeline.load()


def unloaded_objects(bucket_url: str, sweep: bool | None = False) -> list:
    """The batch objects under `bucket_url` not recorded in raw.loaded_objects yet, as far as a listing after the
    bucket's cursor sees (what the bucket sensor starts a run for); `sweep` as in listing.list_new."""
    return list_new(get_settings().database_url, bucket_url, sweep=sweep).new


def prefetch(items: Iterator[PreparedLoad]) -> Iterator[PreparedLoad]:
    """Prepare the next load in a background thread while dlt writes the current one: validation (in worker
    processes) and PostgreSQL's COPY and merge then run at the same time instead of taking turns. At most
    one load waits ready, so memory stays bounded."""
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put(exc)

    thread = threading.Thread(target=produce, name="analyticspro-prepare", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.2)
            thread.join(timeout=0.2)


def _run_loads(
    pipeline: dlt.Pipeline,
    loads: Iterator[PreparedLoad],
    folder: Path,
    summary: LoadSummary,
    say: Callable[[str], None],
) -> None:
    number = 0
    suppressed = load_suppressed(get_settings().database_url)
    for load in prefetch(loads):
        if not load.counts.lines_read and not load.objects:
            continue
        number += 1
        if suppressed:
            kept = [drop_suppressed(table, suppressed) for table in load.events]
            load.events[:] = [table for table, _ in kept if table.num_rows]
            load.counts.suppressed += sum(dropped for _, dropped in kept)
        info = pipeline.run(prepared_events(load, folder), loader_file_format="csv")
        summary.load_ids.extend(info.loads_ids)
        summary.counts.add(load.counts)
        # dlt keeps a reference to the last source it ran: let go of the rows now that they are committed
        load.events.clear()
        load.rejected.clear()
        objects = f"{len(load.objects):,} objects, " if load.objects else ""
        say(f"load {number}: {objects}{load.counts.lines_read:,} lines committed ({summary.lines_read:,} in all)")
        for path in folder.iterdir():  # dlt holds its own links to the files it loaded
            path.unlink()


def load_bucket(
    bucket_url: str,
    *,
    rescan: bool = False,
    sweep: bool = False,
    window: tuple[date, date] | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> LoadSummary:
    """Load every batch object under `bucket_url` that is not in raw.loaded_objects yet (all with rescan);
    with `window` = (start, end), only the objects of the days in [start, end) (see bucket.object_date).
    The listing starts after the bucket's cursor, or lists everything (a sweep) with `sweep`, `rescan`, or when the
    last sweep is older than BUCKET_SWEEP_MINUTES (ingestion/listing.py).
    One load at a time (a PostgreSQL advisory lock): a second waits for the first."""
    with advisory_lock(get_settings().database_url, LOAD_LOCK, say):
        return _load_bucket(bucket_url, rescan, sweep, window, progress, say)


def _load_bucket(
    bucket_url: str,
    rescan: bool,
    sweep: bool,
    window: tuple[date, date] | None,
    progress: bool,
    say: Callable[[str], None],
) -> LoadSummary:
    started = time.perf_counter()
    check_bucket(bucket_url)
    settings = get_settings()
    pipeline = events_pipeline(settings, progress=progress)
    finish_pending(pipeline, say)
    listing = list_new(settings.database_url, bucket_url, sweep=True if (rescan or sweep) else None)
    listed = listing.listed if rescan else listing.new
    scope = ""
    if window is not None:
        listed = objects_in_window(listed, window, settings.partitions_start_date, utc_today())
        scope = f" dated {window[0]} .. {window[1] - timedelta(days=1)}"
    say(listing.describe() + (f"; {len(listed):,} of them{scope} to load" if scope or rescan else ""))
    pending = deque(listed)
    summary = LoadSummary(source=bucket_url)
    options = Options(anonymize_ip=settings.anonymize_ip)
    workers = settings.ingest_workers if len(pending) > 1 else 1
    with ImportFolder(pipeline) as folder, ChunkRunner(workers) as runner:
        loads = prepare_bucket_loads(pending, options, runner, settings.ingest_max_lines)
        _run_loads(pipeline, loads, folder, summary, say)
    _finish(pipeline, summary, started)
    advance(settings.database_url, listing, (object_key(item) for item in listed))
    summary.days = {object_date(item, settings.partitions_start_date, utc_today()) for item in listed}
    return summary


def load_kinesis(stream: str, *, progress: bool = True, say: Callable[[str], None] = print) -> LoadSummary:
    """Load every record of every shard after the positions committed by the last load (one load at a time)."""
    with advisory_lock(get_settings().database_url, LOAD_LOCK, say):
        return _load_kinesis(stream, progress=progress, say=say)


def _load_kinesis(stream: str, *, progress: bool = True, say: Callable[[str], None] = print) -> LoadSummary:
    started = time.perf_counter()
    if not stream:
        raise ValueError("no Kinesis stream given: pass kinesis://STREAM or set KINESIS_STREAM_NAME")
    settings = get_settings()
    pipeline = events_pipeline(settings, progress=progress)
    finish_pending(pipeline, say)
    pipeline.sync_destination()  # the committed positions, even if the local dlt folder was lost
    summary = LoadSummary(source=f"kinesis://{stream}")
    options = Options(anonymize_ip=settings.anonymize_ip)
    with ImportFolder(pipeline) as folder, ChunkRunner(settings.ingest_workers) as runner:
        positions = committed_positions(pipeline)
        loads = prepare_kinesis_loads(stream, positions, options, runner, settings.ingest_max_lines)
        _run_loads(pipeline, loads, folder, summary, say)
    _finish(pipeline, summary, started)
    return summary


def _finish(pipeline: dlt.Pipeline, summary: LoadSummary, started: float) -> None:
    ensure_raw_indexes(pipeline)
    summary.stored = new_rows(pipeline, EVENTS_TABLE, summary.load_ids)
    summary.rejected_stored = new_rows(pipeline, REJECTED_TABLE, summary.load_ids)
    summary.seconds = time.perf_counter() - started


def configured_sources() -> list[str]:
    """What `analyticspro load` and the Dagster asset read when no source is given: EVENTS_BUCKET_URL, and the
    stream KINESIS_STREAM_NAME when it is set (a missing default folder is skipped when a stream is set)."""
    settings = get_settings()
    sources = []
    bucket = settings.events_bucket_url
    bucket_set = bool(os.environ.get("EVENTS_BUCKET_URL"))
    if bucket_set or not settings.kinesis_stream_name or os.path.isdir(bucket.removeprefix("file://")):
        sources.append(bucket)
    if settings.kinesis_stream_name:
        sources.append(f"kinesis://{settings.kinesis_stream_name}")
    return sources


def load_events(
    source: str | None = None,
    *,
    rescan: bool = False,
    sweep: bool = False,
    window: tuple[date, date] | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> LoadSummary | None:
    """Load from `source` (default EVENTS_BUCKET_URL): a folder, s3://bucket/prefix or kinesis://STREAM.

    `window` = (start, end) is a run's daily partitions: a bucket loads only the objects of those days; a stream,
    which cannot be read by date, is read (everything new) only by a window that includes today, and None is
    returned for it otherwise. `sweep`: list every object of a bucket, not only the keys after its cursor."""
    settings = get_settings()
    url = source or settings.events_bucket_url
    if url.startswith("kinesis://"):
        if window is not None and not (window[0] <= utc_today() < window[1]):
            say(f"{url}: skipped, a stream is read by runs whose partitions include today ({utc_today()})")
            return None
        stream = url.removeprefix("kinesis://") or settings.kinesis_stream_name or ""
        return load_kinesis(stream, progress=progress, say=say)
    return load_bucket(normalize_bucket_url(url), rescan=rescan, sweep=sweep, window=window, progress=progress, say=say)


if __name__ == "__main__":
    for url in sys.argv[1:] or configured_sources():
        summary = load_events(url)
        print(summary.describe() if summary else f"{url}: nothing to do")
