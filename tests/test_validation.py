"""Each kind of bad input gets a rejection whose reason says what is wrong; good input gets a typed row."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingestion.validation import MAX_EVENT_BYTES, Rejection, validate_line

GOOD = {
    "type": "track",
    "messageId": "m-1",
    "anonymousId": "a-1",
    "event": "button_clicked",
    "properties": {"button_id": "x", "Weird Key": 1},
    "context": {"ip": "1.2.3.4"},
    "timestamp": "2026-01-02T03:04:05.678Z",
    "sentAt": "2026-01-02T03:04:06.000Z",
    "receivedAt": "2026-01-02T03:04:06.100Z",
}


def line(event: object) -> bytes:
    return json.dumps(event).encode() + b"\n"


def test_good_event_becomes_typed_row():
    row = validate_line(line(GOOD), "s3://b/k.jsonl.gz", "line 7")
    assert not isinstance(row, Rejection)
    assert row["message_id"] == "m-1"
    assert row["timestamp"] == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert row["properties"] == {"button_id": "x", "Weird Key": 1}  # property names kept as sent
    assert (row["source"], row["source_position"]) == ("s3://b/k.jsonl.gz", "line 7")
    assert row["user_id"] is None and row["event"] == "button_clicked"


def test_timestamp_falls_back_to_received_at_and_offsets_become_utc():
    event = {k: v for k, v in GOOD.items() if k != "timestamp"}
    assert validate_line(line(event), "f", "line 1")["timestamp"] == datetime(2026, 1, 2, 3, 4, 6, 100000, tzinfo=UTC)
    event = {**GOOD, "timestamp": "2026-01-02T05:04:05+02:00"}
    assert validate_line(line(event), "f", "line 1")["timestamp"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"type": "track", "messageId": ', "malformed JSON"),
        (b"[1, 2, 3]", "must be a JSON object, got list"),
        (line({**GOOD, "type": "purchase"}), "type 'purchase' is not one of"),
        (line({k: v for k, v in GOOD.items() if k != "messageId"}), "messageId is missing"),
        (line({**GOOD, "anonymousId": None}), "needs a userId or an anonymousId"),
        (line({**GOOD, "event": ""}), "needs an event name"),
        (line({**GOOD, "timestamp": "yesterday"}), "is not an ISO-8601 timestamp"),
        (line({**GOOD, "userId": {"id": 1}}), "userId must be a string"),
        (line({**GOOD, "properties": [1]}), "properties must be a JSON object"),
        (b'{"type": "track", "messageId": "\xff\xfe"}', "invalid UTF-8"),
        (line({**GOOD, "properties": {"blob": "x" * MAX_EVENT_BYTES}}), "the limit is 32,768"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(payload: bytes, reason: str):
    result = validate_line(payload, "bucket/file.jsonl", "line 3")
    assert isinstance(result, Rejection)
    assert reason in result.reason
    assert result.source_position == "line 3"
    # the original bytes survive as text, invalid bytes escaped rather than lost
    assert result.payload == payload.decode("utf-8", errors="backslashreplace").rstrip("\n")


def test_rejection_rows_have_a_stable_key():
    rejection = Rejection("f", "line 1", "bad", "{")
    now = datetime.now(UTC)
    assert rejection.as_row(now)["rejection_id"] == Rejection("f", "line 1", "other", "x").as_row(now)["rejection_id"]
    assert rejection.as_row(now)["rejection_id"] != Rejection("f", "line 2", "bad", "{").as_row(now)["rejection_id"]
