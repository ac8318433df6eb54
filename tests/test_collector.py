"""The collector (`analyticspro collector`, a real process) and the Python SDK, against the real loaders and PostgreSQL.

The official Segment library and our SDK send to the collector; the events are loaded with `load_events` and
compared field by field with what was sent. Bad requests get the 4xx Segment's SDKs understand; a sink that goes
down (a moto S3 server stopped under the collector) costs no request and loses no event.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from segment.analytics import Client

from ingestion.collector.sinks import FolderSink, KinesisSink, SinkError, batch_name
from ingestion.collector.spool import Spool
from ingestion.collector.writer import BatchWriter
from ingestion.events import load_events
from ingestion.sdk import Analytics
from testing.dashboard_server import collector_process, free_port
from testing.db import rows as query

KEY = "test-write-key-1"
OTHER_KEY = "test-write-key-2"


def sink_lines(folder: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(folder.rglob("*.jsonl.gz"))
        for line in gzip.decompress(path.read_bytes()).splitlines()
        if line
    ]


@pytest.fixture(scope="module")
def collector(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("collector")
    (root / "sink").mkdir()
    env = {
        "ANALYTICSPRO_WRITE_KEYS": f"{KEY},{OTHER_KEY}",
        "COLLECTOR_SINK": str(root / "sink"),
        "COLLECTOR_SPOOL_DIR": str(root / "spool"),
        "COLLECTOR_FLUSH_MS": "5",
    }
    with collector_process(env, root / "collector.log") as url:
        yield {"url": url, "sink": root / "sink", "root": root}


def post(collector: dict, path: str, body: bytes | dict, key: str | None = KEY, **headers: str) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{collector['url']}{path}", content=data, headers=headers, auth=(key, "") if key else None, timeout=10
    )


def test_segment_library_and_our_sdk_events_load_with_their_fields(collector, own_database):
    sent_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    segment = Client(KEY, host=collector["url"], gzip=True, sync_mode=False, max_retries=2)
    segment.track("seg-user", "plan_upgraded", {"plan": "pro", "mrr": 99}, timestamp=sent_at, message_id="seg-1")
    segment.identify("seg-user", {"plan": "pro", "email": "seg@example.com"}, message_id="seg-2", timestamp=sent_at)
    segment.page("seg-user", name="Pricing", properties={"path": "/pricing"}, message_id="seg-3", timestamp=sent_at)
    segment.alias("seg-anon", "seg-user", message_id="seg-4", timestamp=sent_at)
    segment.flush()
    segment.join()

    errors: list = []
    ours = Analytics(OTHER_KEY, host=collector["url"], on_error=lambda exc, batch: errors.append(exc))
    ids = {
        "track": ours.track("sdk-user", "button_clicked", {"button_id": "cta"}, timestamp=sent_at),
        "identify": ours.identify("sdk-user", {"plan": "free"}, timestamp=sent_at),
        "page": ours.page(anonymous_id="sdk-anon", name="Home", properties={"path": "/"}, timestamp=sent_at),
        "alias": ours.alias("sdk-anon", "sdk-user", timestamp=sent_at),
        "group": ours.group("sdk-user", "acme", {"plan": "enterprise"}, timestamp=sent_at),
    }
    assert ours.flush(timeout=30)
    ours.shutdown()
    assert not errors and ours.stats.sent == 5 and ours.stats.failed == 0

    # A request without messageIds, sent twice (a client retry): derived ids, one copy.
    retried = {"batch": [{"type": "track", "userId": "retry-user", "event": "x", "timestamp": sent_at.isoformat()}]}
    first, second = post(collector, "/v1/batch", retried), post(collector, "/v1/batch", retried)
    assert first.status_code == second.status_code == 200

    summary = load_events(collector["sink"].as_posix(), progress=False, say=lambda _: None)
    assert summary is not None
    rows = {
        r[0]: r[1:]
        for r in query(
            own_database,
            "select message_id, type, event, name, user_id, anonymous_id, properties, traits, context, "
            "timestamp, received_at from raw.events",
        )
    }
    expected = {
        "seg-1": ("track", "plan_upgraded", None, "seg-user", None, {"plan": "pro", "mrr": 99}, None),
        "seg-2": ("identify", None, None, "seg-user", None, None, {"plan": "pro", "email": "seg@example.com"}),
        "seg-3": ("page", None, "Pricing", "seg-user", None, {"path": "/pricing"}, None),
        "seg-4": ("alias", None, None, "seg-user", "seg-anon", None, None),  # previousId stitches as anonymous id
        ids["track"]: ("track", "button_clicked", None, "sdk-user", None, {"button_id": "cta"}, None),
        ids["identify"]: ("identify", None, None, "sdk-user", None, None, {"plan": "free"}),
        ids["page"]: ("page", None, "Home", None, "sdk-anon", {"path": "/"}, None),
        ids["alias"]: ("alias", None, None, "sdk-user", "sdk-anon", None, None),
        ids["group"]: ("group", None, None, "sdk-user", None, None, {"plan": "enterprise"}),
    }
    for message_id, (kind, event, name, user, anon, properties, traits) in expected.items():
        got = rows[message_id]
        assert got[:5] == (kind, event, name, user, anon), message_id
        assert (got[5] or None) == properties and (got[6] or None) == traits, message_id
        context = got[7]
        assert context["ip"] == "127.0.0.0"  # taken from the request, then anonymized by the loader
        assert context["library"]["name"] == (
            "analytics-python" if message_id.startswith("seg-") else "analyticspro-python"
        )
        # the clock-skew correction keeps the sent time (the clients' clocks are this machine's)
        assert abs((got[8] - sent_at).total_seconds()) < 2, message_id
        assert got[9] is not None and got[9] > sent_at
    retry_rows = [r for r in rows.values() if r[3] == "retry-user"]
    assert len(retry_rows) == 1
    assert len(rows) == len(expected) + 1


BAD_REQUESTS = [
    # (path, body, key, headers, status, code, words in the message)
    ("/v1/track", {"userId": "u", "event": "e"}, "not-a-key", {}, 401, "unauthorized", "write key"),
    ("/v1/track", {"userId": "u", "event": "e"}, None, {}, 401, "unauthorized", "ANALYTICSPRO_WRITE_KEYS"),
    ("/v1/batch", b'{"batch": [{"type": "track"', KEY, {}, 400, "invalid_json", "not valid JSON"),
    ("/v1/batch", b"", KEY, {}, 400, "invalid_json", "empty"),
    ("/v1/batch", b"[1, 2]", KEY, {}, 400, "invalid_request", "JSON object"),
    ("/v1/batch", {"batch": {"type": "track"}}, KEY, {}, 400, "invalid_request", "'batch' array"),
    ("/v1/batch", {"events": []}, KEY, {}, 400, "invalid_request", "'batch' array"),
    ("/v1/track", {"userId": "u", "event": "e", "properties": {"blob": "x" * 40_000}}, KEY, {}, 400,
     "request_too_large", "32,768"),
    ("/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"x": "y" * 30_000}}] * 20},
     KEY, {}, 400, "request_too_large", "512,000"),
    ("/v1/batch", b"\x1f\x8b not gzip", KEY, {"Content-Encoding": "gzip"}, 400, "invalid_gzip", "gzip"),
    ("/v1/batch", gzip.compress(b" " * 3_000_000), KEY, {"Content-Encoding": "gzip"}, 400, "request_too_large",
     "fewer events"),
    ("/v1/batch", b"{}", KEY, {"Content-Encoding": "br"}, 400, "unsupported_encoding", "gzip"),
    ("/v1/track", {"userId": "u", "event": "e", "properties": ["not", "an", "object"]}, KEY, {}, 400,
     "invalid_event", "properties must be a JSON object"),
    ("/v1/track", {"userId": True, "event": "e"}, KEY, {}, 400, "invalid_event", "userId must be a string"),
    ("/v1/track", {"userId": "u"}, KEY, {}, 400, "invalid_event", "needs an event name"),
    ("/v1/identify", {"traits": {"plan": "pro"}}, KEY, {}, 400, "invalid_event", "userId or an anonymousId"),
    ("/v1/page", {"userId": "u", "timestamp": "yesterday"}, KEY, {}, 400, "invalid_event", "ISO-8601"),
    ("/v1/batch", {"batch": [{"userId": "u", "event": "e"}]}, KEY, {}, 400, "invalid_events", "type is missing"),
    ("/v1/purchase", {"userId": "u"}, KEY, {}, 404, "not_found", "/openapi.json"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[f"{c[0]}-{c[5]}-{i}" for i, c in enumerate(BAD_REQUESTS)])
def test_bad_requests_get_a_clear_4xx(collector, case):
    path, body, key, headers, status, code, words = case
    before = len(sink_lines(collector["sink"]))
    response = post(collector, path, body, key, **headers)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["success"] is False and payload["code"] == code
    assert words in payload["message"], payload["message"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")
    if code in ("invalid_event", "invalid_events"):  # kept, to be quarantined with its reason when loaded
        assert len(sink_lines(collector["sink"])) == before + 1
    else:
        assert len(sink_lines(collector["sink"])) == before  # nothing of a refused request is written


def test_a_batch_with_some_invalid_events_keeps_the_valid_ones(collector, own_database):
    good = [{"type": "track", "userId": f"u{i}", "event": "ok", "messageId": f"mixed-{i}"} for i in range(3)]
    bad = {"type": "track", "userId": "u9", "messageId": "mixed-bad"}  # no event name
    response = post(collector, "/v1/batch", {"batch": [good[0], bad, good[1], 42, good[2]]})
    assert response.status_code == 400
    payload = response.json()
    assert payload["accepted"] == 3
    assert [(r["index"], r["messageId"]) for r in payload["rejected"]] == [(1, "mixed-bad"), (3, None)]
    assert "2 of 5 events are invalid" in payload["message"]
    load_events(collector["sink"].as_posix(), progress=False, say=lambda _: None)
    loaded = {r[0] for r in query(own_database, "select message_id from raw.events where message_id like 'mixed-%'")}
    assert loaded == {"mixed-0", "mixed-1", "mixed-2"}
    reasons = [
        r[0] for r in query(own_database, "select reason from raw.rejected_events where payload like '%mixed-bad%'")
    ]
    assert reasons == ["a track call needs an event name (a non-empty string) in 'event'"]


def test_browser_forms_cors_openapi_and_junk(collector):
    # analytics.js: short paths, text/plain, the write key in the body
    body = {"writeKey": KEY, "anonymousId": "browser-1", "event": "clicked", "messageId": "browser-msg"}
    response = post(collector, "/v1/t", body, key=None, **{"Content-Type": "text/plain"})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert response.headers["access-control-allow-origin"] == "*"
    line = [
        event
        for event in sink_lines(collector["sink"])
        if isinstance(event, dict) and event.get("messageId") == "browser-msg"
    ][0]
    assert line["type"] == "track" and "writeKey" not in line and line["receivedAt"].endswith("Z")
    preflight = httpx.options(f"{collector['url']}/v1/batch", headers={"Origin": "https://app.example.com"})
    assert preflight.status_code == 204 and "Authorization" in preflight.headers["access-control-allow-headers"]
    assert httpx.get(f"{collector['url']}/v1/track").status_code == 405
    settings = httpx.get(f"{collector['url']}/v1/projects/{KEY}/settings").json()  # analytics.js's cdnURL
    destination = settings["integrations"]["Segment.io"]
    assert destination["apiHost"] == collector["url"].removeprefix("http://") + "/v1"
    assert destination["protocol"] == "http" and destination["apiKey"] == KEY
    assert httpx.get(f"{collector['url']}/v1/projects/nope/settings").status_code == 401

    spec = httpx.get(f"{collector['url']}/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    endpoints = {"track", "identify", "page", "screen", "group", "alias", "batch", "import"}
    assert set(spec["paths"]) == {f"/v1/{name}" for name in endpoints} | {"/health", "/v1/projects/{writeKey}/settings"}
    for path, item in spec["paths"].items():  # every documented example is accepted as documented
        if "post" in item:
            example = item["post"]["requestBody"]["content"]["application/json"]["example"]
            assert post(collector, path, example).status_code == 200, path
            assert set(item["post"]["responses"]) == {"200", "400", "401", "503"}

    rng = random.Random(7)
    junk: list[bytes] = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))) for _ in range(40)]
    junk += [json.dumps(value).encode() for value in (None, 1, "s", [], {"batch": [None, [], {"type": None}]})]
    junk += [json.dumps({"batch": [{"type": "track", "userId": {"a": 1}, "event": 5, "timestamp": 7}]}).encode()]
    for payload in junk:
        for path in ("/v1/batch", "/v1/track"):
            response = post(collector, path, payload)
            assert 400 <= response.status_code < 500, (path, payload[:80], response.text)
            assert response.json()["message"]


def test_group_commit_shares_one_write(tmp_path):
    """Requests arriving within one flush interval share one durable write, each answered after it."""
    sink = FolderSink(tmp_path / "sink")
    (tmp_path / "sink").mkdir()

    async def run() -> tuple[list[str], int]:
        writer = BatchWriter(sink, Spool(tmp_path / "spool"), flush_ms=200, flush_events=10_000)
        await writer.start()
        first = await writer.submit([b'{"n": -1}'])  # after a quiet spell: written at once, alone
        lines = [[json.dumps({"n": i * 10 + j}).encode() for j in range(10)] for i in range(20)]
        # 20 requests within the next interval share the next write
        where = await asyncio.gather(*(writer.submit(batch) for batch in lines))
        await writer.close()
        return [first, *where], writer.stats.writes

    where, writes = asyncio.run(run())
    assert where == ["sink"] * 21 and writes == 2
    objects = sorted((tmp_path / "sink").rglob("*.jsonl.gz"))
    assert len(objects) == 2
    contents = [sorted(json.loads(line)["n"] for line in gzip.decompress(o.read_bytes()).splitlines()) for o in objects]
    assert contents == [[-1], list(range(200))]


class FlakyKinesis:
    """A Kinesis client whose PutRecords refuses the records listed in `refuse` (by call), as throttling does."""

    def __init__(self, refuse: list[set[int]]) -> None:
        self.refuse = refuse
        self.calls: list[list[bytes]] = []

    def put_records(self, StreamName: str, Records: list[dict]) -> dict:  # noqa: N803 - boto3's names
        self.calls.append([record["Data"] for record in Records])
        refused = self.refuse[len(self.calls) - 1] if len(self.calls) <= len(self.refuse) else set()
        results = [
            {"ErrorCode": "ProvisionedThroughputExceededException"} if i in refused else {"SequenceNumber": str(i)}
            for i in range(len(Records))
        ]
        return {"FailedRecordCount": len(refused), "Records": results}


def test_kinesis_sink_resends_only_the_failed_records():
    lines = [json.dumps({"userId": f"u{i}", "messageId": f"m{i}"}).encode() for i in range(5)]
    client = FlakyKinesis([{1, 3}, {0}])
    KinesisSink("kinesis://s", client=client, sleep=lambda _: None).write(lines, "n", datetime.now(UTC))
    assert client.calls == [lines, [lines[1], lines[3]], [lines[1]]]  # the 2nd call refused its first record

    stubborn = FlakyKinesis([{2}, {0}, {0}, {0}])  # the third record, refused every time
    sink = KinesisSink("kinesis://s", client=stubborn, sleep=lambda _: None, attempts=3)
    with pytest.raises(SinkError) as refused:
        sink.write(lines, "n", datetime.now(UTC))
    assert refused.value.remaining == [lines[2]] and len(stubborn.calls) == 3


def test_sdk_never_blocks_or_raises_and_counts_what_it_drops():
    black_hole = socket.socket()  # takes connections, never answers: the SDK's one sending thread hangs in a request
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(64)
    failures: list = []
    client = Analytics(
        KEY, host=f"http://127.0.0.1:{black_hole.getsockname()[1]}", max_queue_size=10, batch_size=5, max_retries=1,
        timeout=1, flush_interval=0.01, on_error=lambda exc, batch: failures.append(len(batch)),
    )  # fmt: skip
    try:
        ids = [client.track(f"u{i}", "e", {"i": i}) for i in range(100)]
        assert client.track(None, "e") is None and client.track("u", "") is None  # invalid: refused, not raised
        assert client.track("u", "e", {"blob": "x" * 40_000}) is None  # over 32 KB
        assert client.track("u", "e", {"bad": object()}) is None  # not serializable
        assert client.flush(timeout=0.2) is False  # flush gives up when told, the host program goes on
        client.shutdown(timeout=30)
    finally:
        black_hole.close()
    stats = client.stats_dict()
    accepted = sum(1 for i in ids if i)
    assert stats["invalid"] == 4, stats
    # one batch of 5 in the thread's hands, 10 in the queue: the rest is dropped, counted, never blocks the caller
    assert stats["dropped"] == 100 - accepted and stats["dropped"] >= 80, stats
    assert stats["queued"] == accepted and stats["failed"] == accepted and sum(failures) == accepted, stats
    assert stats["sent"] == 0 and stats["retries"] >= 1, stats


def _moto(port: int):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def _s3_lines(bucket: str, prefix: str) -> list[dict]:
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert all(key.endswith(".jsonl.gz") and "/events/" in key for key in keys)
    return [
        json.loads(line)
        for key in keys
        for line in gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).splitlines()
    ]


def test_sink_down_spools_then_every_event_arrives(monkeypatch, tmp_path, own_database):
    port = free_port()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    moto = _moto(port)
    boto3.client("s3").create_bucket(Bucket="events")
    env = {
        "ANALYTICSPRO_WRITE_KEYS": KEY,
        "COLLECTOR_SINK": "s3://events/segment",
        "COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"),
        "COLLECTOR_FLUSH_MS": "5",
        "COLLECTOR_SPOOL_RETRY_SECONDS": "1",
    }
    with collector_process(env, tmp_path / "collector.log") as url:
        sdk = Analytics(KEY, host=url, batch_size=50)
        before = [sdk.track(f"u{i}", "before_outage") for i in range(20)]
        assert sdk.flush(timeout=30)
        assert {e["messageId"] for e in _s3_lines("events", "segment/")} == set(before)
        moto.stop()  # the sink goes down

        during = [sdk.track(f"u{i}", "during_outage", {"i": i}) for i in range(300)]
        assert sdk.flush(timeout=60)
        stats = sdk.stats_dict()
        assert stats["sent"] == 320 and stats["failed"] == 0  # every request was answered 200
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "degraded" and not health["sink_ok"]
        assert health["written_to_spool"] == 300 and health["spooled_batches"] >= 1
        spooled = sum(len(gzip.decompress(p.read_bytes()).splitlines()) for p in (tmp_path / "spool").glob("*.gz"))
        assert spooled == 300

        moto = _moto(port)  # back (moto's state lives in this test process: the bucket is still there)
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").json()["spooled_batches"] and time.monotonic() < deadline:
            time.sleep(0.3)
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["drained_from_spool"] == 300
        after = [sdk.track("u-after", "after_outage")]
        assert sdk.flush(timeout=30)
        sdk.shutdown()
    try:
        arrived = [e["messageId"] for e in _s3_lines("events", "segment/")]
        assert sorted(arrived) == sorted(before + during + after)  # all of them, once
        load_events("s3://events/segment", progress=False, say=lambda _: None)
        loaded = query(own_database, "select event, count(*) from raw.events group by event order by event")
        assert loaded == [("after_outage", 1), ("before_outage", 20), ("during_outage", 300)]
    finally:
        moto.stop()


def test_sdk_writes_straight_to_kinesis_and_s3(aws_endpoint, own_database):
    boto3.client("kinesis").create_stream(StreamName="sdk-events", ShardCount=2)
    boto3.client("s3").create_bucket(Bucket="sdk-bucket")
    to_stream = Analytics(sink="kinesis://sdk-events")
    to_bucket = Analytics(sink="s3://sdk-bucket/raw")
    streamed = [to_stream.track(f"user-{i}", "streamed", {"i": i}) for i in range(120)]
    streamed.append(to_stream.identify("user-1", {"plan": "pro"}))
    stored = [to_bucket.page(anonymous_id=f"anon-{i}", name="Home") for i in range(30)]
    for client in (to_stream, to_bucket):
        assert client.flush(timeout=30)
        client.shutdown()
        assert client.stats.failed == 0
    load_events("kinesis://sdk-events", progress=False, say=lambda _: None)
    load_events("s3://sdk-bucket/raw", progress=False, say=lambda _: None)
    rows = query(own_database, "select message_id, type, received_at is not null from raw.events")
    assert {r[0] for r in rows} == set(streamed + stored)
    assert all(r[2] for r in rows)
    assert sum(1 for r in rows if r[1] == "page") == 30


def test_unique_names_for_batches():
    now = datetime.now(UTC)
    names = {batch_name(now) for _ in range(1000)}
    assert len(names) == 1000 and all(name.startswith(f"analyticspro-collector-{now:%Y%m%dT%H%M%S}") for name in names)


def test_buffer_mode_ships_many_requests_as_one_object(tmp_path):
    """COLLECTOR_BUFFER_SECONDS: each request is acknowledged once fsynced in the spool; the drain task ships every
    buffered batch of the interval as one object, and nothing stays behind at shutdown."""
    sink_folder = tmp_path / "sink"
    sink_folder.mkdir()
    spool = Spool(tmp_path / "spool")

    async def run() -> tuple[list[str], int, int]:
        writer = BatchWriter(FolderSink(sink_folder), spool, flush_ms=0, buffer_seconds=1)
        await writer.start()
        where = [await writer.submit([json.dumps({"n": n}).encode()]) for n in range(5)]  # five separate writes
        buffered = len(spool.files())
        deadline = time.monotonic() + 10
        while spool.files() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        shipped = len(list(sink_folder.rglob("*.jsonl.gz")))
        assert await writer.submit([b'{"n": 5}']) == "spool"  # after the ship: buffered again
        await writer.close()  # ... and shipped at shutdown
        return where, buffered, shipped

    where, buffered, shipped = asyncio.run(run())
    assert where == ["spool"] * 5 and buffered == 5 and shipped == 1
    assert not spool.files()
    assert sorted(e["n"] for e in sink_lines(sink_folder)) == list(range(6))
