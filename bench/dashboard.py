"""The dashboard benchmark: `analyticspro dashboard` over the marts of the 10M-event marts benchmark, loaded by
wrk (50 connections for 30 s) with the queries the web page sends when it opens — the overview (daily metrics,
funnel, retention, revenue), the query builder's catalogue and today's hot metrics — once with preset ranges
(cached in Redis, what every dashboard open after the first gets) and once with custom ranges (never cached:
every request is computed, from the service's in-process copy of the marts). Then query-builder questions over all
the events, uncached, one at a time.

wrk (Debian's package; installed here when missing and we are root) runs on the same two cores as the service, so
the figures are a floor. BENCH_DASHBOARD_SECONDS (default 30) and BENCH_DASHBOARD_CONNECTIONS (default 50) size
the load; BENCH_DASHBOARD_WORKERS (default 2) the service's worker processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg2
import redis

from bench.environ import median_ms
from common.redis_keys import HotKeys
from common.settings import get_settings, utc_today
from dashboards.config import get_dashboard_settings
from dashboards.readonly import drop_readonly_role, ensure_readonly_role
from insights.store import sync_store
from testing.dashboard_server import dashboard_process
from testing.db import restore_environ, set_environ
from warehouse.summary import read_daily_metrics

OVERVIEW = """query Overview($range: DateRangeInput) {
  dailyMetrics(metrics: ["dau", "wau", "mau"], dateRange: $range) { date metric value }
  funnel(name: "default", dateRange: $range) { steps { index name persons conversionFromPrevious dropOffRate } }
  retention(grain: "week", dateRange: $range) { cohorts { cohortStart size rates } }
  revenue(dateRange: $range) { month mrr newMrr expansionMrr contractionMrr churnedMrr reactivationMrr }
}"""
CATALOGUE = "query C { catalogue { events { name properties } personFields operators } }"
HOT = "query Hot { hotMetrics { date signups dau events revenue activeLast5m updatedAt source } }"
INSIGHT = """query I($e: String!, $f: [FilterInput!], $g: String!, $r: DateRangeInput, $s: Float) {
  insight(event: $e, filters: $f, groupBy: $g, dateRange: $r, sample: $s) { rows { bucket group events } estimated }
}"""

# POSTs the bodies in turn (shared by the collector benchmark)
WRK_REQUESTS = """
local bodies = {{}}
local i = 0
{bodies}
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "{path}", {{["Content-Type"] = "application/json",
    ["Authorization"] = "{authorization}"}}, bodies[i])
