"""One validation and enrichment step shared by every source: raw bytes in, typed rows or rejections out.

What makes an event valid (the Segment spec, checked strictly):
- a JSON object of at most 32 KB, in valid UTF-8;
- a known `type` (track, identify, page, screen, group, alias), a non-empty string `messageId`,
  a `userId` or `anonymousId` (string or number), an `event` name for `track`; an `alias` without
  `anonymousId` keeps its `previousId` as the anonymous id (what the identity map stitches);
- a parseable timestamp (`originalTimestamp`/`timestamp`, else `receivedAt`); `properties`, `traits`
  and `context` are objects when present. Property names are kept exactly as sent.

Enrichment (ingestion/enrich.py): clock-skew correction, the future-timestamp guard, IP anonymization
and user-agent parsing. A rejection keeps where the input came from, the reason in words and the original
bytes as text (invalid bytes escaped), so nothing is ever dropped silently: loaded + rejected = lines read.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ingestion.enrich import NO_USER_AGENT, InvalidIp, anonymize_ip, parse_user_agent

EVENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
MAX_EVENT_BYTES = 32 * 1024
MAX_FUTURE = timedelta(hours=24)

# Columns of raw.events, in order; the dlt resource declares them so the table shape is a contract.
EVENT_COLUMNS: dict[str, dict[str, Any]] = {
    "message_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "type": {"data_type": "text", "nullable": False},
    "event": {"data_type": "text", "nullable": True},
    "name": {"data_type": "text", "nullable": True},
    "user_id": {"data_type": "text", "nullable": True},
    "anonymous_id": {"data_type": "text", "nullable": True},
    "timestamp": {"data_type": "timestamp", "nullable": False},
    "original_timestamp": {"data_type": "timestamp", "nullable": True},
    "sent_at": {"data_type": "timestamp", "nullable": True},
    "received_at": {"data_type": "timestamp", "nullable": True},
    "future_timestamp": {"data_type": "bool", "nullable": True},
    "properties": {"data_type": "json", "nullable": True},
    "traits": {"data_type": "json", "nullable": True},
    "context": {"data_type": "json", "nullable": True},
    "browser": {"data_type": "text", "nullable": True},
    "browser_version": {"data_type": "text", "nullable": True},
    "os": {"data_type": "text", "nullable": True},
    "os_version": {"data_type": "text", "nullable": True},
    "device": {"data_type": "text", "nullable": True},
    "source": {"data_type": "text", "nullable": False},
    "source_position": {"data_type": "text", "nullable": False},
}
EVENT_COLUMN_NAMES = tuple(EVENT_COLUMNS)
JSON_COLUMNS = frozenset(name for name, spec in EVENT_COLUMNS.items() if spec["data_type"] == "json")

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

    @property
    def rejection_id(self) -> str:
        """Stable per (source, position): re-reading the same bad line does not add a second row."""
        return hashlib.sha256(f"{self.source}\x00{self.source_position}".encode()).hexdigest()[:32]

    def as_row(self, rejected_at: datetime) -> dict[str, Any]:
        return {
            "rejection_id": self.rejection_id,
            "rejected_at": rejected_at,
            "source": self.source,
            "source_position": self.source_position,
            "reason": self.reason,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class Options:
    """Per-run switches of the shared step (from the environment: ANONYMIZE_IP)."""

    anonymize_ip: bool = True


DEFAULT_OPTIONS = Options()


def parse_timestamp(value: Any, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"{field} must be an ISO-8601 string, got {type(value).__name__}") from None
        try:  # fromisoformat does not strip whitespace
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidEvent(f"{field} {value[:64]!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:  # Segment timestamps are UTC when no offset is given
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is UTC:
        return parsed
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidEvent(f"{field} {value[:64]!r} is out of range") from None


def _optional_time(event: dict, key: str) -> datetime | None:
    value = event.get(key)
    return None if value is None or value == "" else parse_timestamp(value, key)


def _optional_id(event: dict, key: str) -> str | None:
    value = event.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # Segment accepts numeric ids
        return str(value)
    raise InvalidEvent(f"{key} must be a string, got {type(value).__name__}")


def _optional_text(event: dict, key: str) -> str | None:
    value = event.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidEvent(f"{key} must be a string, got {type(value).__name__}")


def _optional_object(event: dict, key: str) -> dict | None:
    value = event.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise InvalidEvent(f"{key} must be a JSON object, got {type(value).__name__}")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def event_times(
    event: dict, received_fallback: datetime | None = None
) -> tuple[datetime, datetime | None, datetime | None, datetime | None, bool]:
    """(timestamp, original_timestamp, sent_at, received_at, future) by Segment's clock-skew rule.

    `timestamp = receivedAt - (sentAt - originalTimestamp)` when the client sent `sentAt`: the device's clock
    error cancels out. A timestamp more than 24 h after the time the event was received is replaced by that
    time and flagged. `received_fallback` (a Kinesis record's arrival time) stands in for a missing receivedAt.
    """
    received_at = _optional_time(event, "receivedAt") or received_fallback
    sent_at = _optional_time(event, "sentAt")
    original = _optional_time(event, "originalTimestamp") or _optional_time(event, "timestamp")
    if original is None:
        if received_at is None:
            raise InvalidEvent("the event has no timestamp, originalTimestamp or receivedAt")
        return received_at, None, sent_at, received_at, False
    timestamp = original
    if sent_at is not None and received_at is not None:
        try:
            timestamp = received_at - (sent_at - original)
        except OverflowError:
            raise InvalidEvent("sentAt and timestamp are too far apart to correct the clock skew") from None
    if received_at is not None and timestamp - received_at > MAX_FUTURE:
        return received_at, original, sent_at, received_at, True
    return timestamp, original, sent_at, received_at, False


def validate_event(
    event: Any, options: Options = DEFAULT_OPTIONS, received_fallback: datetime | None = None
) -> dict[str, Any]:
    """Check and enrich one decoded event; return the raw.events row without its source columns."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {type(event).__name__}")
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        allowed = ", ".join(sorted(EVENT_TYPES))
        if kind is None:
            raise InvalidEvent(f"type is missing; it must be one of {allowed}")
        raise InvalidEvent(f"type {str(kind)[:64]!r} is not one of {allowed}")
    message_id = event.get("messageId")
    if not isinstance(message_id, str) or not message_id.strip():
        raise InvalidEvent("messageId is missing or not a non-empty string")
    if len(message_id) > 256:
        raise InvalidEvent(f"messageId is {len(message_id)} characters; the limit is 256")
    user_id = _optional_id(event, "userId")
    anonymous_id = _optional_id(event, "anonymousId")
    if kind == "alias" and anonymous_id is None:
        # Segment's alias names the old identity `previousId` (server SDKs send no anonymousId): it is the id the
        # identity map stitches to userId, so it is stored as the anonymous id.
        anonymous_id = _optional_id(event, "previousId")
    if user_id is None and anonymous_id is None:
        raise InvalidEvent("an event needs a userId or an anonymousId")
    name = event.get("event")
    if kind == "track":
        if not isinstance(name, str) or not name.strip():
            raise InvalidEvent("a track call needs an event name (a non-empty string) in 'event'")
    else:
        name = None
    timestamp, original, sent_at, received_at, future = event_times(event, received_fallback)
    properties = _optional_object(event, "properties")
    traits = _optional_object(event, "traits")
    context = _optional_object(event, "context")
    page_name = _optional_text(event, "name")
    agent = NO_USER_AGENT
    if context:
        ip = context.get("ip")
        if ip is not None and options.anonymize_ip:
            if not isinstance(ip, str):
                raise InvalidEvent(f"context.ip must be a string, got {type(ip).__name__}")
            try:
                context = {**context, "ip": anonymize_ip(ip)}
            except InvalidIp as exc:
                raise InvalidEvent(str(exc)) from None
        user_agent = context.get("userAgent")
        if isinstance(user_agent, str) and user_agent:
            agent = parse_user_agent(user_agent)
    return {
        "message_id": message_id,
        "type": kind,
        "event": name,
        "name": page_name,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "timestamp": timestamp,
        "original_timestamp": original,
        "sent_at": sent_at,
        "received_at": received_at,
        "future_timestamp": future,
        "properties": properties,
        "traits": traits,
        "context": context,
        "browser": agent.browser,
        "browser_version": agent.browser_version,
        "os": agent.os,
        "os_version": agent.os_version,
        "device": agent.device,
    }


