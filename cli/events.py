"""`analyticspro generate` and `load`: synthetic events into a bucket (or through a collector), and the dlt load
alone."""

from __future__ import annotations

import argparse
import shutil
import signal
import time
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path

from common.console import say
from common.db import ensure_database
from common.settings import get_settings, normalize_bucket_url, realtime_poll_seconds
from ingestion.collector.config import get_collector_settings
from ingestion.events import configured_sources, load_events
from ingestion.generator import generate, iter_events
from ingestion.sdk import Analytics
from warehouse.follow import Follower


def _default_out_dir() -> str:
    bucket = get_settings().events_bucket_url
    if "://" in bucket and not bucket.startswith("file://"):
        raise SystemExit(
            f"EVENTS_BUCKET_URL is {bucket}; `generate` writes to a local folder: pass --out DIR "
            "(and upload it, e.g. `aws s3 sync DIR s3://...`)."
        )
    return bucket.removeprefix("file://")


def send_generated(args: argparse.Namespace) -> int:
    """`generate --send URL`: the same synthetic traffic, sent through a collector with the Python SDK (events up
    to now; `timestamp` as the client's, sentAt/receivedAt set by the SDK and the collector as in production)."""
    url = args.send.rstrip("/")
    deadline = time.monotonic() + 30
    while True:  # the collector may still be starting (make demo starts it in the background)
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"no collector answers at {url}/health ({exc}); start one: analyticspro collector"
                ) from None
            time.sleep(0.3)
    key = args.write_key or get_collector_settings().write_keys[0]
    end_date = date.fromisoformat(args.end_date) if args.end_date else datetime.now(UTC).date()
    now = datetime.now(UTC)
    events = sorted(
        (e for e in iter_events(days=args.days, users=args.users, seed=args.seed, end_date=end_date)
         if datetime.fromisoformat(e["timestamp"]) <= now),
        key=lambda e: e["timestamp"],
    )  # fmt: skip
    say(f"sending {len(events):,} events ({args.days} days to now, {args.users:,} visitors) to {url}")
    client = Analytics(key, host=url, batch_size=500, threads=2, max_queue_size=20_000)
    started = time.monotonic()
    for n, event in enumerate(events, start=1):
        for field in ("sentAt", "receivedAt", "originalTimestamp"):  # the SDK and the collector set these
            event.pop(field, None)
        while client.pending >= client.max_queue_size - 1:  # back-pressure instead of dropping
            time.sleep(0.005)
        client.enqueue(event)
        if n % 20_000 == 0:
            say(f"queued {n:,}/{len(events):,} events, {client.stats.sent:,} accepted by the collector")
    client.flush()
    client.shutdown()
    stats = client.stats_dict()
    say(
        f"the collector accepted {stats['sent']:,} events in {time.monotonic() - started:.1f}s "
        f"({stats['failed']:,} failed, {stats['retries']:,} retries)"
    )
    return 0 if stats["failed"] == 0 and stats["sent"] == len(events) else 1


def cmd_generate(args: argparse.Namespace) -> int:
    if args.send:
        return send_generated(args)
    out = args.out or _default_out_dir()
    if args.clean:
        events_dir = Path(out) / "events"
        if events_dir.exists():
            say(f"--clean: removing the earlier generated batch files in {events_dir}")
            shutil.rmtree(events_dir)
    end_date = date.fromisoformat(args.end_date) if args.end_date else None
    say(f"generating {args.days} days of events for {args.users:,} visitors (seed {args.seed}) into {out}")
    started = time.monotonic()
    result = generate(out, days=args.days, users=args.users, seed=args.seed, end_date=end_date, progress=say)
    say(
        f"wrote {result.events_written:,} events ({result.unique_events:,} distinct messageIds, "
        f"{result.events_written - result.unique_events:,} re-deliveries) in {len(result.files):,} batch files, "
        f"{result.signups:,} signups, in {time.monotonic() - started:.1f}s"
    )
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    ensure_database(get_settings())
    for source in [args.source] if args.source else configured_sources():
        summary = load_events(source, rescan=args.rescan, sweep=args.sweep, progress=True, say=say)
        say(summary.describe())
    return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_realtime(args: argparse.Namespace) -> int:
    settings = get_settings()
    ensure_database(settings)
    interval = args.interval if args.interval is not None else realtime_poll_seconds()
    if interval <= 0:
        raise ValueError(f"--interval {interval} must be more than 0 seconds")
    sources = [
        source if source.startswith("kinesis://") else normalize_bucket_url(source)
        for source in (args.source or configured_sources())
    ]
    follower = Follower(sources, interval, settings)
    signal.signal(signal.SIGTERM, _stop)  # a service manager's stop: end the look in progress, drop the heartbeat
    try:
        follower.run(say, ticks=args.ticks)
    except KeyboardInterrupt:
        say("stopped")
    return 0
