"""An independent, plain-Python computation of what the warehouse should hold for a folder of batch files.

It shares no code with the loader or the dbt models: it reads the files itself and applies the
definitions from the README (dedup by messageId, identity stitching, activity = track/page/screen).
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ACTIVITY = {"track", "page", "screen"}
KNOWN_TYPES = {"track", "identify", "page", "screen", "group", "alias"}


def parse_ts(text: str) -> datetime:
    """An ISO-8601 time as UTC (the generator writes `...Z`, Segment's Python library `...+00:00`)."""
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass
class Expected:
    lines: int = 0
    events: dict[str, dict] = field(default_factory=dict)  # messageId -> event (valid, deduplicated)
    bad_lines: int = 0
    daily: dict[date, dict[str, int]] = field(default_factory=dict)
    people: int = 0


def anonymous_id_of(event: dict) -> str | None:
    """The anonymous id; Segment's alias carries the old identity as previousId."""
    if event.get("anonymousId"):
        return event["anonymousId"]
    return event.get("previousId") if event.get("type") == "alias" else None


def compute(bucket: Path) -> Expected:
    result = Expected()
    for path in sorted(bucket.rglob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            for raw in handle:
                if not raw.strip():
                    continue
                result.lines += 1
                try:
                    event = json.loads(raw)
                    ok = (
                        isinstance(event, dict)
                        and event.get("type") in KNOWN_TYPES
                        and isinstance(event.get("messageId"), str)
                        and (event.get("userId") or anonymous_id_of(event))
                        and (event["type"] != "track" or event.get("event"))
                    )
                    parse_ts(event["timestamp"]) if ok else None
                except (ValueError, KeyError, TypeError):
                    ok = False
                if ok:
                    result.events[event["messageId"]] = event
                else:
                    result.bad_lines += 1

    # identity: anonymous id -> user id of the earliest event carrying both
    first_pair: dict[str, tuple[datetime, str, str]] = {}
    for event in result.events.values():
        anon, user = anonymous_id_of(event), event.get("userId")
        if anon and user:
            key = (parse_ts(event["timestamp"]), event["messageId"], user)
            if anon not in first_pair or key < first_pair[anon]:
                first_pair[anon] = key

    def person(event: dict) -> str:
        if event.get("userId"):
            return event["userId"]
        anon = anonymous_id_of(event)
        return first_pair[anon][2] if anon in first_pair else anon

    active: dict[date, set[str]] = defaultdict(set)
    counts: dict[date, dict[str, int]] = defaultdict(lambda: {"events": 0, "signups": 0})
    days: set[date] = set()
    people: set[str] = set()
    for event in result.events.values():
        day = parse_ts(event["timestamp"]).date()
        days.add(day)
        people.add(person(event))
        if event["type"] in ACTIVITY:
            active[day].add(person(event))
            counts[day]["events"] += 1
        if event["type"] == "track" and event.get("event") == "user_signed_up":
            counts[day]["signups"] += 1
    result.people = len(people)
    if days:
        day = min(days)
        while day <= max(days):
            result.daily[day] = {
                "dau": len(active.get(day, ())),
                "events": counts[day]["events"] if day in counts else 0,
                "signups": counts[day]["signups"] if day in counts else 0,
            }
            day += timedelta(days=1)
    return result
