"""Segment messages and bucket objects for tests that drive a warehouse through a sequence of loads: an event at a
given moment, an object of events in a bucket folder, generated hours copied in as they would arrive."""

from __future__ import annotations

import gzip
import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event(kind: str, at: datetime, received: datetime, **fields) -> dict:
    """A Segment message sent when it was received (no clock skew: its timestamp is `at`)."""
    return {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        "originalTimestamp": iso(at),
        "timestamp": iso(at),
        "sentAt": iso(received),
        "receivedAt": iso(received),
        "context": {"library": {"name": "analytics.js", "version": "5.2.0"}},
        **fields,
    }


def put_events(bucket: Path, name: str, events: list[dict]) -> None:
    path = bucket / "events" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in events).encode()))


def copy_hours(files: list[Path], folders: list[Path], generated: Path, bucket: Path) -> None:
    """The generated objects of these hour folders into the bucket, under the same keys."""
    for path in files:
        if path.parent in folders:
            target = bucket / path.relative_to(generated)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
