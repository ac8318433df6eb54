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
    analyticspro query SPEC [--engine E]    answer an insights question (a JSON file, or - for stdin) as JSON
    analyticspro dashboard [--host --port]  serve the GraphQL API and the web dashboard
    analyticspro collector [--host --port]  receive events over Segment's HTTP API (any Segment SDK)

One module per command group (services, worker, events, materialize, warehouse); a command's module, with its
imports, is loaded only when that command runs: `--help` is instant and only materialize, archive and worker load
Dagster.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from common.db import ServiceUnavailable
from dashboards.config import DEFAULT_HOST, DEFAULT_PORT
from ingestion.collector.config import DEFAULT_HOST as COLLECTOR_HOST
from ingestion.collector.config import DEFAULT_PORT as COLLECTOR_PORT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analyticspro",
        description="Self-hosted product analytics: Segment events -> dlt -> PostgreSQL -> dbt -> Redis, "
        "orchestrated by Dagster. Settings come from DATABASE_URL, REDIS_URL, EVENTS_BUCKET_URL, DAGSTER_HOME.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("setup", help="check PostgreSQL and Redis, create the database if missing")
    p.set_defaults(func="services:cmd_setup")

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
    p.set_defaults(func="events:cmd_generate")

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
    p.add_argument(
        "--sweep",
        action="store_true",
        help="list every batch object now, not only the keys after the bucket's cursor: finds objects copied into old "
        "folders at once (a load also sweeps when the last sweep is older than BUCKET_SWEEP_MINUTES, default 60)",
    )
    p.set_defaults(func="events:cmd_load")

    p = sub.add_parser(
        "realtime",
        help="load new events as they arrive (bucket, stream) and keep the Redis hot metrics seconds behind them",
    )
    p.add_argument(
        "source",
        nargs="*",
        help="what to follow: ./folder, s3://bucket/prefix, kinesis://STREAM (default: as `load`)",
    )
    p.add_argument(
        "--interval",
        type=float,
        help="seconds between two looks (default REALTIME_POLL_SECONDS, 1; on S3 each look is a LIST request)",
    )
    p.add_argument("--ticks", type=int, help="stop after this many looks (default: run until interrupted)")
    p.set_defaults(func="events:cmd_realtime")

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
    p.set_defaults(func="materialize:cmd_materialize")

    p = sub.add_parser(
        "worker",
        help="run a Celery worker for DAGSTER_EXECUTOR=celery (start one or more on any machine with the same "
        "DAGSTER_PG_URL, CELERY_BROKER_URL and code)",
    )
    p.add_argument("--name", help="worker name (default: a unique one)")
    p.add_argument("--concurrency", type=int, default=1, help="steps this worker runs at once (default 1)")
    p.add_argument("--engine", choices=["postgres", "spark"], help="ANALYTICSPRO_ENGINE for the steps it runs")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func="worker:cmd_worker")

    p = sub.add_parser("archive", help="move fct_events days older than WARM_DAYS to Parquet in the bucket")
    p.set_defaults(func="materialize:cmd_archive")

    p = sub.add_parser("restore", help="bring archived days back from the cold tier into PostgreSQL")
    p.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, help="last day, YYYY-MM-DD (inclusive)")
    p.set_defaults(func="warehouse:cmd_restore")

    p = sub.add_parser("forget", help="GDPR erasure: delete one person from every tier, keep them out of later loads")
    p.add_argument("--user-id", required=True, help="the user id; every anonymous id seen with it goes too")
    p.add_argument(
        "--requested-by",
        default=os.environ.get("USER") or "cli",
        help="who asked, recorded in ops.erasure_requests (default: $USER)",
    )
    p.set_defaults(func="warehouse:cmd_forget")

    p = sub.add_parser("summary", help="print events, people, today's metrics and the Redis keys")
    p.add_argument("--day", help="UTC day to report, YYYY-MM-DD (default today)")
    p.set_defaults(func="warehouse:cmd_summary")

    p = sub.add_parser(
        "query",
        help="answer an insights question (funnel, trends, retention, paths, stickiness, lifecycle) given as a JSON "
        "spec; prints the JSON answer (README: Insights)",
    )
    p.add_argument("spec", help="a JSON file holding the spec, or - to read it from standard input")
    p.add_argument(
        "--no-refresh",
        action="store_true",
        help="answer from the columnar copy as it is (default: first bring it up to date from PostgreSQL)",
    )
    p.add_argument("--pretty", action="store_true", help="indent the JSON answer")
    p.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="duckdb (default): in this process; spark: the same questions on Apache Spark, local or SPARK_REMOTE",
    )
    p.set_defaults(func="insights:cmd_query")

    p = sub.add_parser("dashboard", help="serve the GraphQL API (/graphql) and the web dashboard (/)")
    _service_arguments(p, DEFAULT_HOST, DEFAULT_PORT, access_log=True)
    p.set_defaults(func="services:cmd_dashboard")

    p = sub.add_parser("collector", help="receive events over Segment's HTTP Tracking API (/v1/batch, /v1/track, ...)")
    _service_arguments(p, COLLECTOR_HOST, COLLECTOR_PORT, access_log=False)
    p.add_argument("--openapi", action="store_true", help="print the OpenAPI description and exit")
    p.set_defaults(func="services:cmd_collector")
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
    # pyspark warns about pandas 3 at import; `query --engine spark` uses none of its pandas functions
    warnings.filterwarnings("ignore", message=r"PySpark does not yet fully support pandas")
    args = build_parser().parse_args(argv)
    module, name = args.func.split(":")
    try:
        # only the command's own group is imported: `--help` and the quick commands never load Dagster or dbt
        command = getattr(importlib.import_module(f"cli.{module}"), name)
        return command(args)
    except (ServiceUnavailable, ValueError) as exc:
        print(f"analyticspro: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
