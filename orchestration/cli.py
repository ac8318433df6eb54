"""`analyticspro`: the command line of AnalyticsPro.

    analyticspro setup                      check Postgres and Redis, create the database
    analyticspro generate --out DIR ...     write synthetic Segment batch files (--send URL: through a collector)
    analyticspro load [SOURCE]              run the dlt load alone (no Dagster): ./folder, s3://bucket/prefix
                                            or kinesis://STREAM (default EVENTS_BUCKET_URL, KINESIS_STREAM_NAME)
    analyticspro materialize                run every asset through Dagster, then print a summary
    analyticspro archive                    move fct_events days older than WARM_DAYS to Parquet (cold tier)
    analyticspro restore --from D --to D    bring archived days back into PostgreSQL
    analyticspro forget --user-id ID        GDPR erasure of one person from every tier
    analyticspro summary                    print what is in the warehouse and Redis now
    analyticspro dashboard [--host --port]  serve the GraphQL API and the web dashboard
    analyticspro collector [--host --port]  receive events over Segment's HTTP API (any Segment SDK)

Heavy imports (Dagster, dbt, dlt) happen inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from datetime import date, datetime
from pathlib import Path

from ingestion.settings import get_settings


def _say(message: str) -> None:
    print(f"[analyticspro {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def cmd_setup(args: argparse.Namespace) -> int:
    from orchestration.warehouse import ensure_database, ensure_redis

    settings = get_settings()
    created = ensure_database(settings)
    _say(f"PostgreSQL ok: database {settings.database_name!r} {'created' if created else 'exists'}")
    ensure_redis(settings)
    _say(f"Redis ok at {settings.redis_url}")
    reader = ensure_reader()
    _say(f"read-only role {reader!r}: SELECT on the analytics schema (dashboards API, Metabase, Superset)")
    return 0


def ensure_reader() -> str:
    """The read-only role of the dashboards API and BI tools, with its grants in this database."""
    from dashboards.config import get_dashboard_settings
    from dashboards.readonly import ensure_readonly_role

    dashboard_settings = get_dashboard_settings()
    ensure_readonly_role(dashboard_settings)
    return dashboard_settings.readonly_user


def dashboard_url(host: str | None = None, port: int | None = None) -> str:
    """Where `analyticspro dashboard` serves the page; with the local token in the fragment (never sent to the
    server, never logged) when no ANALYTICSPRO_API_TOKENS is set."""
    from dashboards.config import DEFAULT_HOST, DEFAULT_PORT, local_token

    url = f"http://{host or DEFAULT_HOST}:{port or DEFAULT_PORT}/"
    if not (os.environ.get("ANALYTICSPRO_API_TOKENS") or "").strip():
        url += f"#token={local_token()}"
    return url


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboards.config import get_dashboard_settings
    from orchestration.instance import prepare_dagster_home

    dashboard_settings = get_dashboard_settings()  # fails early on bad config
    prepare_dagster_home()  # exports run as Dagster runs on this instance
    if not os.environ.get("DASHBOARD_DATABASE_URL"):
        try:
            ensure_reader()
        except Exception as exc:  # noqa: BLE001 - the API may still connect; say why the grants were not refreshed
            _say(f"could not refresh the read-only role's grants ({exc}); run `analyticspro setup` as the owner")
    _say(f"dashboard at {dashboard_url(args.host, args.port)}")
    _say(f"GraphQL API at http://{args.host}:{args.port}/graphql (GraphiQL in a browser; Bearer token required)")
    _say(f"reading the marts as {dashboard_settings.redacted_database_url}")
    return serve("dashboards.app:app_from_env", args)


def serve(factory: str, args: argparse.Namespace, **options: object) -> int:
    """Run an ASGI application factory on uvicorn with the service flags every server command takes."""
    import uvicorn

    uvicorn.run(
        factory,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level.lower(),
        access_log=args.access_log,
        **options,
    )
    return 0


def cmd_collector(args: argparse.Namespace) -> int:
    from ingestion.collector.config import get_collector_settings
    from ingestion.collector.openapi import openapi_document
    from ingestion.collector.sinks import sink_from_url

    if args.openapi:
        import json

        print(json.dumps(openapi_document(), indent=2))
        return 0
    collector_settings = get_collector_settings()  # fails early on bad config
    sink_from_url(collector_settings.sink_url)  # and on a bad sink URL
    base = f"http://{args.host}:{args.port}"
    _say(f"collector at {base}/v1/batch (Segment's HTTP API; point an SDK's host at {base})")
    if collector_settings.local_write_key:
        _say(f"write key (local, from .analyticspro/write_key): {collector_settings.write_keys[0]}")
    else:
        _say(f"{len(collector_settings.write_keys)} write key(s) from ANALYTICSPRO_WRITE_KEYS")
    _say(f"writing to {collector_settings.sink_url}; spool {collector_settings.spool_dir}")
    return serve(
        "ingestion.collector.app:app_from_env",
        args,
        proxy_headers=True,
        forwarded_allow_ips=collector_settings.forwarded_allow_ips,
        timeout_graceful_shutdown=30,
    )


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
    import urllib.request
    from datetime import UTC
    from datetime import datetime as dt

    from ingestion.collector.config import get_collector_settings
    from ingestion.generator import iter_events
    from ingestion.sdk import Analytics

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
    end_date = date.fromisoformat(args.end_date) if args.end_date else dt.now(UTC).date()
    now = dt.now(UTC)
    events = sorted(
        (e for e in iter_events(days=args.days, users=args.users, seed=args.seed, end_date=end_date)
         if dt.fromisoformat(e["timestamp"]) <= now),
        key=lambda e: e["timestamp"],
    )  # fmt: skip
    _say(f"sending {len(events):,} events ({args.days} days to now, {args.users:,} visitors) to {url}")
    client = Analytics(key, host=url, batch_size=500, threads=2, max_queue_size=20_000)
    started = time.monotonic()
    for n, event in enumerate(events, start=1):
        for field in ("sentAt", "receivedAt", "originalTimestamp"):  # the SDK and the collector set these
            event.pop(field, None)
        while client.pending >= client.max_queue_size - 1:  # back-pressure instead of dropping
            time.sleep(0.005)
        client.enqueue(event)
        if n % 20_000 == 0:
            _say(f"queued {n:,}/{len(events):,} events, {client.stats.sent:,} accepted by the collector")
    client.flush()
    client.shutdown()
    stats = client.stats_dict()
    _say(
        f"the collector accepted {stats['sent']:,} events in {time.monotonic() - started:.1f}s "
        f"({stats['failed']:,} failed, {stats['retries']:,} retries)"
    )
    return 0 if stats["failed"] == 0 and stats["sent"] == len(events) else 1


def cmd_generate(args: argparse.Namespace) -> int:
    from ingestion.generator import generate

    if args.send:
        return send_generated(args)
    out = args.out or _default_out_dir()
    if args.clean:
        events_dir = Path(out) / "events"
        if events_dir.exists():
            _say(f"--clean: removing the earlier generated batch files in {events_dir}")
            shutil.rmtree(events_dir)
    end_date = date.fromisoformat(args.end_date) if args.end_date else None
    _say(f"generating {args.days} days of events for {args.users:,} visitors (seed {args.seed}) into {out}")
    started = time.monotonic()
    result = generate(out, days=args.days, users=args.users, seed=args.seed, end_date=end_date, progress=_say)
    _say(
        f"wrote {result.events_written:,} events ({result.unique_events:,} distinct messageIds, "
        f"{result.events_written - result.unique_events:,} re-deliveries) in {len(result.files):,} batch files, "
        f"{result.signups:,} signups, in {time.monotonic() - started:.1f}s"
    )
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from ingestion.events import configured_sources, load_events
    from orchestration.warehouse import ensure_database

    ensure_database(get_settings())
    for source in [args.source] if args.source else configured_sources():
        summary = load_events(source, rescan=args.rescan, progress=True, say=_say)
        _say(summary.describe())
    return 0


def _dagster_home() -> Path:
    from orchestration.instance import prepare_dagster_home

    return prepare_dagster_home()


def materialize_windows(sources: list[str]) -> list[tuple[date, date]]:
    """The daily partitions `materialize` covers: every day that has batch objects not loaded yet, and today (the
    stream's new records, the hot metrics), as stretches of consecutive days, each a single-run backfill."""
    from ingestion.bucket import object_date
    from ingestion.events import unloaded_objects
    from ingestion.settings import utc_today
    from orchestration.partitions import run_windows

    settings = get_settings()
    today = utc_today()
    days = [today]
    for source in sources:
        if not source.startswith("kinesis://"):
            days += [object_date(item, settings.partitions_start_date, today) for item in unloaded_objects(source)]
    return run_windows(days)


def use_engine(engine: str) -> None:
    """Select the engine the marts build on for this process and the processes it starts (ANALYTICSPRO_ENGINE)."""
    from orchestration.engines import ENGINES, check_spark_installed, spark_environment

    if engine not in ENGINES:
        raise ValueError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    os.environ["ANALYTICSPRO_ENGINE"] = engine
    if engine == "spark":
        check_spark_installed()
        os.environ.update(spark_environment())


def _forget_reconstructed_jobs() -> None:
    """Dagster keeps the last job it rebuilt from a code pointer for the life of the process (lru_cache on
    ReconstructableJob): a second materialize in one process (an engine or executor changed in between) would run
    the first one's job. Clear it so the job is built from the environment as it is now."""
    from dagster._core.definitions import reconstruct

    for cls in (reconstruct.ReconstructableJob, reconstruct.ReconstructableRepository):
        for name in dir(cls):
            cached = getattr(cls, name, None)
            if callable(getattr(cached, "cache_clear", None)):
                cached.cache_clear()


def run_materialize(
    *,
    window: tuple[date, date] | None = None,
    log_level: str = "INFO",
    full_refresh: bool = False,
    engine: str | None = None,
) -> bool:
    """Materialize every load-and-transform asset through Dagster over the daily partitions window (first, last)
    (default: materialize_windows, the days with new objects and today), each stretch of days as one run (a
    single-run backfill, recorded in DAGSTER_HOME), on the engine given (default ANALYTICSPRO_ENGINE, else
    postgres) and the executor DAGSTER_EXECUTOR names; True when every run succeeded."""
    import dagster as dg

    from ingestion.events import configured_sources
    from orchestration.defs.transform.project import analyticspro_dbt_project
    from orchestration.engines import current_engine, current_executor
    from orchestration.partitions import partition_range_tags

    use_engine(engine or current_engine())
    executor = current_executor()
    _dagster_home()
    _say("checking the dbt manifest (dbt parse if models changed)")
    analyticspro_dbt_project(refresh=True)
    windows = [window] if window is not None else materialize_windows(configured_sources())
    _say(f"loading Dagster definitions (marts on {os.environ['ANALYTICSPRO_ENGINE']}, {executor} executor)")
    from orchestration.definitions import MATERIALIZE_ALL_JOB, build_definitions, resolved_materialize_all_job

    defs = build_definitions()  # from the environment now (not whatever it was when the module was imported)

    job = defs.resolve_job_def(MATERIALIZE_ALL_JOB)
    run_config: dict = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    run_config["ops"] = {"dbt_models": {"config": {"full_refresh": full_refresh}}}
    for first, last in windows:
        span = first.isoformat() if first == last else f"{first} .. {last}"
        steps = "load -> lake -> dbt on spark" if os.environ["ANALYTICSPRO_ENGINE"] == "spark" else "load -> dbt"
        _say(f"materializing job {MATERIALIZE_ALL_JOB!r} for the daily partitions {span}: {steps} -> hot metrics")
        tags = partition_range_tags(first, last)
        with dg.DagsterInstance.get() as instance:
            if executor == "in_process":
                result = job.execute_in_process(
                    instance=instance, run_config=run_config, tags=tags, raise_on_error=False
                )
            else:  # step processes (or Celery workers, Kubernetes jobs) rebuild the job from its module
                _forget_reconstructed_jobs()
                result = dg.execute_job(
                    dg.reconstructable(resolved_materialize_all_job),
                    instance=instance,
                    run_config=run_config,
                    tags=tags,
                    raise_on_error=False,
                )
        if not result.success:
            failed = [event.step_key for event in result.all_events if event.is_step_failure]
            _say(
                f"run {result.run_id} FAILED at {', '.join(failed) or 'run level'}; see the messages above or "
                f"open the run in the Dagster UI (`make dev`)"
            )
            return False
        _say(f"run {result.run_id} succeeded")
        run_config["ops"]["dbt_models"]["config"]["full_refresh"] = False  # once is enough
    return True


def print_lake_summary() -> None:
    from ingestion.lake import lake_marts, lake_url

    lake = lake_url()
    marts = lake_marts(lake)
    lines = [
        "",
        f"Marts built on Spark, as Parquet tables in the lake {lake}/marts/:",
        *[f"  {name:<24}{rows:>12,} rows" for name, rows in marts.items()],
        "",
        "Read them with any engine that reads Parquet, e.g.:",
        f"  duckdb -c \"select * from read_parquet('{lake}/marts/daily_metrics/*.parquet')"
        ' order by date desc limit 10"',
        "  (Spark: spark.read.parquet(...); Athena/Trino: CREATE EXTERNAL TABLE ... LOCATION '<lake>/marts/<model>/')",
    ]
    print("\n".join(lines), flush=True)


def print_summary(day: date | None = None) -> None:
    from orchestration.warehouse import summarize

    settings = get_settings()
    s = summarize(settings, day)
    span = f"{s.first_day} .. {s.last_day}" if s.first_day else "no events yet"
    rows = [
        ("events loaded (raw.events)", f"{s.raw_events:,}"),
        ("  of them via the collector", f"{s.collector_events:,}"),
        ("rejected (raw.rejected_events)", f"{s.rejected_events:,}"),
        ("people (stitched identities)", f"{s.people:,}"),
        ("dates in daily_metrics", span),
        (f"signups today ({s.day})", f"{s.signups_today:,}"),
        (f"DAU / MAU today ({s.day})", f"{s.dau_today:,} / {s.mau_today:,}"),
        (f"MRR at the end of {s.day}", f"{s.mrr_today:,.2f}"),
    ]
    if s.funnel and s.funnel[0][1]:
        steps = " -> ".join(f"{name} {persons:,}" for name, persons in s.funnel)
        rows.append(("default funnel (all cohorts)", f"{steps} ({s.funnel[-1][1] / s.funnel[0][1]:.1%})"))
    lines = [
        "",
        "AnalyticsPro summary",
        *[f"  {label:<32}{value}" for label, value in rows],
        "  Redis keys written:",
        *[f"    {key} = {value}" for key, value in s.redis_keys.items()],
        "",
        "Next:",
        "  make dev                     # Dagster UI at http://127.0.0.1:3000: runs, assets, lineage",
        f"  psql {settings.redacted_database_url} -c \\",
        '    "select * from analytics.daily_metrics order by date desc, metric_name limit 10"',
        "  # more marts: analytics.fct_funnel_steps, fct_cohort_retention, revenue_monthly, dim_users, fct_sessions",
        "  # what every number means: docs/metrics.md",
        f"  redis-cli -u {settings.redis_url} --scan --pattern '{settings.redis_key_prefix}:metrics:*'",
        "  make dashboard               # the web dashboard and GraphQL API, then open:",
        f"    {dashboard_url()}",
        "  make collector               # Segment's HTTP API on http://127.0.0.1:8060: set any Segment SDK's host to",
        "                               # it; its write key is printed (ANALYTICSPRO_WRITE_KEYS, else a local one)",
        "  .venv/bin/analyticspro materialize --engine spark   # the same marts on Spark, Parquet in the lake",
        "                               # (README: Scaling out: Spark and distributed Dagster)",
    ]
    print("\n".join(lines), flush=True)


def cmd_materialize(args: argparse.Namespace) -> int:
    from ingestion.events import check_bucket, configured_sources
    from orchestration.warehouse import ensure_database, ensure_redis

    settings = get_settings()
    ensure_database(settings)
    ensure_redis(settings)
    ensure_reader()
    if args.full_refresh:
        refuse_full_refresh_if_archived()
    sources = configured_sources()
    _say(f"event sources: {', '.join(sources)}")
    for source in sources:
        if not source.startswith("kinesis://"):
            check_bucket(source)
    window = None
    if args.start_date or args.end_date:
        if not (args.start_date and args.end_date):
            raise ValueError("give both --start-date and --end-date (inclusive days, YYYY-MM-DD), or neither")
        window = (date.fromisoformat(args.start_date), date.fromisoformat(args.end_date))
        if window[0] > window[1]:
            raise ValueError(f"--start-date {window[0]} is after --end-date {window[1]}")
    ok = run_materialize(window=window, log_level=args.log_level, full_refresh=args.full_refresh, engine=args.engine)
    if ok:
        print_summary(date.fromisoformat(args.day) if args.day else None)
        if args.engine == "spark":
            print_lake_summary()
    return 0 if ok else 1


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker that runs the steps of Dagster runs started with DAGSTER_EXECUTOR=celery. The process becomes
    `celery worker` (exec), so a stop signal reaches Celery itself (warm shutdown: running steps finish)."""
    import tempfile

    import yaml

    from orchestration.engines import EngineError, celery_config

    try:
        from dagster_celery.cli import get_config_dir, get_worker_name
    except ImportError:
        raise EngineError(
            "`analyticspro worker` needs dagster-celery, the `celery` extra: run `uv sync --extra celery` "
            "or `pip install 'analyticspro[celery]'`"
        ) from None
    _dagster_home()  # the worker reads and writes the runs' events in the same Dagster instance
    if args.engine:
        use_engine(args.engine)
    config = celery_config()
    queue = config["config_source"]["task_default_queue"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        yaml.safe_dump({"execution": {"config": config}}, handle)
        handle.flush()
        config_dir = get_config_dir(handle.name)  # a module with the broker settings, on the worker's PYTHONPATH
    celery = Path(sys.executable).parent / "celery"
    argv = [
        str(celery),
        "-A",
        "orchestration.celery_app",
        "worker",
        "--prefetch-multiplier=1",
        f"--concurrency={args.concurrency}",
        "--loglevel",
        args.log_level,
        "-Q",
        queue,
        "-n",
        get_worker_name(args.name),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (config_dir, env.get("PYTHONPATH")) if p)
    _say(f"Celery worker on queue {queue!r}, broker {_redacted(config['broker'])}, {args.concurrency} step(s) at once")
    sys.stdout.flush()
    os.execve(str(celery), argv, env)
    return 0  # not reached


def _redacted(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


def refuse_full_refresh_if_archived() -> None:
    """A full rebuild reads raw.events, which no longer holds the archived days: refuse instead of silently
    rebuilding the marts without them."""
    import psycopg2

    from orchestration.archive import archived_dates

    settings = get_settings()
    connection = psycopg2.connect(settings.database_url)
    try:
        days = archived_dates(connection)
    finally:
        connection.close()
    if days:
        raise ValueError(
            f"--full-refresh would rebuild the marts without the {len(days)} archived day(s) {days[0]} .. {days[-1]} "
            f"(they are in the cold tier). Restore them first: analyticspro restore --from {days[0]} --to {days[-1]}"
        )


def cmd_archive(args: argparse.Namespace) -> int:
    import dagster as dg

    from orchestration.warehouse import ensure_database

    ensure_database(get_settings())
    _dagster_home()
    from orchestration.definitions import build_definitions
    from orchestration.defs.storage import ARCHIVE_JOB

    defs = build_definitions()

    _say(f"moving fct_events days older than WARM_DAYS={get_settings().warm_days} to the cold tier")
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(ARCHIVE_JOB).execute_in_process(instance=instance, raise_on_error=False)
    if not result.success:
        _say(f"run {result.run_id} FAILED; see the messages above or open it in the Dagster UI (`make dev`)")
        return 1
    _say(f"run {result.run_id} succeeded")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from orchestration.archive import restore_dates

    first, last = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    restored = restore_dates(get_settings(), first, last, say=_say)
    _say(f"restored {len(restored)} day(s), {sum(restored.values()):,} fct_events rows")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from orchestration.privacy import forget
    from orchestration.warehouse import ensure_database

    ensure_database(get_settings())
    report = forget(get_settings(), args.user_id, args.requested_by, say=_say)
    _say(report.describe())
    _say("recorded in ops.erasure_requests; later loads drop this person's events (ops.suppressed_identities)")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    print_summary(date.fromisoformat(args.day) if args.day else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analyticspro",
        description="Self-hosted product analytics: Segment events -> dlt -> PostgreSQL -> dbt -> Redis, "
        "orchestrated by Dagster. Settings come from DATABASE_URL, REDIS_URL, EVENTS_BUCKET_URL, DAGSTER_HOME.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("setup", help="check PostgreSQL and Redis, create the database if missing")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("generate", help="write synthetic Segment events as Firehose-style batch files")
    p.add_argument("--out", help="folder to write into (default: EVENTS_BUCKET_URL when it is a folder)")
    p.add_argument("--days", type=int, default=30, help="days of history (default 30)")
    p.add_argument("--users", type=int, default=3000, help="distinct visitors (default 3000)")
    p.add_argument("--seed", type=int, default=42, help="random seed; same arguments, same bytes (default 42)")
    p.add_argument("--end-date", help="last UTC day of data, YYYY-MM-DD (default today)")
    p.add_argument("--clean", action="store_true", help="first delete OUT/events/ (earlier generated files)")
    p.add_argument(
        "--send",
        metavar="URL",
        help="send the events (up to now) to a collector at URL with the Python SDK instead of writing files",
    )
    p.add_argument("--write-key", help="with --send: the write key (default: ANALYTICSPRO_WRITE_KEYS' first, or local)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("load", help="load events into raw.events with dlt (no Dagster)")
    p.add_argument(
        "source",
        nargs="?",
        help="./folder, s3://bucket/prefix or kinesis://STREAM (default: EVENTS_BUCKET_URL, and the stream "
        "KINESIS_STREAM_NAME when set)",
    )
    p.add_argument(
        "--rescan",
        action="store_true",
        help="re-read every batch object, not only new ones (idempotent: a stored message id is never replaced)",
    )
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("materialize", help="materialize every asset through Dagster and print a summary")
    p.add_argument("--day", help="UTC day the summary reports, YYYY-MM-DD (default today)")
    p.add_argument(
        "--start-date",
        help="first daily partition to load and build, YYYY-MM-DD (with --end-date; default: every day with "
        "batch objects not loaded yet, and today)",
    )
    p.add_argument("--end-date", help="last daily partition to load and build, YYYY-MM-DD (inclusive)")
    p.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every incremental model from all events (after changing activity types or the session timeout)",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Dagster console log level (default INFO)",
    )
    p.add_argument(
        "--engine",
        choices=["postgres", "spark"],
        default=os.environ.get("ANALYTICSPRO_ENGINE") or "postgres",
        help="where the marts are built: postgres (default; ANALYTICSPRO_ENGINE) or spark (the lake under "
        "EVENTS_LAKE_URL, default data/lake; needs the spark extra and Java 17)",
    )
    p.set_defaults(func=cmd_materialize)

    p = sub.add_parser(
        "worker",
        help="run a Celery worker for DAGSTER_EXECUTOR=celery (start one or more on any machine with the same "
        "DAGSTER_PG_URL, CELERY_BROKER_URL and code)",
    )
    p.add_argument("--name", help="worker name (default: a unique one)")
    p.add_argument("--concurrency", type=int, default=1, help="steps this worker runs at once (default 1)")
    p.add_argument("--engine", choices=["postgres", "spark"], help="ANALYTICSPRO_ENGINE for the steps it runs")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("archive", help="move fct_events days older than WARM_DAYS to Parquet in the bucket")
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("restore", help="bring archived days back from the cold tier into PostgreSQL")
    p.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, help="last day, YYYY-MM-DD (inclusive)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("forget", help="GDPR erasure: delete one person from every tier, keep them out of later loads")
    p.add_argument("--user-id", required=True, help="the user id; every anonymous id seen with it goes too")
    p.add_argument(
        "--requested-by",
        default=os.environ.get("USER") or "cli",
        help="who asked, recorded in ops.erasure_requests (default: $USER)",
    )
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("summary", help="print events, people, today's metrics and the Redis keys")
    p.add_argument("--day", help="UTC day to report, YYYY-MM-DD (default today)")
    p.set_defaults(func=cmd_summary)

    from dashboards.config import DEFAULT_HOST, DEFAULT_PORT

    p = sub.add_parser("dashboard", help="serve the GraphQL API (/graphql) and the web dashboard (/)")
    _service_arguments(p, DEFAULT_HOST, DEFAULT_PORT, access_log=True)
    p.set_defaults(func=cmd_dashboard)

    from ingestion.collector.config import DEFAULT_HOST as COLLECTOR_HOST
    from ingestion.collector.config import DEFAULT_PORT as COLLECTOR_PORT

    p = sub.add_parser("collector", help="receive events over Segment's HTTP Tracking API (/v1/batch, /v1/track, ...)")
    _service_arguments(p, COLLECTOR_HOST, COLLECTOR_PORT, access_log=False)
    p.add_argument("--openapi", action="store_true", help="print the OpenAPI description and exit")
    p.set_defaults(func=cmd_collector)
    return parser


def _service_arguments(p: argparse.ArgumentParser, host: str, port: int, access_log: bool) -> None:
    """The flags of every server command (`serve` reads them)."""
    p.add_argument("--host", default=host, help=f"interface to listen on (default {host})")
    p.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1; one per core in production)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=access_log,
        help=f"log each request (default {'on' if access_log else 'off'})",
    )


def main(argv: list[str] | None = None) -> int:
    # A transitive dependency asks for sqlglot[rs]; the warning is not actionable for our users.
    warnings.filterwarnings("ignore", message=r"sqlglot\[rs\] is deprecated")
    args = build_parser().parse_args(argv)
    from orchestration.warehouse import ServiceUnavailable

    try:
        return args.func(args)
    except ServiceUnavailable as exc:
        print(f"analyticspro: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"analyticspro: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
