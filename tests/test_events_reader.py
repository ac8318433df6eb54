"""Reading batch files: gzip and plain files, and a corrupt object that must not stop the other files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from dlt.sources.filesystem import filesystem

from ingestion.events import EVENT_FILE_GLOB, _read_file


def event(i: int) -> dict:
    return {"type": "page", "messageId": f"m{i}", "anonymousId": "a", "timestamp": "2026-01-01T00:00:00.000Z"}


def read_folder(folder: Path) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {"events": [], "rejected_events": []}
    for item in filesystem(bucket_url=str(folder), file_glob=EVENT_FILE_GLOB):
        for marked in _read_file(item):
            tables[marked.meta.table_name].extend(marked.data)
    return tables


def test_gzip_plain_and_corrupt_objects(tmp_path):
    lines = [json.dumps(event(i)).encode() + b"\n" for i in range(6)]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "good.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[:2])))
    (tmp_path / "a" / "plain.jsonl").write_bytes(b"".join(lines[2:4]) + b"\n\n")  # blank lines are skipped
    whole = gzip.compress(b"".join(lines[4:]) * 2000)
    (tmp_path / "a" / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "a" / "notes.txt").write_text("not an event file")

    tables = read_folder(tmp_path)
    ids = [row["message_id"] for row in tables["events"]]
    assert {"m0", "m1", "m2", "m3"} <= set(ids)
    from_truncated = [row for row in tables["events"] if row["source"].endswith("truncated.jsonl.gz")]
    assert 0 < len(from_truncated) < 4000  # the lines before the damage are kept
    [rejection] = tables["rejected_events"]
    assert rejection["source"].endswith("truncated.jsonl.gz")
    assert rejection["source_position"] == f"after line {len(from_truncated)}"
    assert "could not be read after line" in rejection["reason"] and "replace it" in rejection["reason"]
