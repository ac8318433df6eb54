"""The shared validation and enrichment step: typed rows, exact clock-skew and IP values, and a corpus of bad
input that must each be rejected with a reason (the corpus is also loaded through the pipeline, mixed with good
events in one batch, in test_rejections_load)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest

from ingestion.enrich import anonymize_ip, parse_user_agent
from ingestion.validation import MAX_EVENT_BYTES, Options, Rejection, validate_line

GOOD = {
    "type": "track",
    "messageId": "m-1",
    "anonymousId": "a-1",
    "event": "button_clicked",
    "properties": {"button_id": "x", "Weird Key": 1, "ünïcode": "✓"},
    "context": {
        "ip": "203.0.113.77",
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.6478.126 Safari/537.36",
    },
    "timestamp": "2026-01-02T03:04:05.678Z",
    "sentAt": "2026-01-02T03:04:06.000Z",
    "receivedAt": "2026-01-02T03:04:06.100Z",
}


def line(event: object) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode() + b"\n"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_good_event_becomes_typed_enriched_row():
    row = validate_line(line(GOOD), "s3://b/k.jsonl.gz", "line 7")
    assert not isinstance(row, Rejection)
    assert row["message_id"] == "m-1" and row["event"] == "button_clicked" and row["user_id"] is None
    assert row["properties"] == {"button_id": "x", "Weird Key": 1, "ünïcode": "✓"}  # names kept as sent
    assert (row["source"], row["source_position"]) == ("s3://b/k.jsonl.gz", "line 7")
    # receivedAt - (sentAt - timestamp) = 06.100 - (06.000 - 05.678) = 05.778
    assert row["timestamp"] == ts("2026-01-02T03:04:05.778")
    assert row["original_timestamp"] == ts("2026-01-02T03:04:05.678")
    assert row["future_timestamp"] is False
    assert row["context"]["ip"] == "203.0.113.0"
    assert (row["browser"], row["browser_version"], row["os"], row["os_version"], row["device"]) == (
        "Chrome",
        "126.0.6478",
        "Windows",
        "10",
        "Other",
    )


@pytest.mark.parametrize(
    ("times", "expected", "future"),
    [
        # a device clock 2 h fast: the skew cancels out, the event happened 3 s before it was received
        (
            {
                "timestamp": "2026-05-01T12:00:00Z",
                "sentAt": "2026-05-01T12:00:02Z",
                "receivedAt": "2026-05-01T10:00:03Z",
            },
            "2026-05-01T10:00:01",
            False,
        ),
        # originalTimestamp (Segment's name for the client time) wins over timestamp
        (
            {
                "originalTimestamp": "2026-05-01T09:00:00Z",
                "timestamp": "2026-05-01T09:59:59Z",
                "sentAt": "2026-05-01T09:00:10Z",
                "receivedAt": "2026-05-01T09:00:10.500Z",
            },
            "2026-05-01T09:00:00.500",
            False,
        ),
        # offsets are converted to UTC; no sentAt, no correction
        (
            {"timestamp": "2026-05-01T14:00:00+02:00", "receivedAt": "2026-05-01T12:00:05Z"},
            "2026-05-01T12:00:00",
            False,
        ),
        # no timestamp at all: receivedAt
        ({"receivedAt": "2026-05-01T12:00:05Z"}, "2026-05-01T12:00:05", False),
        # more than 24 h after receivedAt, even after correction: replaced by receivedAt and flagged
        ({"timestamp": "2026-05-03T12:00:01Z", "receivedAt": "2026-05-02T12:00:00Z"}, "2026-05-02T12:00:00", True),
        # exactly 24 h after: kept
        ({"timestamp": "2026-05-03T12:00:00Z", "receivedAt": "2026-05-02T12:00:00Z"}, "2026-05-03T12:00:00", False),
        # a naive timestamp is UTC
        ({"timestamp": "2026-05-01T12:00:00"}, "2026-05-01T12:00:00", False),
    ],
)
def test_clock_skew_and_future_timestamps(times: dict, expected: str, future: bool):
    event = {"type": "page", "messageId": "m", "userId": "u", **times}
    row = validate_line(line(event), "f", "line 1")
    assert not isinstance(row, Rejection), row
    assert row["timestamp"] == ts(expected)
    assert row["future_timestamp"] is future


def test_kinesis_arrival_time_stands_in_for_a_missing_received_at():
    event = {"type": "page", "messageId": "m", "userId": "u", "timestamp": "2026-05-01T12:00:00Z"}
    event["sentAt"] = "2026-05-01T12:00:04Z"
    arrival = ts("2026-05-01T11:00:05")  # the device clock is an hour fast
    row = validate_line(line(event), "kinesis://s", "shard 1 seq 2", received_fallback=arrival)
    assert row["timestamp"] == ts("2026-05-01T11:00:01") and row["received_at"] == arrival


@pytest.mark.parametrize(
    ("ip", "anonymized"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("10.0.0.255", "10.0.0.0"),
        ("0.0.0.0", "0.0.0.0"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("2a00:1450:4001:82b::200e", "2a00:1450:4001::"),
        ("::1", "::"),
        ("::ffff:198.51.100.23", "198.51.100.0"),  # an IPv4-mapped address is IPv4
        ("fe80::1ff:fe23:4567:890a", "fe80::"),
    ],
)
def test_ip_anonymization(ip: str, anonymized: str):
    assert anonymize_ip(ip) == anonymized
    event = {**GOOD, "context": {"ip": ip}}
    assert validate_line(line(event), "f", "line 1")["context"] == {"ip": anonymized}


def test_ip_anonymization_can_be_turned_off():
    row = validate_line(line(GOOD), "f", "line 1", Options(anonymize_ip=False))
    assert row["context"]["ip"] == "203.0.113.77"


def test_user_agents_are_parsed():
    iphone = parse_user_agent(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1"
    )
    assert (iphone.browser, iphone.os, iphone.os_version, iphone.device) == ("Mobile Safari", "iOS", "17.5", "iPhone")
    firefox = parse_user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0")
    assert (firefox.browser, firefox.browser_version, firefox.os) == ("Firefox", "127.0", "Linux")
    unknown = parse_user_agent("curl/8.5.0")
    assert (unknown.browser, unknown.os) == ("curl", "Other")
    row = validate_line(line({**GOOD, "context": {}}), "f", "line 1")
    assert row["browser"] is None and row["device"] is None


BIG = "x" * MAX_EVENT_BYTES

# (payload, words the reason must contain): 36 distinct kinds of bad input
BAD_INPUTS: list[tuple[bytes, str]] = [
    (b'{"type": "track", "messageId": ', "malformed JSON"),
    (b"{'type': 'track'}", "malformed JSON"),
    (b'{"type": "track",}', "malformed JSON"),
    (b"not json at all", "malformed JSON"),
    (b'{"type": "track", "messageId": "m", "value": NaN}', "malformed JSON"),
    (b'{"type": "track", "messageId": "m", "n": 1e999999}', "malformed JSON"),
    (b'{"a": "\\ud800"}', "malformed JSON"),  # a lone surrogate
    (b'{"type": "track", "messageId": "\xff\xfe"}', "invalid UTF-8"),
    (b"\xc3\x28", "invalid UTF-8"),
    (b"[1, 2, 3]", "must be a JSON object, got list"),
    (b'"just a string"', "must be a JSON object, got str"),
    (b"42", "must be a JSON object, got int"),
    (b"null", "must be a JSON object, got NoneType"),
    (line({**GOOD, "type": "purchase"}), "type 'purchase' is not one of"),
    (line({k: v for k, v in GOOD.items() if k != "type"}), "type is missing; it must be one of"),
    (line({**GOOD, "type": 7}), "type '7' is not one of"),
    (line({k: v for k, v in GOOD.items() if k != "messageId"}), "messageId is missing"),
    (line({**GOOD, "messageId": ""}), "messageId is missing"),
    (line({**GOOD, "messageId": 12345}), "messageId is missing or not a non-empty string"),
    (line({**GOOD, "messageId": "m" * 300}), "the limit is 256"),
    (line({**GOOD, "anonymousId": None}), "needs a userId or an anonymousId"),
    (line({**GOOD, "anonymousId": ""}), "needs a userId or an anonymousId"),
    (line({**GOOD, "userId": {"id": 1}}), "userId must be a string, got dict"),
    (line({**GOOD, "anonymousId": True}), "anonymousId must be a string, got bool"),
    (line({**GOOD, "event": ""}), "needs an event name"),
    (line({k: v for k, v in GOOD.items() if k != "event"}), "needs an event name"),
    (line({**GOOD, "event": ["clicked"]}), "needs an event name"),
    (line({**GOOD, "timestamp": "yesterday"}), "is not an ISO-8601 timestamp"),
    (line({**GOOD, "timestamp": 1767323045}), "timestamp must be an ISO-8601 string, got int"),
    (line({**GOOD, "sentAt": "2026-13-45T00:00:00Z"}), "sentAt '2026-13-45T00:00:00Z' is not an ISO-8601"),
    (line({**GOOD, "receivedAt": "soon"}), "receivedAt 'soon' is not an ISO-8601"),
    (line({k: v for k, v in GOOD.items() if k not in {"timestamp", "receivedAt"}}), "has no timestamp"),
    (line({**GOOD, "properties": [1]}), "properties must be a JSON object, got list"),
    (line({**GOOD, "context": "web"}), "context must be a JSON object, got str"),
    (line({**GOOD, "traits": 5}), "traits must be a JSON object, got int"),
    (line({**GOOD, "name": {"page": "x"}}), "name must be a string, got dict"),
    (line({**GOOD, "context": {"ip": "not-an-ip"}}), "is not an IPv4 or IPv6 address"),
    (line({**GOOD, "context": {"ip": 3232235777}}), "context.ip must be a string, got int"),
    (line({**GOOD, "properties": {"blob": BIG}}), "the limit is 32,768"),
    (line({**GOOD, "properties": {"text": "a\u0000b"}}), "NUL character"),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_INPUTS)
def test_bad_input_is_rejected_with_a_reason(payload: bytes, reason: str):
    result = validate_line(payload, "bucket/file.jsonl", "line 3")
    assert isinstance(result, Rejection), result
    assert reason in result.reason
    assert result.source_position == "line 3"
    # the original bytes survive as text, invalid bytes escaped rather than lost
    assert result.payload == payload.decode("utf-8", errors="backslashreplace").rstrip("\n")


def test_the_corpus_has_at_least_30_distinct_inputs():
    assert len({payload for payload, _ in BAD_INPUTS}) == len(BAD_INPUTS) >= 30


def test_rejection_rows_have_a_stable_key():
    rejection = Rejection("f", "line 1", "bad", "{")
    now = datetime.now(UTC)
    assert rejection.as_row(now)["rejection_id"] == Rejection("f", "line 1", "other", "x").as_row(now)["rejection_id"]
    assert rejection.as_row(now)["rejection_id"] != Rejection("f", "line 2", "bad", "{").as_row(now)["rejection_id"]


def corpus_batch(good: int = 50) -> tuple[bytes, int, int]:
    """One gzipped batch: good events with every bad input mixed in between. Returns (bytes, good, bad)."""
    base = datetime(2026, 4, 1, 9, tzinfo=UTC)
    good_lines = [
        line(
            {
                "type": "track",
                "event": "corpus_event",
                "messageId": f"good-{n}",
                "userId": f"user-{n % 5}",
                "timestamp": (base + timedelta(minutes=n)).isoformat(),
            }
        )
        for n in range(good)
    ]
    lines: list[bytes] = []
    for n, good_line in enumerate(good_lines):
        lines.append(good_line)
        if n < len(BAD_INPUTS):
            payload = BAD_INPUTS[n][0]
            lines.append(payload if payload.endswith(b"\n") else payload + b"\n")
    return gzip.compress(b"".join(lines)), good, len(BAD_INPUTS)


def test_alias_previous_id_is_the_anonymous_id_the_identity_map_stitches():
    def alias(**ids: str) -> dict:
        line = json.dumps({"type": "alias", "messageId": "a-1", "timestamp": "2026-01-01T00:00:00Z", **ids})
        return validate_line(line.encode(), "s", "1")

    server_sdk = alias(previousId="anon-7", userId="user-7")  # what Segment's server libraries send
    assert (server_sdk["anonymous_id"], server_sdk["user_id"]) == ("anon-7", "user-7")
    browser = alias(previousId="anon-7", anonymousId="anon-8", userId="user-7")  # analytics.js sends both
    assert browser["anonymous_id"] == "anon-8"
    not_alias = validate_line(
        b'{"type": "page", "messageId": "p", "previousId": "x", "timestamp": "2026-01-01"}', "s", "1"
    )
    assert isinstance(not_alias, Rejection) and "userId or an anonymousId" in not_alias.reason
