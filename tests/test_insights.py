"""The insights engine against answers known in advance: a hand-computed funnel over crafted persons (exclusions, a
window crossing `to`, ties at one instant, a person who identified after browsing anonymously), and every kind over
generated data compared with testing/insights_reference.py (plain Python over PostgreSQL's fct_events). Then a late
event, and days moved to the cold tier: the copy takes only the touched day, and no answer changes when days are
archived."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from cli import main as cli_main
from ingestion.events import load_events
from ingestion.generator import generate
from insights import engine as insights_engine
from insights.engine import Engine
from insights.spark import SparkEngine, spark_session
from insights.spec import SpecError, parse_spec
from insights.store import Manifest, store_dir, sync_store
from testing import insights_reference as ref
from testing.db import own_warehouse
from testing.dbt import dbt_build
from testing.spark import stop_spark
from warehouse.archive import archive_date

END = date(2026, 3, 15)
FROM, TO = "2026-03-01", "2026-03-10"


def _message(kind: str, at: datetime, who: dict, **fields) -> dict:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        **who,
        **fields,
        "timestamp": stamp,
        "sentAt": stamp,
        "receivedAt": stamp,
    }


def track(who: str, event: str, at: str, anonymous: bool = False, **properties) -> dict:
    identity = {"anonymousId": who} if anonymous else {"userId": who, "anonymousId": f"anon-{who}"}
    return _message("track", _at(at), identity, event=event, properties=properties)


def identify(anonymous_id: str, user_id: str, at: str) -> dict:
    return _message("identify", _at(at), {"userId": user_id, "anonymousId": anonymous_id}, traits={})


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


CRAFTED = [
    # edge-1: every step; 1 h and 23 h after entry
    track("edge-1", "x_view", "2026-03-01T10:00:00"),
    track("edge-1", "x_signup", "2026-03-01T11:00:00"),
    track("edge-1", "x_buy", "2026-03-02T09:00:00", plan="pro"),
    # edge-2: enters on the last day; later steps fall after `to`, inside the 2-day window
    track("edge-2", "x_view", "2026-03-10T23:00:00"),
    track("edge-2", "x_signup", "2026-03-11T01:00:00"),
    track("edge-2", "x_buy", "2026-03-12T22:00:00", plan="pro"),
    # edge-3: signs up one second after the window closes
    track("edge-3", "x_view", "2026-03-02T10:00:00"),
    track("edge-3", "x_signup", "2026-03-04T10:00:01"),
    # edge-4: cancels between step 1 and step 2: out of every step
    track("edge-4", "x_view", "2026-03-03T10:00:00"),
    track("edge-4", "x_cancel", "2026-03-03T10:30:00"),
    track("edge-4", "x_signup", "2026-03-03T11:00:00"),
    # edge-5: cancels after step 2 (kept); buys the wrong plan
    track("edge-5", "x_view", "2026-03-03T10:00:00"),
    track("edge-5", "x_signup", "2026-03-03T11:00:00"),
    track("edge-5", "x_cancel", "2026-03-03T12:00:00"),
    track("edge-5", "x_buy", "2026-03-03T13:00:00", plan="free"),
    # edge-6: viewed before the range; enters at the second view; every step at the same instant
    track("edge-6", "x_view", "2026-02-28T10:00:00"),
    track("edge-6", "x_view", "2026-03-05T10:00:00"),
    track("edge-6", "x_signup", "2026-03-05T10:00:00"),
    track("edge-6", "x_buy", "2026-03-05T10:00:00", plan="pro"),
    # edge-7: browses anonymously, identifies, then converts: one person
    track("visitor-7", "x_view", "2026-03-06T08:00:00", anonymous=True),
    identify("visitor-7", "edge-7", "2026-03-06T09:00:00"),
    track("edge-7", "x_signup", "2026-03-06T09:00:30"),
    track("edge-7", "x_buy", "2026-03-06T10:00:00", plan="pro"),
    # edge-8: cancels and never signs up: excluded (before entry + window)
    track("edge-8", "x_view", "2026-03-07T10:00:00"),
    track("edge-8", "x_cancel", "2026-03-07T11:00:00"),
    # edge-9: two views at one instant reach a funnel of x_view twice
    track("edge-9", "x_view", "2026-03-08T10:00:00"),
    track("edge-9", "x_view", "2026-03-08T10:00:00"),
]
EDGE_FUNNEL = {
    "kind": "funnel",
    "from": FROM,
    "to": TO,
    "window_days": 2,
    "steps": [
        {"event": "x_view"},
        {"event": "x_signup"},
        {"event": "x_buy", "where": [{"field": "event.plan", "op": "=", "value": "pro"}]},
    ],
    "exclusions": [{"event": "x_cancel", "after_step": 1, "before_step": 2}],
}


def write_batch(bucket: Path, name: str, messages: list[dict]) -> None:
    path = bucket / "events" / "2026" / "03" / "14" / "00" / f"{name}.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        for message in messages:
            handle.write(json.dumps(message) + "\n")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    with own_warehouse("insights", tmp_path_factory.mktemp("insights")) as (own, root):
        generate(root / "bucket", days=40, users=2000, seed=11, end_date=END)
        write_batch(root / "bucket", "crafted", CRAFTED)
        load_events(progress=False)
        dbt_build(root)
        sync_store(own, say=lambda _: None)
        yield own, root


@pytest.fixture(scope="module")
def engine(warehouse):
    engine = Engine(threads=2)
    engine.refresh()
    return engine


@pytest.fixture(scope="module")
def events(warehouse):
    return ref.read_events(warehouse[0].database_url)


def test_the_hand_computed_funnel(engine):
    answer = engine.ask(EDGE_FUNNEL)
    # entered: edge-1, 2, 3, 5, 6, 7, 9 (edge-4 and edge-8 are excluded); step 2: all but edge-3; step 3: 1, 2, 6, 7
    assert [s["persons"] for s in answer["steps"]] == [7, 5, 4]
    assert [s["conversion"] for s in answer["steps"]] == [1.0, 0.714286, 0.571429]
    assert [s["conversion_from_previous"] for s in answer["steps"]] == [1.0, 0.714286, 0.8]
    # seconds to step 2: 0, 3600, 3600, 3630, 7200 -> 3600; to step 3: 0, 7200, 82800, 169200 -> 7200 (lower median)
    assert [s["median_seconds_to_convert"] for s in answer["steps"]] == [None, 3600.0, 7200.0]
    assert [s["name"] for s in answer["steps"]] == ["x_view", "x_signup", "x_buy"]
    by_day = {p["date"]: (p["entered"], p["converted"]) for p in answer["conversion_over_time"]}
    assert len(by_day) == 10 and by_day["2026-03-10"] == (1, 1) and by_day["2026-03-02"] == (1, 0)
    assert by_day["2026-03-03"] == (1, 0) and by_day["2026-03-04"] == (0, 0)
    assert by_day["2026-03-08"] == (1, 0)


def test_the_same_event_twice_needs_two_of_them(engine):
    answer = engine.ask({"kind": "funnel", "from": FROM, "to": TO, "steps": [{"event": "x_view"}, {"event": "x_view"}]})
    assert [s["persons"] for s in answer["steps"]] == [9, 1]  # only edge-9 has a second view (at the same instant)


def test_funnels_equal_the_reference(engine, events):
    rows, persons = events
    specs = [
        {
            "kind": "funnel",
            "from": "2026-02-10",
            "to": "2026-03-08",
            "window_days": 7,
            "steps": [
                {"page": "/"},
                {"event": "user_signed_up"},
                {"event": "trial_started"},
                {"event": "purchase_completed", "where": [{"field": "event.plan", "op": "!=", "value": "starter"}]},
            ],
            "exclusions": [{"event": "subscription_canceled", "after_step": 2, "before_step": 4}],
        },
        {
            "kind": "funnel",
            "from": "2026-02-20",
            "to": "2026-03-15",
            "steps": [{"page": "/pricing"}, {"event": "button_clicked"}, {"page": "/signup"}],
            "window_days": 1,
        },
        {"kind": "funnel", "from": FROM, "to": TO, "window_days": 2, "steps": EDGE_FUNNEL["steps"]},
    ]
    for spec in specs:
        answer = engine.ask(spec)
        expected = ref.funnel(spec, rows, persons)["steps"]
        assert [{k: s[k] for k in expected[0]} for s in answer["steps"]] == expected, spec
        assert answer["steps"][-1]["persons"] > 0, spec


def test_a_funnel_breakdown_adds_up_to_the_funnel(engine, events):
    rows, persons = events
    spec = {
        "kind": "funnel",
        "from": "2026-02-10",
        "to": "2026-03-10",
        "steps": [{"page": "/"}, {"event": "user_signed_up"}, {"event": "purchase_completed"}],
        "breakdown": "event.utm_source",
    }
    answer = engine.ask(spec)
    assert len(answer["breakdown"]) > 2
    for group in answer["breakdown"]:
        expected = ref.funnel(spec, rows, persons, value_of=group["value"])["steps"]
        assert [{k: s[k] for k in expected[0]} for s in group["steps"]] == expected, group["value"]
    for k in range(3):
        assert sum(g["steps"][k]["persons"] for g in answer["breakdown"]) == answer["steps"][k]["persons"]


def test_trends_with_a_formula_and_a_breakdown_equal_the_reference(engine, events):
    rows, persons = events
    spec = {
        "kind": "trends",
        "from": "2026-02-15",
        "to": "2026-03-14",
        "interval": "week",
        "series": [
            {"event": "purchase_completed", "math": "sum", "property": "revenue"},
            {"event": "purchase_completed", "math": "persons"},
        ],
        "formula": "A / B",
        "breakdown": "event.plan",
    }
    answer = engine.ask(spec)
    expected = ref.trends(spec, rows, persons)
    weeks = [date(2026, 2, 9) + timedelta(weeks=k) for k in range(5)]
    by_key = {(s["label"], s["breakdown_value"]): s for s in answer["series"]}
    values = {v for _, v in expected}
    assert {v for _, v in by_key} == values and len(values) >= 3
    for value in values:
        revenue = by_key[("purchase_completed (sum of revenue)", value)]
        buyers = by_key[("purchase_completed (persons)", value)]
        assert [p["date"] for p in revenue["points"]] == [w.isoformat() for w in weeks]
        want_revenue = [round(expected[(0, value)].get(w, 0), 6) for w in weeks]
        want_buyers = [expected[(1, value)].get(w, 0) for w in weeks]
        assert [p["value"] for p in revenue["points"]] == pytest.approx(want_revenue)
        assert [p["value"] for p in buyers["points"]] == want_buyers
        ratios = [p["value"] for p in by_key[("A / B", value)]["points"]]
        assert ratios == pytest.approx([r / b if b else None for r, b in zip(want_revenue, want_buyers, strict=True)])


def test_trends_totals_filters_and_the_previous_period(engine, events):
    rows, persons = events
    spec = {
        "kind": "trends",
        "from": "2026-03-01",
        "to": "2026-03-10",
        "series": [{"event": "page", "where": [{"field": "event.path", "op": "contains", "value": "PRIC"}]}],
        "compare": True,
    }
    answer = engine.ask(spec)
    current, previous = answer["series"]
    days = [date(2026, 3, 1) + timedelta(days=k) for k in range(10)]
    expected = ref.trends(spec, rows, persons)[(0, None)]
    assert [p["value"] for p in current["points"]] == [expected.get(d, 0) for d in days]
    earlier = ref.trends({**spec, "from": "2026-02-19", "to": "2026-02-28"}, rows, persons)[(0, None)]
    assert previous["label"].endswith("(previous period)") and previous["points"][0]["date"] == "2026-02-19"
    assert [p["value"] for p in previous["points"]] == [earlier.get(d - timedelta(days=10), 0) for d in days]
    assert sum(p["value"] for p in current["points"]) > 0


@pytest.mark.parametrize("mode", ["first_time", "recurring"])
def test_retention_equals_the_reference(engine, events, mode):
    rows, persons = events
    spec = {
        "kind": "retention",
        "from": "2026-02-09",
        "to": "2026-03-08",
        "period": "week",
        "periods": 5,
        "start": {"event": "user_signed_up"},
        "return": {"event": "any"},
        "mode": mode,
    }
    answer = engine.ask(spec)
    expected = ref.retention(spec, rows, persons)
    assert len(answer["cohorts"]) == 4
    for cohort in answer["cohorts"]:
        size, returned = expected.get(date.fromisoformat(cohort["start"]), (0, [0] * 5))
        assert (cohort["size"], cohort["returned"]) == (size, returned), cohort["start"]
    assert sum(c["returned"][1] for c in answer["cohorts"]) > 0


def test_stickiness_lifecycle_and_paths_equal_the_reference(engine, events):
    rows, persons = events
    spec = {"kind": "stickiness", "event": "page", "from": "2026-03-02", "to": "2026-03-08"}
    counts = engine.ask(spec)["counts"]
    expected = ref.stickiness(spec, rows, persons)
    assert counts == {str(n): expected.get(n, 0) for n in range(1, 8)} and sum(counts.values()) > 0

    spec = {"kind": "lifecycle", "event": "any", "from": "2026-02-16", "to": "2026-03-15", "interval": "week"}
    intervals = engine.ask(spec)["intervals"]
    expected = ref.lifecycle(spec, rows, persons)
    assert {date.fromisoformat(i.pop("date")): i for i in intervals} == expected

    spec = {"kind": "paths", "from": "2026-02-20", "to": "2026-03-10", "start": {"page": "/pricing"}, "steps": 3}
    answer = engine.ask({**spec, "limit": 50})
    found = {(e["step"], e["source"], e["target"]): e["persons"] for e in answer["edges"]}
    assert found == dict(ref.paths(spec, rows, persons)) and len(found) > 5
    backwards = {**spec, "direction": "previous", "start": {"event": "user_signed_up"}}
    answer = engine.ask({**backwards, "limit": 50})
    found = {(e["step"], e["source"], e["target"]): e["persons"] for e in answer["edges"]}
    assert found == dict(ref.paths(backwards, rows, persons))
    # with a limit, the rest of each step is one "other" node and nothing is lost
    merged = engine.ask({**spec, "limit": 2})["edges"]
    for step in (1, 2, 3):
        assert sum(e["persons"] for e in merged if e["step"] == step) == sum(
            n for (s, _, _), n in ref.paths(spec, rows, persons).items() if s == step
        )
        assert len({e["target"] for e in merged if e["step"] == step} - {"other"}) <= 2


def test_person_fields_filter_and_break_down(engine, events):
    rows, persons = events
    spec = {
        "kind": "trends",
        "from": "2026-02-15",
        "to": "2026-03-14",
        "interval": "month",
        "series": [{"event": "report_created", "where": [{"field": "user.plan", "op": "=", "value": "pro"}]}],
        "breakdown": "user.country",
    }
    answer = engine.ask(spec)
    expected = ref.trends(spec, rows, persons)
    got = {
        (0, s["breakdown_value"]): {date.fromisoformat(p["date"]): p["value"] for p in s["points"]}
        for s in answer["series"]
    }
    assert {k: {d: v for d, v in points.items() if v} for k, points in got.items()} == {
        k: dict(v) for k, v in expected.items()
    }
    assert sum(sum(v.values()) for v in expected.values()) > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "funnnel"}, "kind: 'funnnel' is not one of"),
        ({"steps": [{"event": "x_view"}]}, "steps: 1 given; a question takes 2 to 10"),
        ({"steps": [{"event": "x_view"}] * 11}, "steps: 11 given"),
        (
            {"steps": [{"event": "x_view"}, {"event": "x_sigup"}]},
            "steps[1].event: unknown event 'x_sigup'; did you mean 'x_signup'",
        ),
        (
            {"steps": [{"event": "x_view", "where": [{"field": "event.plna", "op": "="}]}, {"event": "x_buy"}]},
            "steps[0].where[0].value is required",
        ),
        (
            {
                "steps": [
                    {"event": "x_buy", "where": [{"field": "event.plna", "op": "=", "value": "x"}]},
                    {"event": "x_buy"},
                ]
            },
            "steps[0].where[0].field: unknown property 'plna' of 'x_buy'; did you mean 'plan'",
        ),
        (
            {
                "steps": [
                    {"event": "x_buy", "where": [{"field": "event.plan", "op": "like", "value": "x"}]},
                    {"event": "x_buy"},
                ]
            },
            "steps[0].where[0].op: unknown operator 'like'",
        ),
        ({"to": "2028-03-01"}, "to: the range spans 732 days; a question may span at most 366 (INSIGHT_MAX_DAYS)"),
        ({"from": "2026-13-01"}, "from: '2026-13-01' is not a date"),
        ({"window_days": 0}, "window_days: 0 is out of range"),
        (
            {"exclusions": [{"event": "x_cancel", "after_step": 2, "before_step": 2}]},
            "exclusions[0].before_step: 2 must come after",
        ),
        ({"breakdown": "user.shoe_size"}, "breakdown: unknown person field 'shoe_size'"),
        ({"stpes": []}, "unknown key 'stpes'"),
    ],
)
def test_spec_errors_name_the_field(engine, change, message):
    with pytest.raises(SpecError) as error:
        engine.ask({**EDGE_FUNNEL, **change})
    assert message in str(error.value)


def test_values_never_change_the_statement(engine):
    hostile = "x'); drop table events; --"
    spec = {
        **EDGE_FUNNEL,
        "steps": [
            {"event": "x_buy", "where": [{"field": "event.plan", "op": "=", "value": hostile}]},
            {"event": "x_buy"},
        ],
    }
    with pytest.raises(SpecError):
        engine.ask({**spec, "steps": [{"event": hostile}, {"event": "x_buy"}]})
    assert engine.ask(spec)["steps"][0]["persons"] == 0
    assert engine.ask(EDGE_FUNNEL)["steps"][0]["persons"] == 7


def test_the_command_line_prints_the_answer(warehouse, tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(EDGE_FUNNEL))
    for argument, stdin in ((str(path), None), ("-", json.dumps(EDGE_FUNNEL))):
        result = subprocess.run(
            [sys.executable, "-m", "cli", "query", argument], input=stdin, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert [s["persons"] for s in json.loads(result.stdout)["steps"]] == [7, 5, 4]
    bad = subprocess.run(
        [sys.executable, "-m", "cli", "query", "-"],
        input='{"kind": "funnel", "from": "2026-03-01"}',
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "analyticspro: to is required" in bad.stderr and "Traceback" not in bad.stderr


def test_questions_run_side_by_side(engine):
    questions = [
        EDGE_FUNNEL,
        {"kind": "trends", "from": "2026-02-10", "to": "2026-03-15", "series": [{"event": "page", "math": "persons"}]},
        {"kind": "lifecycle", "event": "any", "from": "2026-02-16", "to": "2026-03-15", "interval": "week"},
    ] * 8
    alone = [engine.ask(spec) for spec in questions]
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(engine.ask, questions))
    assert together == alone


def test_a_question_over_its_time_is_stopped_with_a_clear_error(engine, monkeypatch):
    def endless(spec, compiler, fetch):  # a question that would run for minutes
        return fetch("select count(*) from range(100000000000)", [])

    monkeypatch.setitem(insights_engine.KINDS, "stickiness", endless)
    spec = parse_spec({"kind": "stickiness", "event": "x_view", "from": FROM, "to": TO})
    started = time.monotonic()
    with pytest.raises(SpecError, match=r"ran longer than 0.3s \(INSIGHT_TIMEOUT_MS\) and was stopped"):
        engine.run(spec, timeout_seconds=0.3)
    assert time.monotonic() - started < 5
    monkeypatch.undo()
    assert engine.run(spec, timeout_seconds=5)["counts"]["1"] == 9  # the engine answers again at once


def test_a_late_event_rewrites_one_day_and_archived_days_answer_the_same(warehouse, engine, events):
    own, root = warehouse
    before = engine.ask(EDGE_FUNNEL)
    # edge-3 signs up late, inside the window: step 2 gains a person; an anonymous visitor enters
    late = [
        track("edge-3", "x_signup", "2026-03-03T12:00:00"),
        track("visitor-10", "x_view", "2026-03-02T10:00:00", True),
        track("visitor-12", "x_cancel", "2026-03-08T09:00:00", True),
    ]
    write_batch(root / "bucket", "late", late)
    load_events(progress=False)
    dbt_build(root)
    synced = sync_store(own, say=lambda _: None)
    assert synced.days_written >= 1 and synced.days_written <= 3, synced
    again = sync_store(own, say=lambda _: None)  # nothing new: nothing written
    assert (again.days_written, again.days_removed, again.persons_written) == (0, 0, False)
    assert engine.refresh()
    after = engine.ask(EDGE_FUNNEL)
    assert [s["persons"] for s in after["steps"]] == [8, 6, 4] != [s["persons"] for s in before["steps"]]

    # the copy took the late rows as one more file of each day they touched, not the whole days again
    days = Manifest.read(store_dir(own)).days
    assert len(days["2026-03-03"]["files"]) == 2 and len(days["2026-03-08"]["files"]) == 2
    # visitor-12 identifies: their anonymous row of 03-08 is rewritten with the person (a changed row, not a new one)
    write_batch(root / "bucket", "restitch", [identify("visitor-12", "edge-12", "2026-03-09T08:00:00")])
    load_events(progress=False)
    dbt_build(root)
    sync_store(own, say=lambda _: None)
    assert engine.refresh()
    manifest = Manifest.read(store_dir(own))
    assert len(manifest.days["2026-03-08"]["files"]) == 3
    # the merge removed visitor-12 from dim_users: the persons still take only the changed rows, as one more file
    assert len(manifest.persons["files"]) >= 2
    # the engine re-read the persons the deltas touched (visitor-12, edge-12), never a whole day
    assert engine.changes["days"] == 0 and engine.changes["deltas"] >= 1
    # the engine that took the deltas answers as one that loads the same copy from scratch
    fresh = Engine(threads=2)
    fresh.refresh()
    assert fresh.changes["deltas"] == 0
    for spec in [EDGE_FUNNEL, *SPARK_SPECS]:
        assert engine.ask(spec) == fresh.ask(spec), spec
    cancels = {"kind": "trends", "from": FROM, "to": TO, "interval": "all", "breakdown": "user.user_id",
               "series": [{"event": "x_cancel"}, {"event": "x_cancel", "math": "persons"}]}  # fmt: skip
    answer = {(s["label"], s["breakdown_value"]): s["points"][0]["value"] for s in engine.ask(cancels)["series"]}
    assert answer[("x_cancel", "edge-12")] == answer[("x_cancel (persons)", "edge-12")] == 1
    assert sum(v for (label, _), v in answer.items() if label == "x_cancel") == 4  # edge-4, edge-5, edge-8, edge-12
    rows, persons = ref.read_events(own.database_url)
    for spec in (EDGE_FUNNEL, {**EDGE_FUNNEL, "window_days": 14, "exclusions": []}):
        assert [s["persons"] for s in engine.ask(spec)["steps"]] == [
            s["persons"] for s in ref.funnel(spec, rows, persons)["steps"]
        ]

    specs = [
        EDGE_FUNNEL,
        {"kind": "trends", "from": "2026-02-05", "to": "2026-03-15", "series": [{"event": "page", "math": "persons"}]},
        {
            "kind": "retention",
            "from": "2026-02-05",
            "to": "2026-03-01",
            "start": {"event": "user_signed_up"},
            "return": {"event": "any"},
        },
    ]
    answers = [engine.ask(spec) for spec in specs]
    # every day up to 03-05 goes to the cold tier (Parquet in the bucket): PostgreSQL no longer has them
    connection = psycopg2.connect(own.database_url)
    try:
        day = date(2026, 2, 4)
        while day <= date(2026, 3, 5):
            archive_date(own, connection, day)
            day += timedelta(days=1)
    finally:
        connection.close()
    synced = sync_store(own, say=lambda _: None)
    manifest = Manifest.read(store_dir(own))
    assert manifest.days["2026-03-01"]["tier"] == "cold" and manifest.days["2026-03-06"]["tier"] == "warm"
    fresh = Engine(threads=2)
    fresh.refresh()
    assert [fresh.ask(spec) for spec in specs] == answers

    # the visitor of an archived day identifies and signs up (a late event for an archived day): the archived
    # anonymous view now counts for the person, and the day holds its cold and its new warm events
    write_batch(
        root / "bucket",
        "merge",
        [identify("visitor-10", "edge-10", "2026-03-13T09:00:00"), track("edge-10", "x_signup", "2026-03-03T11:00:00")],
    )
    load_events(progress=False)
    dbt_build(root)
    sync_store(own, say=lambda _: None)
    assert fresh.refresh()
    assert [s["persons"] for s in fresh.ask(EDGE_FUNNEL)["steps"]] == [8, 7, 4]
    assert Manifest.read(store_dir(own)).days["2026-03-03"]["rows"] == manifest.days["2026-03-03"]["rows"] + 1


# every kind, on both engines; the copy now holds days of several files (late rows), archived days and a merge
SPARK_SPECS = [
    {
        "kind": "funnel",
        "from": "2026-02-10",
        "to": "2026-03-08",
        "window_days": 7,
        "steps": [
            {"page": "/"},
            {"event": "user_signed_up"},
            {"event": "trial_started"},
            {"event": "purchase_completed", "where": [{"field": "event.plan", "op": "!=", "value": "starter"}]},
        ],
        "exclusions": [{"event": "subscription_canceled", "after_step": 2, "before_step": 4}],
        "breakdown": "user.country",
    },
    {
        "kind": "funnel",
        "from": "2026-02-10",
        "to": "2026-03-10",
        "interval": "week",
        "steps": [{"page": "/"}, {"event": "user_signed_up"}, {"event": "purchase_completed"}],
        "breakdown": "event.utm_source",
    },
    {
        "kind": "trends",
        "from": "2026-02-15",
        "to": "2026-03-14",
        "interval": "week",
        "series": [
            {"event": "purchase_completed", "math": "sum", "property": "revenue"},
            {"event": "purchase_completed", "math": "persons"},
        ],
        "formula": "A / B",
        "breakdown": "event.plan",
        "compare": True,
    },
    {
        "kind": "trends",
        "from": "2026-03-01",
        "to": "2026-03-10",
        "series": [
            {"event": "page", "where": [{"field": "event.path", "op": "contains", "value": "PRIC"}]},
            {"event": "purchase_completed", "math": "max", "property": "revenue",
             "where": [{"field": "event.revenue", "op": ">", "value": "20"}]},
        ],
    },  # fmt: skip
    {
        "kind": "trends",
        "from": "2026-02-15",
        "to": "2026-03-14",
        "interval": "month",
        "series": [{"event": "report_created", "where": [{"field": "user.plan", "op": "=", "value": "pro"}]}],
        "breakdown": "user.country",
    },
    {"kind": "retention", "from": "2026-02-09", "to": "2026-03-08", "period": "week", "periods": 5,
     "start": {"event": "user_signed_up"}, "return": {"event": "any"}, "mode": "first_time"},
    {"kind": "retention", "from": "2026-02-20", "to": "2026-03-08", "period": "day", "periods": 7,
     "start": {"event": "page"}, "return": {"event": "purchase_completed"}, "mode": "recurring"},
    {"kind": "paths", "from": "2026-02-20", "to": "2026-03-10", "start": {"page": "/pricing"}, "steps": 3, "limit": 4},
    {"kind": "paths", "from": "2026-02-20", "to": "2026-03-10", "start": {"event": "user_signed_up"}, "steps": 2,
     "direction": "previous"},
    {"kind": "stickiness", "event": "page", "from": "2026-02-02", "to": "2026-03-08", "interval": "week"},
    {"kind": "lifecycle", "event": "any", "from": "2026-02-16", "to": "2026-03-15", "interval": "week"},
]  # fmt: skip


def _numbers(answer: object) -> list[float]:
    if isinstance(answer, dict):
        return [n for value in answer.values() for n in _numbers(value)]
    if isinstance(answer, list):
        return [n for value in answer for n in _numbers(value)]
    return [answer] if isinstance(answer, int | float) and not isinstance(answer, bool) else []


def test_spark_answers_every_kind_as_the_engine(warehouse, tmp_path, capsys):
    """The same statements on Spark (insights/spark.py) over the same copy give the same answers, the hand-computed
    funnel included; a hostile value is still only a value; the CLI answers with --engine spark."""
    duck = Engine(threads=2)
    duck.refresh()
    session = spark_session()
    spark = SparkEngine(session=session)
    try:
        assert [s["persons"] for s in spark.ask(EDGE_FUNNEL)["steps"]] == [8, 7, 4]  # as after the merge above
        for spec in SPARK_SPECS:
            expected = duck.ask(spec)
            assert max(_numbers(expected)) > 0, spec  # an answer with something in it
            assert spark.ask(spec) == expected, spec
        hostile = {**EDGE_FUNNEL, "steps": [
            {"event": "x_buy", "where": [{"field": "event.plan", "op": "=", "value": "x') or true --\\'"}]},
            {"event": "x_buy"},
        ]}  # fmt: skip
        assert spark.ask(hostile)["steps"][0]["persons"] == 0
        # a question over its time: its Spark jobs are cancelled, a clear error, and the engine answers the next one
        with pytest.raises(SpecError, match="ran longer than 0.2s"):
            spark.run(parse_spec(SPARK_SPECS[0]), timeout_seconds=0.2)
        assert [s["persons"] for s in spark.ask(EDGE_FUNNEL)["steps"]] == [8, 7, 4]
        spark.close()
        # the command line, in this process (the JVM is started once): `analyticspro query --engine spark`
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(EDGE_FUNNEL))
        assert cli_main(["query", "--engine", "spark", "--no-refresh", str(path)]) == 0
        assert [s["persons"] for s in json.loads(capsys.readouterr().out)["steps"]] == [8, 7, 4]
    finally:
        stop_spark()  # the JVM too: its memory and CPU back for the next modules


def test_a_copy_in_an_older_format_is_written_again_in_full(warehouse):
    own, _root = warehouse
    before = Engine(threads=2)
    before.refresh()
    # an older version's copy: no previous_person_id in its files, no format in its manifest
    path = store_dir(own) / "manifest.json"
    path.write_text(json.dumps({key: value for key, value in json.loads(path.read_text()).items() if key != "format"}))
    assert Manifest.read(store_dir(own)).format == 1
    synced = sync_store(own, say=lambda _: None)
    manifest = Manifest.read(store_dir(own))
    assert synced.days_written == len(manifest.days) and synced.persons_written and manifest.format == 2
    assert all(len(entry["files"]) == 1 for entry in manifest.days.values())
    assert before.refresh() and before.changes == {"days": len(manifest.days), "deltas": 0}
    assert [s["persons"] for s in before.ask(EDGE_FUNNEL)["steps"]] == [8, 7, 4]
