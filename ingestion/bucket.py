"""The bucket source: Segment batch files (`.jsonl`, `.jsonl.gz`) under `s3://bucket/prefix` or a local folder.

It prepares loads for the one dlt source (ingestion/pipeline.py); `analyticspro load s3://bucket/prefix` or
`analyticspro load ./folder` runs it alone, Dagster wraps it in `orchestration/defs/ingestion`.

Incremental by object, not by time: every object loaded is recorded in `raw.loaded_objects` (key, size,
modification time, counts) in the same load as its events, and a run reads every listed object not recorded
yet. Listings start after a cursor over the date-ordered keys (ingestion/listing.py), so they cost what is new;
a periodic sweep lists everything, so an object that arrives late under an old key or date folder is still
loaded. An object rewritten in place (new size or time) is read again; its events merge on message_id, so
nothing is duplicated.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any

from dlt.common.storages.fsspec_filesystem import FileItemDict

from ingestion.batches import PreparedLoad
from ingestion.chunks import ChunkRunner, process_object
from ingestion.listing import list_after, object_key
from ingestion.validation import DEFAULT_OPTIONS, Options


class BucketNotFound(ValueError):
    """The events bucket is a local folder that does not exist (a typo would otherwise load nothing)."""


def check_bucket(bucket_url: str) -> None:
    """Fail early, with what to do, when a local bucket folder is missing; remote buckets are checked by listing."""
    if "://" in bucket_url and not bucket_url.startswith("file://"):
        return
    folder = bucket_url.removeprefix("file://")
    if not os.path.isdir(folder):
        raise BucketNotFound(
            f"the events folder {folder} does not exist. Set EVENTS_BUCKET_URL (or pass SOURCE) to the folder or "
            f"s3://bucket/prefix holding your .jsonl/.jsonl.gz batch files, or create sample data with "
            f"`analyticspro generate --out {folder}`."
        )


# A date in an object's key: Firehose's `.../YYYY/MM/DD/HH/...` folders, or Hive-style `date=YYYY-MM-DD` / `dt=`.
_KEY_DATE = re.compile(r"(?:^|/)(?:(?:date|dt)=(\d{4})-(\d{2})-(\d{2})|(\d{4})/(\d{2})/(\d{2}))(?:/|$)")


def object_date(item: dict[str, Any], first: date | None = None, last: date | None = None) -> date:
    """The UTC day an object belongs to (its daily partition): the last date in its key's folders, else its
    modification date; kept within [first, last] when given, so an object dated before the first partition or
    after today still belongs to one and is never skipped."""
    found = [m.groups() for m in _KEY_DATE.finditer(str(item["file_url"]))]
    day = None
    if found:
        parts = [int(g) for g in found[-1] if g is not None]
        try:
            day = date(*parts)
        except ValueError:
            day = None
    if day is None:
        day = object_key(item)[2].date()
    if first is not None and day < first:
        day = first
    if last is not None and day > last:
        day = last
    return day


def objects_in_window(
    items: Iterable[FileItemDict], window: tuple[date, date], first: date | None = None, last: date | None = None
) -> list[FileItemDict]:
    """The objects whose day (object_date, kept within [first, last]) is in [start, end)."""
    start, end = window
    return [item for item in items if start <= object_date(item, first, last) < end]


def list_objects(bucket_url: str) -> list[FileItemDict]:
    """Every batch object under the bucket URL, in key order (Firehose keys sort by arrival time)."""
    return list_after(bucket_url)


def prepare_bucket_loads(
    pending: deque[FileItemDict],
    options: Options = DEFAULT_OPTIONS,
    runner: ChunkRunner | None = None,
    max_lines: int | None = None,
) -> Iterator[PreparedLoad]:
    """Loads from the objects in `pending`, taken from the left until each load has read about `max_lines`
    lines; every object gets one `raw.loaded_objects` row in the load that holds its events."""
    runner = runner or ChunkRunner(1)
    while pending:
        load = PreparedLoad()
        taken: deque[FileItemDict] = deque()

        def jobs(load: PreparedLoad = load, taken: deque = taken) -> Iterator[tuple[Any, ...]]:
            while pending and (max_lines is None or load.counts.lines_read < max_lines):
                item = pending.popleft()
                taken.append(item)
                yield item.read_bytes(), item["file_url"], options, item["file_name"].endswith(".gz") or None

        for result in runner.map(process_object, jobs()):
            url, size, modified = object_key(taken.popleft())
            counts = result.counts
            load.objects.append(
                {
                    "object_url": url,
                    "size_bytes": size,
                    "modified_at": modified,
                    "lines_read": counts.lines_read,
                    "events": counts.events,
                    "rejected": counts.rejected,
                    "loaded_at": datetime.now(UTC),
                }
            )
            load.add(result.events, result.message_ids, result.rejected, counts)
        yield load.close()
