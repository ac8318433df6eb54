"""One validation step shared by every source: a raw line in, a typed row or a rejection out.

A rejection keeps where the line came from, the reason in words and the original bytes as text,
so nothing is ever dropped silently: loaded + rejected = lines read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

EVENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
MAX_EVENT_BYTES = 32 * 1024

# Columns of raw.events, in order; the dlt resource declares them so the table shape is a contract.
EVENT_COLUMNS: dict[str, dict[str, Any]] = {
    "message_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "type": {"data_type": "text", "nullable": False},
    "event": {"data_type": "text", "nullable": True},
    "name": {"data_type": "text", "nullable": True},
    "user_id": {"data_type": "text", "nullable": True},
    "anonymous_id": {"data_type": "text", "nullable": True},
    "timestamp": {"data_type": "timestamp", "nullable": False},
    "sent_at": {"data_type": "timestamp", "nullable": True},
    "received_at": {"data_type": "timestamp", "nullable": True},
    "properties": {"data_type": "json", "nullable": True},
    "traits": {"data_type": "json", "nullable": True},
    "context": {"data_type": "json", "nullable": True},
    "source": {"data_type": "text", "nullable": False},
    "source_position": {"data_type": "text", "nullable": False},
}

REJECTED_COLUMNS: dict[str, dict[str, Any]] = {
    "rejection_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "rejected_at": {"data_type": "timestamp", "nullable": False},
    "source": {"data_type": "text", "nullable": False},
    "source_position": {"data_type": "text", "nullable": False},
    "reason": {"data_type": "text", "nullable": False},
    "payload": {"data_type": "text", "nullable": False},
}


class InvalidEvent(ValueError):
    """The reason an event cannot be loaded, in words a sender can act on."""


@dataclass(frozen=True)
class Rejection:
    source: str
    source_position: str
    reason: str
    payload: str

    def as_row(self, rejected_at: datetime) -> dict[str, Any]:
        key = hashlib.sha256(f"{self.source}\x00{self.source_position}".encode()).hexdigest()[:32]
        return {
            "rejection_id": key,
            "rejected_at": rejected_at,
            "source": self.source,
            "source_position": self.source_position,
            "reason": self.reason,
            "payload": self.payload,
        }


def parse_timestamp(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{field} must be an ISO-8601 string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEvent(f"{field} {value!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:  # Segment timestamps are UTC when no offset is given
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _optional_id(event: dict, key: str) -> str | None:
    value = event.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(f"{key} must be a string, got {type(value).__name__}")
    return str(value)


def _optional_object(event: dict, key: str) -> dict | None:
    value = event.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidEvent(f"{key} must be a JSON object, got {type(value).__name__}")
    return value


def validate_event(event: Any) -> dict[str, Any]:
    """Check one decoded event against the Segment spec and return the raw.events row (no source columns)."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {type(event).__name__}")
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise InvalidEvent(f"type {kind!r} is not one of {', '.join(sorted(EVENT_TYPES))}")
    message_id = event.get("messageId")
    if not isinstance(message_id, str) or not message_id.strip():
        raise InvalidEvent("messageId is missing or not a non-empty string")
    user_id = _optional_id(event, "userId")
    anonymous_id = _optional_id(event, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InvalidEvent("an event needs a userId or an anonymousId")
    name = event.get("event")
    if kind == "track" and (not isinstance(name, str) or not name.strip()):
        raise InvalidEvent("a track call needs an event name in 'event'")
    received_at = parse_timestamp(event["receivedAt"], "receivedAt") if event.get("receivedAt") else None
    sent_at = parse_timestamp(event["sentAt"], "sentAt") if event.get("sentAt") else None
    if event.get("timestamp") is not None:
        timestamp = parse_timestamp(event["timestamp"], "timestamp")
    elif event.get("originalTimestamp") is not None:
        timestamp = parse_timestamp(event["originalTimestamp"], "originalTimestamp")
    elif received_at is not None:
        timestamp = received_at
    else:
        raise InvalidEvent("the event has no timestamp, originalTimestamp or receivedAt")
    page_name = event.get("name")
    return {
        "message_id": message_id,
        "type": kind,
        "event": name if kind == "track" else None,
        "name": page_name if isinstance(page_name, str) else None,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "timestamp": timestamp,
        "sent_at": sent_at,
        "received_at": received_at,
        "properties": _optional_object(event, "properties"),
        "traits": _optional_object(event, "traits"),
        "context": _optional_object(event, "context"),
    }


def validate_line(line: bytes, source: str, position: str) -> dict[str, Any] | Rejection:
    """Decode and validate one JSON line; never raises for bad input."""
    payload_text = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
    if len(line) > MAX_EVENT_BYTES:
        return Rejection(
            source, position, f"event is {len(line):,} bytes; the limit is {MAX_EVENT_BYTES:,}", payload_text
        )
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(source, position, f"invalid UTF-8 at byte {exc.start}", payload_text)
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejection(source, position, f"malformed JSON: {exc.msg} (line column {exc.colno})", payload_text)
    try:
        row = validate_event(event)
    except InvalidEvent as exc:
        return Rejection(source, position, str(exc), payload_text)
    row["source"] = source
    row["source_position"] = position
    return row
