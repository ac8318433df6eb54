"""Listing a bucket after a cursor: the same objects a full listing finds after it, folders no older than the cursor
opened, and the cursor itself (ingestion/listing.py) moving only over loaded, settled objects, with a sweep finding
what was written under old keys."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg2
from dlt.common.storages.fsspec_filesystem import FileItemDict, glob_files

from common.storage import filesystem
from ingestion import listing
from ingestion.events import load_events, unloaded_objects
from ingestion.listing import list_after, list_new, object_key, relative_key

# keys chosen so that the order of names in a folder is not the order of keys: a file `a.jsonl` sorts before the
# folder `a/`, and `a-b/` before `a/`; hidden files and other names are not batch files
KEYS = [
    "a-b/x.jsonl",
    "a.jsonl",
    "a/x.jsonl.gz",
    "a/y/z.jsonl",
    "events/2026/01/30/23/one.jsonl",
    "events/2026/01/31/00/two.jsonl",
    "events/2026/01/31/00/two.jsonl.gz",
    "events/2026/01/31/09/three.jsonl",
    "events/2026/02/01/00/four.jsonl",
    "events/2026/02/01/00/sub/five.jsonl",
]
NOT_BATCH = ["events/2026/01/31/00/.two.jsonl.tmp", "events/2026/01/31/00/readme.txt", ".hidden/x.jsonl"]


def glob_keys(bucket_url: str) -> list[tuple[str, int, datetime]]:
    """What a full listing through dlt's glob finds (how loads listed before the cursor existed)."""
    fs = filesystem(bucket_url)
    return sorted(object_key(FileItemDict(item, fs)) for item in glob_files(fs, bucket_url, "**/*.jsonl*"))


def write_folder(root: Path) -> None:
    for n, key in enumerate(KEYS + NOT_BATCH):
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{}\n" * (n + 1))


def cut_points() -> list[str | None]:
    """Every key, and strings between and around them (a folder's name, a prefix of a key)."""
    return [None, "", "a", "a-b/", "a/", "a/x", "events/2026/01/31/", "events/2026/01/31/00/two.jsonl", "zzz", *KEYS]


def test_a_folder_lists_as_dlt_globs_it_and_after_any_cursor(tmp_path):
    root = tmp_path / "bucket"
    write_folder(root)
    everything = list_after(str(root))
    assert [object_key(item) for item in everything] == glob_keys(str(root))
    assert [relative_key(str(root), item["file_url"]) for item in everything] == sorted(KEYS)
    for after in cut_points():
        expected = [key for key in sorted(KEYS) if after is None or key > after]
        found = [item["relative_path"] for item in list_after(str(root), after)]
        assert found == expected, after


def test_a_listing_after_the_cursor_opens_no_older_folder(tmp_path, monkeypatch):
    root = tmp_path / "bucket"
    for day in range(1, 29):
        for hour in (0, 12):
            path = root / f"events/2026/02/{day:02d}/{hour:02d}/batch.jsonl"
            path.parent.mkdir(parents=True)
            path.write_text("{}\n")
    opened: list[str] = []
    scandir = os.scandir

    def counting(path):
        opened.append(os.path.relpath(path, root))
        return scandir(path)

    monkeypatch.setattr(listing.os, "scandir", counting)
    found = list_after(str(root), "events/2026/02/27/12/batch.jsonl")
    assert [item["relative_path"] for item in found] == [
        "events/2026/02/28/00/batch.jsonl",
        "events/2026/02/28/12/batch.jsonl",
    ]
    # the root, events, 2026, 02, day 27's last hour and day 28: never the 26 days before nor 27's first hour
    assert sorted(opened) == sorted(
        [".", "events", "events/2026", "events/2026/02", "events/2026/02/27", "events/2026/02/27/12"]
        + ["events/2026/02/28", "events/2026/02/28/00", "events/2026/02/28/12"]
    )


def test_s3_lists_with_start_after_as_dlt_globs_it(aws_endpoint, monkeypatch):
    client = boto3.client("s3", endpoint_url=aws_endpoint)
    client.create_bucket(Bucket="events-bucket")
    for n, key in enumerate(KEYS + NOT_BATCH):
        client.put_object(Bucket="events-bucket", Key=f"firehose/{key}", Body=b"{}\n" * (n + 1))
    client.put_object(Bucket="events-bucket", Key="firehose-other/events/x.jsonl", Body=b"{}\n")
    url = "s3://events-bucket/firehose"
    everything = list_after(url)
    assert [object_key(item) for item in everything] == [
        key for key in glob_keys(url) if "/." not in key[0]
    ]  # hidden files and folders are skipped as in a folder (dlt's S3 glob took them)
    assert [relative_key(url, item["file_url"]) for item in everything] == sorted(KEYS)
    for after in cut_points():
        expected = [key for key in sorted(KEYS) if after is None or key > after]
        assert [relative_key(url, item["file_url"]) for item in list_after(url, after)] == expected, after
    # a listing of more than a page follows the continuation tokens
    monkeypatch.setattr(listing, "S3_PAGE_KEYS", 4)
    for n in range(9):
        client.put_object(Bucket="events-bucket", Key=f"firehose/events/2026/03/01/00/{n:05d}.jsonl", Body=b"{}\n")
    found = [relative_key(url, item["file_url"]) for item in list_after(url, "events/2026/02/")]
    assert found == [*sorted(KEYS)[-2:], *(f"events/2026/03/01/00/{n:05d}.jsonl" for n in range(9))]


