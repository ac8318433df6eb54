"""Finding new batch objects without listing every object ever written: a cursor per bucket.

Batch keys sort by arrival: Firehose's `YYYY/MM/DD/HH/` folders, the collector's and the generator's keys. So a
listing starts after a cursor kept in `raw.bucket_cursors`, and costs what arrived since it:
- S3: one `ListObjectsV2` with `StartAfter` (plus a page per 1,000 new objects);
- a folder: a walk that opens only the directories holding keys after the cursor (the last hour's, the
  current day's and month's folders), never the old ones.

The cursor moves over the leading run of objects, in key order, that are loaded (in `raw.loaded_objects`) and
settled: last modified more than BUCKET_SETTLE_SECONDS (default 900, Firehose's longest buffer) ago. An upload
that finishes out of order (a delivery stream or collector writing a key earlier than one already listed) is
therefore still found by the next listing, as long as it lands within that time.

What the cursor cannot see is an object written under a key before it after it moved: a backfill copied into old
date folders, an old object rewritten in place. A sweep (a full listing) finds those: a load runs one when the
last is older than BUCKET_SWEEP_MINUTES (default 60; the hourly `materialize_all` run always loads), and
`analyticspro load --sweep` runs one now. A missing cursor (a new bucket, a new database) means a sweep.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
from dlt.common.storages.configuration import FilesystemConfiguration, make_fsspec_url
from dlt.common.storages.fsspec_filesystem import FileItem, FileItemDict, glob_files, guess_mime_type

from common.settings import bucket_settle_seconds, bucket_sweep_minutes
from common.storage import filesystem

EVENT_FILE_PATTERN = "*.jsonl*"  # a batch file's name: .jsonl or .jsonl.gz
CURSOR_TABLE = "raw.bucket_cursors"
OBJECTS_TABLE = "raw.loaded_objects"
S3_PAGE_KEYS = 1000  # keys per ListObjectsV2 request (S3's most)
ObjectKey = tuple[str, int, datetime]


def _is_batch_file(name: str) -> bool:
    # as a folder's glob `**/*.jsonl*` does: hidden files and folders (a collector's upload in progress) are not read
    return not name.startswith(".") and fnmatch.fnmatchcase(name, EVENT_FILE_PATTERN)


def _item(fs: Any, file_url: str, relative_path: str, size: int, modified: datetime) -> FileItemDict:
    mime_type, encoding = guess_mime_type(relative_path)
    item = FileItem(
        file_name=relative_path.rsplit("/", 1)[-1],
        relative_path=relative_path,
        file_url=file_url,
        mime_type=mime_type,
        modification_date=modified,
        size_in_bytes=int(size),
    )
    if encoding is not None:
        item["encoding"] = encoding
    return FileItemDict(item, fs)


def relative_key(bucket_url: str, file_url: str) -> str:
    """An object's key under the bucket URL (`events/2026/12/02/14/batch.jsonl.gz`)."""
    root = _root_url(bucket_url)
    if not file_url.startswith(root):
        raise ValueError(f"{file_url} is not under {bucket_url}")
    return file_url[len(root) :]


def _root_url(bucket_url: str) -> str:
    if "://" in bucket_url and not bucket_url.startswith("file://"):
        return bucket_url.rstrip("/") + "/"
    folder = bucket_url.removeprefix("file://")
    return FilesystemConfiguration.make_file_url(os.path.abspath(folder)).rstrip("/") + "/"


