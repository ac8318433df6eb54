"""`analyticspro materialize` and `archive`: runs through Dagster (recorded in DAGSTER_HOME, shown in the UI)."""

from __future__ import annotations

import argparse
from datetime import date

from cli.warehouse import print_lake_summary, print_summary
from common.console import say
from common.db import ensure_database, ensure_redis
from common.settings import get_settings
from dashboards.readonly import ensure_reader
from ingestion.events import check_bucket, configured_sources
from orchestration.runs import run_archive, run_materialize
from warehouse.archive import refuse_full_refresh_if_archived


def cmd_materialize(args: argparse.Namespace) -> int:
    settings = get_settings()
    ensure_database(settings)
    ensure_redis(settings)
    ensure_reader()
    if args.full_refresh:
        refuse_full_refresh_if_archived(settings)
    sources = configured_sources()
    say(f"event sources: {', '.join(sources)}")
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
    ok = run_materialize(
        window=window, log_level=args.log_level, full_refresh=args.full_refresh, engine=args.engine, say=say
    )
    if ok:
        print_summary(date.fromisoformat(args.day) if args.day else None)
        if args.engine == "spark":
            print_lake_summary()
    return 0 if ok else 1


def cmd_archive(args: argparse.Namespace) -> int:
    ensure_database(get_settings())
    return 0 if run_archive(say=say) else 1