def batch(path: Path, name: str, day: str, count: int = 2) -> Path:
    lines = [
        {
            "type": "track",
            "event": "listed",
            "messageId": f"{name}-{n}",
            "anonymousId": f"anon-{name}",
            "timestamp": f"{day}T10:00:00Z",
        }
        for n in range(count)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def cursor_row(database_url: str, bucket_url: str) -> tuple | None:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select listed_through, swept_at from raw.bucket_cursors where bucket_url = %s", (bucket_url,))
        row = cursor.fetchone()
    connection.close()
    return row


def age(path: Path, minutes: int) -> None:
    then = time.time() - minutes * 60
    os.utime(path, (then, then))


def test_the_cursor_moves_over_loaded_settled_objects_and_a_sweep_finds_old_keys(own_database, tmp_path, monkeypatch):
    settings = own_database
    root = tmp_path / "bucket"
    url = str(root)
    monkeypatch.setenv("BUCKET_SWEEP_MINUTES", "60")
    old = [batch(root / f"events/2026/02/0{d}/10/b.jsonl", f"d{d}", f"2026-02-0{d}") for d in (1, 2, 3)]
    for path in old[:2]:
        age(path, 30)
    # the third was written just now: it may still be joined by an upload under an earlier key
    summary = load_events(url, progress=False)
    assert (summary.events, summary.stored) == (6, 6)
    through, swept_at = cursor_row(settings.database_url, url)
    assert through == "events/2026/02/02/10/b.jsonl" and swept_at is not None
    assert unloaded_objects(url) == []

    # once it has settled, a listing moves the cursor over it
    later = datetime.now(UTC) + timedelta(minutes=16)
    assert list_new(settings.database_url, url, sweep=False, now=later).new == []
    assert cursor_row(settings.database_url, url)[0] == "events/2026/02/03/10/b.jsonl"

    # a new hour is found by the listing after the cursor; an object copied into an old folder is not...
    new = batch(root / "events/2026/02/04/00/c.jsonl", "new", "2026-02-04")
    late = batch(root / "events/2026/02/01/11/late.jsonl", "late", "2026-02-01", count=3)
    age(new, 20)
    age(late, 20)
    assert [item["relative_path"] for item in unloaded_objects(url)] == ["events/2026/02/04/00/c.jsonl"]
    summary = load_events(url, progress=False)
    assert (summary.events, summary.stored) == (2, 2)
    assert cursor_row(settings.database_url, url)[0] == "events/2026/02/04/00/c.jsonl"
    # ... until a sweep: one that is due (BUCKET_SWEEP_MINUTES after the last), or `analyticspro load --sweep`
    listing_now = list_new(settings.database_url, url, now=datetime.now(UTC) + timedelta(minutes=61))
    assert listing_now.swept and [item["relative_path"] for item in listing_now.new] == [
        "events/2026/02/01/11/late.jsonl"
    ]
    # the sweep moved the cursor back before the object it found unloaded
    assert cursor_row(settings.database_url, url)[0] == "events/2026/02/01/10/b.jsonl"
    summary = load_events(url, progress=False)
    assert (summary.events, summary.stored) == (3, 3)
    # over the late object, up to the third day's, which was written seconds ago (the "16 minutes later" was a
    # listing's own clock)
    assert cursor_row(settings.database_url, url)[0] == "events/2026/02/02/10/b.jsonl"
    with psycopg2.connect(settings.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*), count(distinct message_id) from raw.events")
        assert cursor.fetchone() == (11, 11)
    connection.close()

    # `--sweep` now: an object rewritten in place under an old key (new size) is read again, merging by message id
    batch(old[0], "d1", "2026-02-01", count=4)
    age(old[0], 20)
    assert load_events(url, progress=False).events == 0
    summary = load_events(url, sweep=True, progress=False)
    assert (summary.events, summary.stored) == (4, 2)


def test_a_bucket_without_a_cursor_is_listed_whole(own_database, tmp_path, monkeypatch):
    monkeypatch.setenv("BUCKET_SETTLE_SECONDS", "0")
    root = tmp_path / "bucket"
    batch(root / "events/2026/02/01/10/b.jsonl", "x", "2026-02-01")
    listing_now = list_new(own_database.database_url, str(root))
    assert listing_now.swept and len(listing_now.new) == 1
    # nothing loaded: the cursor stays at the start, and the next listing is whole again
    assert cursor_row(own_database.database_url, str(root))[0] is None
    assert len(unloaded_objects(str(root))) == 1