end
"""
WRK_SCRIPT = """
local errors = 0
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then errors = errors + 1 end
end
"""

# wrk's summary as one JSON line (appended to each benchmark's script; done() runs in a Lua state of its own, so
# it sees only wrk's own counters: non-2xx/3xx statuses and socket errors)
WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "requests": %d, "seconds": %.3f, '
    .. '"non_2xx_or_errors": %d, "socket_errors": %d}\\n',
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("wrk")
    if not found:
        raise SystemExit(
            "the dashboard and collector benchmarks need wrk: `sudo apt-get install wrk` (Debian/Ubuntu), then re-run"
        )
    return found


def _body(query: str, variables: dict | None = None) -> str:
    return json.dumps({"query": query, "variables": variables or {}})


def _load(url: str, token: str, bodies: list[str], seconds: int, connections: int, root: Path) -> dict:
    lua = "\n".join(f"bodies[{n}] = {json.dumps(body)}" for n, body in enumerate(bodies, start=1))
    script = root / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    requests = WRK_REQUESTS.format(bodies=lua, path="/graphql", authorization=f"Bearer {token}")
    script.write_text(requests + WRK_SCRIPT + WRK_DONE)
    result = subprocess.run(
        [
            wrk_path(),
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    figures = json.loads(line.removeprefix("RESULT "))
    figures["rps"] = round(figures["requests"] / figures["seconds"], 1)
    return figures


def _drain(client: httpx.Client, url: str) -> None:
    """Wait until the service answers /health within 50 ms (the load generator's queued requests are done)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = time.perf_counter()
        client.get(f"{url}/health", timeout=30)
        if time.perf_counter() - started < 0.05:
            return
        time.sleep(1)


def _publish_hot_metrics(settings) -> None:
    """Today's hot metrics in Redis, as the realtime job publishes them (this dataset is bulk-copied, not loaded)."""
    keys = HotKeys(settings.redis_key_prefix)
    connection = psycopg2.connect(settings.database_url)
    try:
        values = read_daily_metrics(connection, utc_today(), ("signups", "dau", "events", "revenue"))
    finally:
        connection.close()
    client = redis.Redis.from_url(settings.redis_url)
    for name, value in values.items():
        client.set(keys.metric(name, utc_today()), str(value), ex=3600)
    client.set(keys.updated_at, datetime.now(UTC).isoformat(timespec="seconds"), ex=3600)


def bench_dashboard(settings, say: Callable[[str], None]) -> dict:
    """Against the marts benchmark's database (its settings), which must hold the built marts."""
    seconds = int(os.environ.get("BENCH_DASHBOARD_SECONDS", "30"))
    connections = int(os.environ.get("BENCH_DASHBOARD_CONNECTIONS", "50"))
    workers = int(os.environ.get("BENCH_DASHBOARD_WORKERS", "2"))
    token = uuid.uuid4().hex + uuid.uuid4().hex
    root = Path(tempfile.mkdtemp(prefix="analyticspro-bench-dashboard-"))
    env = {
        "DATABASE_URL": settings.database_url,
        "ANALYTICSPRO_API_TOKENS": token,
        "ANALYTICSPRO_READONLY_USER": f"analyticspro_reader_bench_{uuid.uuid4().hex[:6]}",
    }
    saved = set_environ(env)
    dashboard_settings = get_dashboard_settings()
    ensure_readonly_role(dashboard_settings)
    try:
        _publish_hot_metrics(settings)
        # the query builder is answered by the insights engine: its columnar copy of those events, written now
        say(sync_store(settings, say=say).describe())
        # one client for every timed request: a new httpx client per call costs 30-40 ms of set-up here
        with dashboard_process(env, root / "dashboard.log", workers) as url, httpx.Client(timeout=120) as client:
            headers = {"Authorization": f"Bearer {token}"}

            def ask(query: str, variables: dict | None = None) -> dict:
                response = client.post(f"{url}/graphql", json={"query": query, "variables": variables or {}},
                                      headers=headers, timeout=120)  # fmt: skip
                payload = response.json()
                if response.status_code != 200 or payload.get("errors"):
                    raise SystemExit(f"the dashboard answered {response.status_code}: {response.text[:500]}")
                return payload

            today = utc_today()
            preset = [_body(OVERVIEW, {"range": {"preset": "LAST_30_DAYS"}}), _body(CATALOGUE), _body(HOT)]
            for body in preset:  # warm the cache (what the first dashboard open does)
                ask(json.loads(body)["query"], json.loads(body)["variables"])
            # custom ranges: 60 different windows, none cached
            custom = [
                _body(
                    OVERVIEW,
                    {
                        "range": {
                            "from": (today - timedelta(days=30 + n)).isoformat(),
                            "to": (today - timedelta(days=n)).isoformat(),
                        }
                    },
                )  # fmt: skip
                for n in range(60)
            ]
            say(f"dashboard: {connections} connections for {seconds}s, cached (preset ranges), {workers} workers")
            cached = _load(url, token, preset, seconds, connections, root)
            say(f"  cached: p50 {cached['p50_ms']:.1f} ms, p95 {cached['p95_ms']:.1f} ms, {cached['rps']:,.0f} req/s")
            say(f"dashboard: {connections} connections for {seconds}s, uncached (custom ranges, never cached)")
            uncached = _load(url, token, custom + [_body(HOT)], seconds, connections, root)
            say(
                f"  uncached: p50 {uncached['p50_ms']:.1f} ms, p95 {uncached['p95_ms']:.1f} ms, "
                f"{uncached['rps']:,.0f} req/s"
            )

            _drain(client, url)  # requests wrk left queued finish before anything is timed
            window = {"from": (today - timedelta(days=89)).isoformat(), "to": today.isoformat()}
            seed_question = {  # "Show me purchase_completed where user.plan = 'pro' grouped by date", 90 days
                "e": "purchase_completed", "f": [{"field": "user.plan", "op": "=", "value": "pro"}], "g": "day",
                "r": window,
            }  # fmt: skip
            answer = ask(INSIGHT, seed_question)["data"]["insight"]
            assert answer["rows"], "the seed question found no purchases"
            insight_ms = median_ms(lambda: ask(INSIGHT, seed_question))
            pages = {"e": "page", "f": [], "g": "week", "r": window}
            pages_ms = median_ms(lambda: ask(INSIGHT, pages), runs=3)
            by_property = {"e": "purchase_completed", "f": [{"field": "event.revenue", "op": ">", "value": "100"}],
                           "g": "event.billing_period", "r": window}  # fmt: skip
            property_ms = median_ms(lambda: ask(INSIGHT, by_property), runs=3)
            say(
                f"  query builder, uncached: seed question {insight_ms:.0f} ms, all page views by week "
                f"{pages_ms:.0f} ms, purchases over 100 by billing period "
                f"{property_ms:.0f} ms"
            )
    finally:
        drop_readonly_role(dashboard_settings)
        shutil.rmtree(root, ignore_errors=True)
        restore_environ(saved)
    return {
        "p50_ms": round(cached["p50_ms"], 2),
        "p95_ms": round(cached["p95_ms"], 2),
        "p99_ms": round(cached["p99_ms"], 2),
        "rps": cached["rps"],
        "uncached_p50_ms": round(uncached["p50_ms"], 2),
        "uncached_p95_ms": round(uncached["p95_ms"], 2),
        "uncached_p99_ms": round(uncached["p99_ms"], 2),
        "uncached_rps": uncached["rps"],
        "errors": cached["non_2xx_or_errors"] + uncached["non_2xx_or_errors"],
        "connections": connections,
        "seconds": seconds,
        "workers": workers,
        "insight_uncached_ms": round(insight_ms, 1),
        "insight_page_views_by_week_ms": round(pages_ms, 1),
        "insight_by_property_ms": round(property_ms, 1),
    }


def main() -> None:
    """`python -m bench.dashboard`: this benchmark alone, against DATABASE_URL's marts (e.g. a database kept with
    BENCH_MARTS_KEEP=1); prints its figures, writes nothing."""
    figures = bench_dashboard(get_settings(), lambda message: print(f"[bench {datetime.now():%H:%M:%S}] {message}"))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
