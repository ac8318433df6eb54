"""The insights benchmark: ad-hoc questions over every event at the marts benchmark's size (BENCH_MARTS_EVENTS,
default 10M, over BENCH_MARTS_DAYS, default 90: the same generator, seed and bulk copy), answered by the insights
engine; none of them is configured in dbt and nothing is cached between runs.

1. the dbt models the copy reads (fct_events, dim_users, dim_event_properties) are built in full, then the columnar
   copy (`build_s`) and the engine's load (`load_s`);
2. one new hour of events arrives (the marts benchmark's held-back hour), the models build incrementally, and the copy
   and the engine take it (`refresh_s`, against `build_s`);
3. the questions, each the median of several runs: a 4-step funnel with a step filter and an exclusion
   (`funnel_ms`), the same funnel hand-written for DuckDB over its own table of the events sorted by (person, time)
   (`funnel_duckdb_ms`; both must give the same persons), the funnel over a quarter of the persons (about 2.5M events,
   same 90 days: `funnel_growth`, both engines asked in turns, PAIRED_RUNS each), trends (2 series, a formula, a
   breakdown, 90 days by day), 12-week retention and 5-step paths.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import duckdb

from bench.environ import median_ms, say_for
from bench.marts import _dbt, copy_events, load_raw_events
from ingestion.pipeline import ensure_raw_indexes, events_pipeline
from insights.engine import Engine
from insights.store import Manifest, store_dir, sync_store
from testing.db import own_warehouse

_say = say_for("insights")
MODELS = "+fct_events +dim_users +dim_event_properties"
PAIRED_RUNS = 9  # funnel_growth: the funnel over all the persons and over a quarter of them, in turns

# the hand-written DuckDB funnel: the same definition (docs/metrics.md) over a plain table, no engine
DUCKDB_FUNNEL = """
with e1 as (
    select person_id, min({'t': event_at, 'm': message_id}) as m from ev
    where event_type = 'page' and page_path = '/' and event_at >= $1 and event_at < $2 group by person_id
),
f1 as (select person_id, m.t as t1, m.m as m1, m.t + interval 14 day as deadline from e1),
e2 as (
    select f.person_id, min({'t': ev.event_at, 'm': ev.message_id}) as m from f1 as f join ev using (person_id)
    where ev.event_name = 'user_signed_up' and ev.event_at >= f.t1 and ev.event_at <= f.deadline
      and ev.message_id <> f.m1 group by f.person_id
),
f2 as (select f1.*, e2.m.t as t2, e2.m.m as m2 from f1 left join e2 using (person_id)),
e3 as (
    select f.person_id, min({'t': ev.event_at, 'm': ev.message_id}) as m from f2 as f join ev using (person_id)
    where f.t2 is not null and ev.event_name = 'trial_started' and ev.event_at >= f.t2 and ev.event_at <= f.deadline
      and ev.message_id not in (f.m1, f.m2) group by f.person_id
),
f3 as (select f2.*, e3.m.t as t3, e3.m.m as m3 from f2 left join e3 using (person_id)),
e4 as (
    select f.person_id, min(ev.event_at) as t4 from f3 as f join ev using (person_id)
    where f.t3 is not null and ev.event_name = 'purchase_completed' and ev.plan = 'pro'
      and ev.event_at >= f.t3 and ev.event_at <= f.deadline and ev.message_id not in (f.m1, f.m2, f.m3)
    group by f.person_id
),
f4 as (select f3.*, e4.t4 from f3 left join e4 using (person_id)),
excluded as (
    select distinct f.person_id from f4 as f join ev using (person_id)
    where f.t2 is not null and ev.event_name = 'subscription_canceled' and ev.event_at > f.t2
      and ev.event_at < coalesce(f.t4, f.deadline)
)
select count(t1), count(t2), count(t3), count(t4) from f4 where person_id not in (select person_id from excluded)
"""


def specs(first: str, last: str, retention_last: str) -> dict[str, dict]:
    return {
        "funnel": {
            "kind": "funnel",
            "from": first,
            "to": last,
            "window_days": 14,
            "steps": [
                {"page": "/"},
                {"event": "user_signed_up"},
                {"event": "trial_started"},
                {"event": "purchase_completed", "where": [{"field": "event.plan", "op": "=", "value": "pro"}]},
            ],
            "exclusions": [{"event": "subscription_canceled", "after_step": 2, "before_step": 4}],
        },
        "trends": {
            "kind": "trends",
            "from": first,
            "to": last,
            "interval": "day",
            "series": [
                {"event": "purchase_completed", "math": "sum", "property": "revenue"},
                {"event": "purchase_completed", "math": "persons"},
            ],
            "formula": "A / B",
            "breakdown": "event.plan",
        },
        "retention": {
            "kind": "retention",
            "from": first,
            "to": retention_last,
            "period": "week",
            "periods": 12,
            "start": {"event": "user_signed_up"},
            "return": {"event": "any"},
        },
        "paths": {"kind": "paths", "from": first, "to": last, "start": {"page": "/pricing"}, "steps": 5},
    }


def _quarter_copy(source: Path, target: Path) -> int:
    """The copy with a quarter of the persons (by a hash of the person id), every day: ~2.5M events, same days."""
    manifest = Manifest.read(source)
    (target / "events").mkdir(parents=True, exist_ok=True)
    duck = duckdb.connect()
    names = [name for entry in [*manifest.days.values(), manifest.persons] for name in entry["files"]]
    for name in names:
        duck.execute(
            f"copy (select * from read_parquet($1) where hash(person_id) % 4 = 0) to '{target / name}' "
            "(format parquet)",
            [str(source / name)],
        )
    shutil.copy(source / manifest.catalogue["file"], target / manifest.catalogue["file"])
    rows = duck.execute(
        "select count(*) from (select distinct message_id from read_parquet($1))",
        [[str(target / name) for entry in manifest.days.values() for name in entry["files"]]],
    ).fetchone()[0]
    duck.close()
    manifest.write(target)
    return rows


def bench_insights(target_events: int, days: int) -> dict:
    with own_warehouse("insights", keep=bool(os.environ.get("BENCH_MARTS_KEEP"))) as (settings, root):
        return _bench(settings, root, target_events, days)


def _bench(settings, root: Path, target_events: int, days: int) -> dict:
    base, held_back, connection = load_raw_events(settings, root, target_events, days)
    _say(f"building {MODELS} (dbt) over {base:,} events")
    models_s = _dbt("run", "--select", MODELS)
    _say(f"models built in {models_s:.0f}s; the columnar copy, in full")
    started = time.perf_counter()
    sync_store(settings, say=_say)
    build_s = time.perf_counter() - started
    engine = Engine()
    before_mb = _rss_mb()
    started = time.perf_counter()
    engine.refresh()
    load_s = time.perf_counter() - started
    engine_memory_mb = _rss_mb() - before_mb
    _say(f"copy built in {build_s:.1f}s, engine loaded {engine.events:,} events in {load_s:.1f}s; a new hour arrives")

    copy_events(connection, held_back)
    ensure_raw_indexes(events_pipeline(settings))
    connection.close()
    incremental_models_s = _dbt("run", "--select", MODELS)
    started = time.perf_counter()
    synced = sync_store(settings, say=_say)
    engine.refresh()
    refresh_s = time.perf_counter() - started
    _say(f"new hour: models {incremental_models_s:.0f}s, copy and engine {refresh_s:.2f}s ({synced.describe()})")
    _say(f"  copy by phase (s): {synced.phases}; engine by phase (s): {engine.phases}")

    first, last = min(engine.loaded), max(engine.loaded)
    questions = specs(first, last, (date.fromisoformat(last) - timedelta(weeks=12)).isoformat())
    figures: dict[str, float] = {}
    answers = {}
    for name, spec in questions.items():
        answers[name] = engine.ask(spec, max_days=days + 1)
        figures[f"{name}_ms"] = median_ms(lambda spec=spec: engine.ask(spec, max_days=days + 1), runs=5)
        _say(f"{name}: {figures[f'{name}_ms']:.0f} ms")
    persons = [step["persons"] for step in answers["funnel"]["steps"]]

    # DuckDB alone: the events in a table of its own, sorted by (person, time), and the funnel written by hand
    folder = store_dir(settings)
    entries = Manifest.read(folder).days.values()
    files = [str(folder / name) for entry in entries for name in entry["files"]]
    duck = duckdb.connect()
    duck.execute(  # the latest version of each event (a day may be its first file and the rows changed since)
        "create table ev as select person_id, make_timestamp(epoch_us(event_at)) as event_at, message_id, event_type, "
        "event_name, page_path, json_extract_string(properties, '$.plan') as plan "
        "from read_parquet($1, filename = true) "
        "qualify row_number() over (partition by message_id order by list_position($1, filename) desc) = 1 "
        "order by person_id, event_at",
        [files],
    )
    bounds = [_midnight(first), _midnight(last, 1)]
    duck_answer = list(duck.execute(DUCKDB_FUNNEL, bounds).fetchone())
    assert duck_answer == persons, f"the engine's funnel {persons} != DuckDB's hand-written query {duck_answer}"
    duckdb_ms = median_ms(lambda: duck.execute(DUCKDB_FUNNEL, bounds).fetchone(), runs=5, warm=True)
    duck.close()
    _say(f"DuckDB hand-written funnel: {duckdb_ms:.0f} ms (the engine: {figures['funnel_ms']:.0f} ms)")

    quarter_folder = root / "insights-quarter"
    quarter_rows = _quarter_copy(folder, quarter_folder)
    quarter = Engine(quarter_folder)
    quarter.refresh()
    # the two engines in turns, so that the machine's drift (these machines are noisy) falls on both alike
    paired: dict[Engine, list[float]] = {engine: [], quarter: []}
    for run in range(PAIRED_RUNS + 1):
        for which in (engine, quarter):
            started = time.perf_counter()
            which.ask(questions["funnel"], max_days=days + 1)
            if run:  # the first round warms both
                paired[which].append((time.perf_counter() - started) * 1000)
    full_ms, quarter_ms = (statistics.median(paired[which]) for which in (engine, quarter))
    shutil.rmtree(quarter_folder, ignore_errors=True)
    _say(f"a quarter of the persons ({quarter_rows:,} events): funnel {quarter_ms:.0f} ms (all of them, in turns: "
         f"{full_ms:.0f} ms)")  # fmt: skip
    return {
        "events": engine.events,
        "days": len(engine.loaded),
        "models_build_s": round(models_s, 1),
        "build_s": round(build_s, 1),
        "load_s": round(load_s, 1),
        "engine_memory_mb": round(engine_memory_mb),
        "new_hour_events": len(held_back),
        "refresh_s": round(refresh_s, 2),
        "refresh_vs_build": round(refresh_s / build_s, 3),
        "funnel_ms": round(figures["funnel_ms"], 1),
        "funnel_duckdb_ms": round(duckdb_ms, 1),
        "funnel_vs_duckdb": round(figures["funnel_ms"] / duckdb_ms, 2),
        "funnel_quarter_events": quarter_rows,
        "funnel_quarter_ms": round(quarter_ms, 1),
        "funnel_paired_ms": round(full_ms, 1),
        "funnel_growth": round(full_ms / quarter_ms, 2),
        "trends_breakdown_ms": round(figures["trends_ms"], 1),
        "retention_ms": round(figures["retention_ms"], 1),
        "paths_ms": round(figures["paths_ms"], 1),
        "funnel_persons_by_step": persons,
    }


def _rss_mb() -> float:
    """This process's resident memory in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _midnight(day: str, plus_days: int = 0) -> datetime:
    return datetime.combine(date.fromisoformat(day) + timedelta(days=plus_days), clock())


def main() -> None:
    """`python -m bench.insights`: this benchmark alone (prints its figures, writes nothing)."""
    events = int(os.environ.get("BENCH_MARTS_EVENTS", "10000000"))
    print(json.dumps(bench_insights(events, int(os.environ.get("BENCH_MARTS_DAYS", "90"))), indent=2))


if __name__ == "__main__":
    main()