def _walk_folder(folder: str, after: str | None, prefix: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(key, stat) of the batch files under `folder` whose key sorts after `after`, in key order; a directory
    whose keys all sort before it is not opened."""
    with os.scandir(os.path.join(folder, prefix) if prefix else folder) as scan:
        # in the order of their keys: a folder `a` holds keys `a/...`, which sort after a file `a.jsonl`
        entries = sorted(scan, key=lambda entry: entry.name + ("/" if entry.is_dir() else ""))
    for entry in entries:
        key = prefix + entry.name
        if entry.is_dir(follow_symlinks=True):
            if entry.name.startswith("."):
                continue
            below = key + "/"
            if after is not None and below < after and not after.startswith(below):
                continue  # every key below sorts before the cursor
            yield from _walk_folder(folder, after, below)
        elif _is_batch_file(entry.name) and (after is None or key > after):
            yield key, entry.stat()


def _list_folder(bucket_url: str, after: str | None) -> list[FileItemDict]:
    folder = os.path.abspath(bucket_url.removeprefix("file://"))
    fs = filesystem(folder)
    root = _root_url(bucket_url)
    return [
        _item(fs, root + key, key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
        for key, stat in _walk_folder(folder, after)
    ]


def _list_s3(bucket_url: str, after: str | None) -> list[FileItemDict]:
    fs = filesystem(bucket_url)
    bucket, _, prefix = bucket_url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    prefix = prefix + "/" if prefix else ""
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": S3_PAGE_KEYS}
    if after is not None:
        request["StartAfter"] = prefix + after
    items = []
    while True:
        page = fs.call_s3("list_objects_v2", **request)
        for found in page.get("Contents", []):
            key = found["Key"][len(prefix) :]
            folders, _, name = key.rpartition("/")
            if _is_batch_file(name) and not any(part.startswith(".") for part in folders.split("/")):
                url = make_fsspec_url("s3", f"{bucket}/{found['Key']}", bucket_url)
                items.append(_item(fs, url, key, found["Size"], found["LastModified"]))
        if not page.get("IsTruncated"):
            break
        request["ContinuationToken"] = page["NextContinuationToken"]
    return items


def list_after(bucket_url: str, after: str | None = None) -> list[FileItemDict]:
    """The batch objects under the bucket URL whose key sorts after `after` (all when None), in key order."""
    if bucket_url.startswith("s3://"):
        return _list_s3(bucket_url, after)
    if "://" not in bucket_url or bucket_url.startswith("file://"):
        return _list_folder(bucket_url, after)
    # another fsspec protocol (gs://, az://): a full listing, then the keys after the cursor
    fs = filesystem(bucket_url)
    items = [FileItemDict(item, fs) for item in glob_files(fs, bucket_url, "**/" + EVENT_FILE_PATTERN)]
    after_url = None if after is None else _root_url(bucket_url) + after
    return sorted(
        (item for item in items if after_url is None or item["file_url"] > after_url), key=lambda i: i["file_url"]
    )


@dataclass
class Cursor:
    after: str | None  # every key up to here is loaded (None: nothing known, list everything)
    swept_at: datetime | None  # the last full listing


def _exists(cursor: Any, table: str) -> bool:
    cursor.execute("select to_regclass(%s) is not null", (table,))
    return bool(cursor.fetchone()[0])


def read_cursor(cursor: Any, bucket_url: str) -> Cursor:
    """The bucket's cursor (an empty one when the table or the row is missing)."""
    if not _exists(cursor, CURSOR_TABLE):
        return Cursor(None, None)
    cursor.execute(f"select listed_through, swept_at from {CURSOR_TABLE} where bucket_url = %s", (bucket_url,))
    row = cursor.fetchone()
    return Cursor(*row) if row else Cursor(None, None)


def _write_cursor(cursor: Any, bucket_url: str, after: str | None, swept_at: datetime | None) -> None:
    cursor.execute("create schema if not exists raw")
    cursor.execute(
        f"""create table if not exists {CURSOR_TABLE} (
            bucket_url text primary key,
            listed_through text,
            swept_at timestamptz,
            updated_at timestamptz not null default now()
        )"""
    )
    cursor.execute(
        f"""insert into {CURSOR_TABLE} as c (bucket_url, listed_through, swept_at) values (%s, %s, %s)
        on conflict (bucket_url) do update set listed_through = excluded.listed_through,
            swept_at = coalesce(excluded.swept_at, c.swept_at), updated_at = now()""",
        (bucket_url, after, swept_at),
    )


def loaded_keys(cursor: Any, bucket_url: str, after: str | None) -> set[ObjectKey]:
    """(url, size, modified) of the loaded objects whose key sorts after `after` (all when None), in byte order as
    S3 and the walk sort keys, whatever the database's collation (an index on `object_url collate "C"` serves it)."""
    if not _exists(cursor, OBJECTS_TABLE):
        return set()
    query = f"select object_url, size_bytes, modified_at from {OBJECTS_TABLE}"
    if after is None:
        cursor.execute(query)
    else:
        cursor.execute(query + ' where object_url collate "C" > %s', (_root_url(bucket_url) + after,))
    return {(url, int(size), modified.replace(microsecond=0)) for url, size, modified in cursor.fetchall()}


def object_key(item: dict[str, Any]) -> ObjectKey:
    """What identifies one version of an object: (url, size, modified), as `raw.loaded_objects` records it."""
    modified = item["modification_date"]
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    # microseconds are dropped: S3 reports whole seconds and the database round-trips microseconds
    return item["file_url"], int(item["size_in_bytes"]), modified.astimezone(UTC).replace(microsecond=0)


@dataclass
class Listing:
    """One look at a bucket: what was listed (in key order), which of it is loaded, and from where."""

    bucket_url: str
    listed: list[FileItemDict]
    loaded: set[ObjectKey]
    after: str | None  # where the listing started (None: every object)
    swept: bool
    cursor: str | None = None  # where the cursor stands now (advance moves it)
    sweep_recorded: bool = False

    @property
    def new(self) -> list[FileItemDict]:
        return [item for item in self.listed if object_key(item) not in self.loaded]

    def describe(self) -> str:
        scope = "every object (a sweep)" if self.swept else f"the objects after {self.after or 'the start'}"
        return f"{self.bucket_url}: listed {scope}: {len(self.listed):,}, {len(self.new):,} not loaded yet"


def list_new(database_url: str, bucket_url: str, *, sweep: bool | None = None, now: datetime | None = None) -> Listing:
    """The objects after the bucket's cursor and which of them are loaded; the cursor moves over what is loaded
    and settled. `sweep`: True lists everything, False only after the cursor, None everything when there is no
    cursor or the last sweep is older than BUCKET_SWEEP_MINUTES."""
    now = now or datetime.now(UTC)
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        found = read_cursor(cursor, bucket_url)
        if sweep is None:
            sweep = (
                found.after is None
                or found.swept_at is None
                or now - found.swept_at >= timedelta(minutes=bucket_sweep_minutes())
            )
        after = None if sweep else found.after
        listed = list_after(bucket_url, after)
        listing = Listing(bucket_url, listed, loaded_keys(cursor, bucket_url, after), after, sweep, cursor=found.after)
        _advance(cursor, listing, (), now)
    connection.close()
    return listing


def advance(database_url: str, listing: Listing, loaded: Iterable[ObjectKey], now: datetime | None = None) -> None:
    """After a load: move the cursor over the leading listed objects that are loaded now (`loaded`: what the load
    wrote) and settled."""
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        _advance(cursor, listing, loaded, now or datetime.now(UTC))
    connection.close()


def _advance(cursor: Any, listing: Listing, loaded: Iterable[ObjectKey], now: datetime) -> None:
    done = listing.loaded | set(loaded)
    settled_before = now - timedelta(seconds=bucket_settle_seconds())
    through = listing.after
    for item in listing.listed:
        key = object_key(item)
        if key not in done or key[2] > settled_before:
            break
        through = relative_key(listing.bucket_url, key[0])
    record_sweep = listing.swept and not listing.sweep_recorded
    if record_sweep or through != listing.cursor:
        _write_cursor(cursor, listing.bucket_url, through, now if record_sweep else None)
        listing.cursor, listing.sweep_recorded = through, listing.swept