def payload_text(data: bytes) -> str:
    """The original bytes as text, invalid UTF-8 escaped (\\xNN), never lost."""
    return data.decode("utf-8", errors="backslashreplace").rstrip("\r\n")


def validate_line(
    line: bytes,
    source: str,
    position: str,
    options: Options = DEFAULT_OPTIONS,
    received_fallback: datetime | None = None,
) -> dict[str, Any] | Rejection:
    """Decode, validate and enrich one JSON line; never raises for bad input."""
    if len(line) > MAX_EVENT_BYTES:  # checked before parsing: never spend time on an oversized line
        return Rejection(
            source, position, f"event is {len(line):,} bytes; the limit is {MAX_EVENT_BYTES:,}", payload_text(line)
        )
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as utf:
            return Rejection(source, position, f"invalid UTF-8 at byte {utf.start}", payload_text(line))
        return Rejection(source, position, f"malformed JSON: {exc}", payload_text(line))
    return validate_decoded(event, line, source, position, options, received_fallback)


def validate_decoded(
    event: Any,
    raw: bytes,
    source: str,
    position: str,
    options: Options = DEFAULT_OPTIONS,
    received_fallback: datetime | None = None,
) -> dict[str, Any] | Rejection:
    """Validate an already-decoded event (`raw` is its original bytes, kept for a rejection)."""
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection(
            source, position, f"event is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES:,}", payload_text(raw)
        )
    try:
        row = validate_event(event, options, received_fallback)
        # PostgreSQL cannot store U+0000 in text or jsonb; one such value would fail the whole batch.
        if b"\\u0000" in raw and _has_nul(event):
            raise InvalidEvent("a string contains the NUL character (\\u0000), which PostgreSQL cannot store")
    except InvalidEvent as exc:
        return Rejection(source, position, str(exc), payload_text(raw))
    row["source"] = source
    row["source_position"] = position
    return row


GZIP_MAGIC = b"\x1f\x8b"


def split_record(data: bytes) -> Iterator[tuple[str, Any, bytes]]:
    """The events in one stream record: one event, a JSON array of events, or newline-delimited events,
    optionally gzipped. Yields (position suffix, decoded event or None, raw bytes); a None event means the
    raw bytes are not valid JSON and are validated (and rejected) as a line."""
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidEvent(f"the record is not a valid gzip stream: {exc}") from None
    stripped = data.strip()
    if stripped.startswith(b"["):
        try:
            items = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            items = None
        if isinstance(items, list):
            for index, item in enumerate(items):
                yield f"item {index}", item, orjson.dumps(item)
            return
    lines = [line for line in data.split(b"\n") if line.strip()]
    if len(lines) == 1:
        yield "", None, lines[0]
        return
    for number, line in enumerate(lines, start=1):
        yield f"line {number}", None, line
