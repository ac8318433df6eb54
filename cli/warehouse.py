"""`analyticspro restore`, `forget` and `summary`: the storage tiers, erasure, and what the warehouse holds (no
Dagster: quick)."""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta

from common.console import say
from common.db import ensure_database
from common.settings import get_settings, utc_today
from dashboards.config import dashboard_url
from warehouse.archive import restore_dates
from warehouse.erasure import forget
from warehouse.lake import lake_marts, lake_merge_keys, lake_url, merge_query
from warehouse.summary import summarize


def print_lake_summary() -> None:
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
    merged = {model: key for model, key in lake_merge_keys(lake).items() if model in marts}
    if merged:
        # merge-on-read marts: the rows an hour recomputed wait in <model>__delta until the next compaction
        lines += ["", f"{', '.join(sorted(merged))}: merge the base with its delta (rows recomputed since compaction):"]
        lines += [f'  duckdb -c "{merge_query(model, key, lake)}"' for model, key in sorted(merged.items())]
    print("\n".join(lines), flush=True)


def _example_funnel(last: date | None) -> str:
    """A funnel spec over the 30 days up to `last` (the data's last day), as one line of JSON."""
    last = last or utc_today()
    spec = {
        "kind": "funnel",
        "from": (last - timedelta(days=29)).isoformat(),
        "to": last.isoformat(),
        "window_days": 7,
        "steps": [{"page": "/pricing"}, {"event": "user_signed_up"}, {"event": "purchase_completed"}],
        "breakdown": "event.utm_source",
    }
    return json.dumps(spec, separators=(",", ":"))


def print_summary(day: date | None = None) -> None:
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
        "  # any question, exact, in under a second (README: Insights): e.g. a funnel of the last 30 days",
        f"  echo '{_example_funnel(s.last_day)}' \\",
        "    | .venv/bin/analyticspro query --pretty -",
        "  make dashboard               # the web dashboard (with the insights builder) and GraphQL API, then open:",
        f"    {dashboard_url()}",
        "  make collector               # Segment's HTTP API on http://127.0.0.1:8060: set any Segment SDK's host to",
        "                               # it; its write key is printed (ANALYTICSPRO_WRITE_KEYS, else a local one)",
        "  .venv/bin/analyticspro materialize --engine spark   # the same marts on Spark, Parquet in the lake",
        "                               # (README: Scaling out: Spark and distributed Dagster)",
    ]
    print("\n".join(lines), flush=True)


def cmd_restore(args: argparse.Namespace) -> int:
    first, last = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    restored = restore_dates(get_settings(), first, last, say=say)
    say(f"restored {len(restored)} day(s), {sum(restored.values()):,} fct_events rows")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    ensure_database(get_settings())
    report = forget(get_settings(), args.user_id, args.requested_by, say=say)
    say(report.describe())
    say("recorded in ops.erasure_requests; later loads drop this person's events (ops.suppressed_identities)")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    print_summary(date.fromisoformat(args.day) if args.day else None)
    return 0
