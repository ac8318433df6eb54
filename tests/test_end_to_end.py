"""The whole pipeline through Dagster on a small fixed dataset, checked against an independent computation.

bucket of batch files -> dlt -> raw.events (+ raw.rejected_events) -> dbt marts -> Redis hot metrics.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import redis
from segment.analytics import Client

from cli import main
from common.redis_keys import HotKeys
from ingestion.events import load_events
from ingestion.generator import generate
from orchestration.defs.transform.project import analyticspro_dbt_project
from orchestration.runs import run_materialize
from testing.dashboard_server import collector_process
from testing.db import rows as query
from testing.reference import Expected, compute

TODAY = datetime.now(UTC).date()
SEGMENT_KEY = "e2e-segment-write-key"

BAD_LINES = [
    b'{"type": "track", "messageId": "broken',  # malformed JSON
    b'{"type": "track", "anonymousId": "a", "event": "x", "timestamp": "2026-01-01T00:00:00.000Z"}',  # no messageId
    b'{"type": "purchase", "messageId": "m-bad-type", "anonymousId": "a", "timestamp": "2026-01-01T00:00:00.000Z"}',
    b"42",  # not an object
]


def table_counts(settings) -> tuple[int, int]:
    return (
        query(settings, "select count(*) from raw.events")[0][0],
        query(settings, "select count(*) from raw.rejected_events")[0][0],
    )


def send_with_segment_client(bucket: Path) -> None:
    """The official Segment library, its host set to our collector (which writes into the bucket): a visitor
    views a page anonymously, signs up, is aliased and identified."""
    env = {"ANALYTICSPRO_WRITE_KEYS": SEGMENT_KEY, "COLLECTOR_SINK": str(bucket)}
    with collector_process(
        {**env, "COLLECTOR_SPOOL_DIR": str(bucket.parent / "spool")}, bucket.parent / "c.log"
    ) as url:
        client = Client(SEGMENT_KEY, host=url, gzip=True)
        client.page(anonymous_id="e2e-anon", name="Pricing", properties={"path": "/pricing"}, message_id="e2e-seg-1")
        client.track("e2e-user", "user_signed_up", {"plan": "free"}, message_id="e2e-seg-2")
        client.alias("e2e-anon", "e2e-user", message_id="e2e-seg-3")
        client.identify("e2e-user", {"plan": "pro", "email": "e2e@example.com", "mrr": 99}, message_id="e2e-seg-4")
        client.flush()
        client.join()


@pytest.fixture(scope="module")
def pipeline_run(bucket: Path, settings) -> Expected:
    dataset = generate(bucket, days=10, users=250, seed=11, end_date=TODAY)
    assert dataset.events_written > dataset.unique_events  # the data has re-deliveries to deduplicate
    # A hand-made batch: bad lines among good ones, and one event re-delivered from another file.
    with gzip.open(dataset.files[0]) as first_file:
        some_event = first_file.readline().rstrip(b"\n")
    manual = bucket / "events" / "manual" / "mixed.jsonl"
    manual.parent.mkdir(parents=True)
    manual.write_bytes(b"\n".join([some_event, *BAD_LINES]) + b"\n")
    send_with_segment_client(bucket)
    assert run_materialize()
    return compute(bucket)


def test_raw_events_hold_every_valid_event_once(pipeline_run, settings):
    rows = query(settings, "select message_id from raw.events")
    assert len(rows) == len(pipeline_run.events)
    assert {r[0] for r in rows} == set(pipeline_run.events)
    indexes = dict(
        query(settings, "select indexname, indexdef from pg_indexes where schemaname = 'raw' and tablename = 'events'")
    )
    assert "UNIQUE INDEX" in indexes["events_message_id_key"] and "(message_id)" in indexes["events_message_id_key"]


def test_a_segment_client_reaches_the_marts(pipeline_run, settings):
    events = query(
        settings,
        "select message_id, event_type, event_name, person_id, event_date from analytics.fct_events "
        "where message_id like 'e2e-seg-%' order by message_id",
    )
    assert [row[:3] for row in events] == [
        ("e2e-seg-1", "page", "page"),
        ("e2e-seg-2", "track", "user_signed_up"),
        ("e2e-seg-3", "alias", None),
        ("e2e-seg-4", "identify", None),
    ]
    assert {row[3] for row in events} == {"e2e-user"}  # the anonymous page view is stitched to the user
    assert {row[4] for row in events} == {TODAY}
    user = query(settings, "select email, plan, mrr, signup_date from analytics.dim_users where person_id = 'e2e-user'")
    assert user == [("e2e@example.com", "pro", Decimal(99), TODAY)]


def test_bad_lines_are_quarantined_with_reason_and_payload(pipeline_run, settings):
    assert pipeline_run.bad_lines == len(BAD_LINES)
    rows = query(
        settings,
        "select source, source_position, reason, payload from raw.rejected_events order by source_position",
    )
    assert len(rows) == len(BAD_LINES)
    assert all(source.endswith("manual/mixed.jsonl") for source, *_ in rows)
    by_position = {position: (reason, payload) for _, position, reason, payload in rows}
    assert by_position["line 2"][0].startswith("malformed JSON: ")
    assert by_position["line 2"][1] == BAD_LINES[0].decode()  # the original text, kept for replay
    assert by_position["line 3"][0] == "messageId is missing or not a non-empty string"
    assert by_position["line 4"][0].startswith("type 'purchase' is not one of")
    assert by_position["line 5"] == ("an event must be a JSON object, got int", "42")


def test_daily_metrics_match_an_independent_computation(pipeline_run, settings):
    rows = query(
        settings,
        "select date, metric_name, value from analytics.daily_metrics "
        "where metric_name in ('dau', 'events', 'signups')",
    )
    actual = {(day, name): value for day, name, value in rows}
    expected = {
        (day, name): Decimal(value) for day, metrics in pipeline_run.daily.items() for name, value in metrics.items()
    }
    assert actual == expected
    assert sum(m["signups"] for m in pipeline_run.daily.values()) > 0
    assert max(pipeline_run.daily) == TODAY


def test_people_are_stitched_identities(pipeline_run, settings):
    assert query(settings, "select count(distinct person_id) from analytics.fct_events")[0][0] == pipeline_run.people
    # a visitor's anonymous page views before signup belong to the user afterwards
    stitched = query(
        settings,
        """
        select count(*) from analytics.fct_events
        where user_id is null and person_id <> anonymous_id""",
    )[0][0]
    assert stitched > 0


def test_every_column_bi_tools_read_carries_its_dbt_description(pipeline_run, settings):
    """BI tools show the column comments of schema analytics; dbt writes them from the models' YAML (persist_docs).
    Every column must have one, equal to the description in dbt's manifest: a column added without one fails."""
    manifest = json.loads(analyticspro_dbt_project().manifest_path.read_text())
    described = {
        node["alias"]: {name: column["description"] for name, column in node["columns"].items()}
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["schema"] == "analytics"
    }
    # fct_events' daily partitions are tables too in a BI tool's list: they carry their parent's comments
    comments = query(
        settings,
        """
        select coalesce(parent.relname, relation.relname), attribute.attname,
               col_description(relation.oid, attribute.attnum), relation.relispartition
        from pg_class as relation
        join pg_namespace as namespace on namespace.oid = relation.relnamespace
        join pg_attribute as attribute
            on attribute.attrelid = relation.oid and attribute.attnum > 0 and not attribute.attisdropped
        left join pg_inherits on pg_inherits.inhrelid = relation.oid
        left join pg_class as parent on parent.oid = pg_inherits.inhparent
        where namespace.nspname = 'analytics' and relation.relkind in ('r', 'p', 'v', 'm', 'f')""",
    )
    assert any(is_partition for *_, is_partition in comments), "fct_events has no partitions to check"
    comments = [(table, column, comment) for table, column, comment, _ in comments]
    columns: dict[str, set[str]] = {}
    for table, column, _comment in comments:
        columns.setdefault(table, set()).add(column)
    assert {"daily_metrics", "fct_funnel_steps", "fct_funnel_breakdown", "fct_events"} <= set(columns)
    assert columns == {table: set(names) for table, names in described.items()}
    uncommented = sorted(f"{table}.{column}" for table, column, comment in comments if not (comment or "").strip())
    assert not uncommented, f"columns without a comment (add a description in the model's YAML): {uncommented}"
    differing = sorted(
        f"{table}.{column}" for table, column, comment in comments if comment != described[table][column]
    )
    assert not differing, f"column comments that differ from dbt's manifest: {differing}"


