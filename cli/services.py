"""`analyticspro setup`, `dashboard` and `collector`: the services and their set-up (no Dagster, no dbt: quick)."""

from __future__ import annotations

import argparse
import json
import os

import uvicorn

from common.console import say
from common.db import ensure_database, ensure_redis
from common.settings import get_settings
from dashboards.config import dashboard_url, get_dashboard_settings
from dashboards.readonly import ensure_reader
from ingestion.collector.config import get_collector_settings
from ingestion.collector.openapi import openapi_document
from ingestion.collector.sinks import sink_from_url
from orchestration.instance import prepare_dagster_home


def cmd_setup(args: argparse.Namespace) -> int:
    settings = get_settings()
    created = ensure_database(settings)
    say(f"PostgreSQL ok: database {settings.database_name!r} {'created' if created else 'exists'}")
    ensure_redis(settings)
    say(f"Redis ok at {settings.redis_url}")
    reader = ensure_reader()
    say(f"read-only role {reader!r}: SELECT on the analytics schema (dashboards API, Metabase, Superset)")
    return 0


def serve(factory: str, args: argparse.Namespace, **options: object) -> int:
    """Run an ASGI application factory on uvicorn with the service flags every server command takes."""
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


def cmd_dashboard(args: argparse.Namespace) -> int:
    dashboard_settings = get_dashboard_settings()  # fails early on bad config
    prepare_dagster_home()  # exports run as Dagster runs on this instance
    if not os.environ.get("DASHBOARD_DATABASE_URL"):
        try:
            ensure_reader()
        except Exception as exc:  # noqa: BLE001 - the API may still connect; say why the grants were not refreshed
            say(f"could not refresh the read-only role's grants ({exc}); run `analyticspro setup` as the owner")
    say(f"dashboard at {dashboard_url(args.host, args.port)}")
    say(f"GraphQL API at http://{args.host}:{args.port}/graphql (GraphiQL in a browser; Bearer token required)")
    say(f"reading the marts as {dashboard_settings.redacted_database_url}")
    return serve("dashboards.app:app_from_env", args)


def cmd_collector(args: argparse.Namespace) -> int:
    if args.openapi:
        print(json.dumps(openapi_document(), indent=2))
        return 0
    collector_settings = get_collector_settings()  # fails early on bad config
    sink_from_url(collector_settings.sink_url)  # and on a bad sink URL
    base = f"http://{args.host}:{args.port}"
    say(f"collector at {base}/v1/batch (Segment's HTTP API; point an SDK's host at {base})")
    if collector_settings.local_write_key:
        say(f"write key (local, from .analyticspro/write_key): {collector_settings.write_keys[0]}")
    else:
        say(f"{len(collector_settings.write_keys)} write key(s) from ANALYTICSPRO_WRITE_KEYS")
    say(f"writing to {collector_settings.sink_url}; spool {collector_settings.spool_dir}")
    return serve(
        "ingestion.collector.app:app_from_env",
        args,
        proxy_headers=True,
        forwarded_allow_ips=collector_settings.forwarded_allow_ips,
        timeout_graceful_shutdown=30,
    )
