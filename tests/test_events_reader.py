"""Reading batch objects: gzip and plain files, and a corrupt object that must not stop the other files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from ingestion.bucket import list_objects
from ingestion.chunks import process_object
from ingestion.validation import Options


def event(i: int) -> dict:
    return {"type": "page", "messageId": f"m{i}", "anonymousId": "a", "timestamp": "2026-01-01T00:00:00.000Z"}


def read_folder(folder: Path) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {"events": [], "rejected_events": [], "counts": []}
    for item in list_objects(str(folder)):
        result = process_object(item.read_bytes(), item["file_url"], Options())
        tables["events"] += result.events.to_pylist() if result.events is not None else []
        tables["rejected_events"] += result.rejected.to_pylist() if result.rejected is not None else []
        tables["counts"].append((item["file_name"], result.counts))
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
    assert [name for name, _ in tables["counts"]] == ["good.jsonl.gz", "plain.jsonl", "truncated.jsonl.gz"]
    ids = [row["message_id"] for row in tables["events"]]
    assert {"m0", "m1", "m2", "m3"} <= set(ids)
    from_truncated = [row for row in tables["events"] if row["source"].endswith("truncated.jsonl.gz")]
    assert 0 < len(from_truncated) < 4000  # the lines before the damage are kept
    [rejection] = tables["rejected_events"]
    assert rejection["source"].endswith("truncated.jsonl.gz")
    assert rejection["source_position"] == f"after line {len(from_truncated)}"
    assert "could not be read after line" in rejection["reason"] and "good copy" in rejection["reason"]
    # every object's counts add up: lines read = events + rejected (the unreadable rest counts as one)
    for _, counts in tables["counts"]:
        assert counts.lines_read == counts.events + counts.rejected
    assert [c.lines_read for _, c in tables["counts"]] == [2, 2, len(from_truncated) + 1]