def test_redis_holds_todays_numbers_from_postgres(pipeline_run, settings):
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    postgres = dict(query(settings, "select metric_name, value from analytics.daily_metrics where date = %s", (TODAY,)))
    keys = HotKeys(settings.redis_key_prefix)
    for name in ("signups", "dau", "events", "revenue"):
        key = keys.metric(name, TODAY)
        assert Decimal(client.get(key)) == postgres[name]
        if name != "revenue":
            assert postgres[name] == pipeline_run.daily[TODAY][name]
        assert 0 < client.ttl(key) <= settings.hot_metrics_ttl_seconds
    assert postgres["dau"] > 0


def test_loading_again_changes_nothing(pipeline_run, settings):
    before = table_counts(settings)
    assert run_materialize()  # incremental: no new objects
    assert table_counts(settings) == before
    rescan = load_events(rescan=True, progress=False)  # every file re-read: rows merge on their keys
    assert rescan.events + rescan.rejected == pipeline_run.lines
    assert table_counts(settings) == before


def test_a_late_object_with_an_old_key_is_loaded(pipeline_run, bucket, settings):
    raw_before, _ = table_counts(settings)
    late = [
        {
            "type": "page",
            "messageId": f"late-{i}",
            "anonymousId": f"late-visitor-{i}",
            "properties": {"path": "/"},
            "timestamp": f"{TODAY.isoformat()}T00:00:0{i}.000Z",
        }
        for i in range(3)
    ]
    path = bucket / "events" / "2001" / "01" / "01" / "00" / "late.jsonl.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in late).encode()))
    # and two more late objects for two other old days, apart: all are folded into one run of today's partition
    for day in (TODAY - timedelta(days=9), TODAY - timedelta(days=4)):
        other = bucket / "events" / f"{day:%Y/%m/%d}" / "23" / "late.jsonl.gz"
        other.parent.mkdir(parents=True, exist_ok=True)
        event = {**late[0], "messageId": f"late-{day}", "timestamp": f"{day.isoformat()}T23:00:00.000Z"}
        other.write_bytes(gzip.compress((json.dumps(event) + "\n").encode()))
    with dg.DagsterInstance.get() as instance:
        runs_before = instance.get_runs_count()
    assert run_materialize()
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs_count() == runs_before + 1
        [run] = instance.get_runs(limit=1)
        assert run.tags.get("dagster/partition") == TODAY.isoformat()
        # the load's materializations: today's partition, and each old day whose objects it loaded
        records = instance.fetch_materializations(dg.AssetKey(["raw", "events"]), limit=10).records
        partitions = {r.partition_key for r in records if r.run_id == run.run_id}
        old_days = {settings.partitions_start_date, TODAY - timedelta(days=9), TODAY - timedelta(days=4)}
        assert partitions == {day.isoformat() for day in old_days | {TODAY}}
    assert table_counts(settings)[0] == raw_before + 5
    expected = compute(bucket)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    assert (
        int(client.get(HotKeys(settings.redis_key_prefix).metric("dau", TODAY)))
        == expected.daily[TODAY]["dau"]
        == pipeline_run.daily[TODAY]["dau"] + 3
    )


def test_summary_command_reports_the_warehouse(pipeline_run, settings, capsys):
    assert main(["summary", "--day", TODAY.isoformat()]) == 0
    out = capsys.readouterr().out
    raw_events = query(settings, "select count(*) from raw.events")[0][0]
    assert re.search(rf"events loaded \(raw\.events\) +{raw_events:,}\n", out)
    assert HotKeys(settings.redis_key_prefix).metric("dau", TODAY) in out
