"""The synthetic data is deterministic, laid out like Firehose output, valid, and shaped like a SaaS product."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from ingestion.generator import generate
from ingestion.validation import Rejection, validate_line

END = date(2026, 3, 15)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    return generate(out, days=30, users=800, seed=7, end_date=END)


def read_all(files: list[Path]) -> list[dict]:
    events = []
    for path in files:
        with gzip.open(path) as handle:
            events.extend(json.loads(line) for line in handle)
    return events


def test_same_seed_same_bytes_and_other_seed_other_bytes(tmp_path, dataset):
    again = generate(tmp_path / "again", days=30, users=800, seed=7, end_date=END)
    relative = sorted(p.relative_to(dataset.out_dir) for p in dataset.files)
    assert relative == sorted(p.relative_to(again.out_dir) for p in again.files)
    for rel in relative:
        assert (dataset.out_dir / rel).read_bytes() == (again.out_dir / rel).read_bytes()
    other = generate(tmp_path / "other", days=30, users=800, seed=8, end_date=END)
    assert {p.read_bytes() for p in other.files} != {p.read_bytes() for p in dataset.files}


def test_firehose_layout_and_hours_match_received_at(dataset):
    pattern = re.compile(r"events/(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+\.jsonl\.gz$")
    for path in dataset.files:
        match = pattern.search(path.as_posix())
        assert match, path
        hour = "{}-{}-{}T{}".format(*match.groups())
        with gzip.open(path) as handle:
            assert all(json.loads(line)["receivedAt"].startswith(hour) for line in handle)


def test_every_line_is_a_valid_segment_event(dataset):
    events = read_all(dataset.files)
    assert len(events) == dataset.events_written
    for event in events:
        assert not isinstance(validate_line(json.dumps(event).encode(), "f", "line 1"), Rejection)
        assert {"ip", "userAgent"} <= event["context"].keys()
        assert {"timestamp", "sentAt", "receivedAt", "messageId"} <= event.keys()
    distinct = {e["messageId"] for e in events}
    assert len(distinct) == dataset.unique_events
    assert 0 < dataset.events_written - dataset.unique_events < 0.02 * dataset.events_written  # some re-deliveries


def test_the_data_has_signal_for_every_mart(dataset):
    events = {e["messageId"]: e for e in read_all(dataset.files)}.values()
    by_name = Counter(
        e.get("event") or e["properties"].get("path") if e["type"] != "identify" else "identify" for e in events
    )
    # a funnel with drop-off at every step
    assert by_name["/"] > by_name["/pricing"] > by_name["/signup"] > by_name["user_signed_up"] > 0
    assert by_name["user_signed_up"] > by_name["trial_started"] > by_name["purchase_completed"] > 0
    assert by_name["subscription_changed"] > 0 and by_name["subscription_canceled"] > 0
    assert by_name["button_clicked"] > 0 and by_name["form_submitted"] > 0 and by_name["identify"] > 0
    purchases = [e for e in events if e.get("event") == "purchase_completed"]
    assert all(e["properties"]["revenue"] > 0 for e in purchases)
    identify_traits = [e["traits"] for e in events if e["type"] == "identify"]
    assert all({"email", "plan", "mrr", "signup_date", "country"} <= t.keys() for t in identify_traits)
    # signups carry both ids: the anonymous visitor is stitched to the user at signup
    signups = [e for e in events if e.get("event") == "user_signed_up"]
    assert all(e.get("userId") and e.get("anonymousId") for e in signups)
    anonymous_before = {e["anonymousId"] for e in events if not e.get("userId")}
    assert sum(e["anonymousId"] in anonymous_before for e in signups) > 0.9 * len(signups)
    # weekly seasonality: weekdays busier than weekends
    per_date = Counter(date.fromisoformat(e["timestamp"][:10]) for e in events)
    weekend = [n for d, n in per_date.items() if d.weekday() >= 5]
    weekdays = [n for d, n in per_date.items() if d.weekday() < 5]
    assert sum(weekend) / len(weekend) < 0.8 * sum(weekdays) / len(weekdays)
