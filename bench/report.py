"""Render bench/results.json as the Markdown table the README quotes: `python -m bench.report`."""

from __future__ import annotations

import json
import re
import sys

from bench.run import RESULTS


def markdown(results: dict) -> str:
    g, i, m, h = results["generate"], results["ingest"], results["materialize"], results["hot_metrics"]
    rows = [
        (
            "`ingest`",
            f"`analyticspro load` of {i['events']:,} events (gzipped batch files) into a fresh database: validation, "
            "clock skew, IP anonymization, user agents, dedup, dlt, insert-only merge, raw indexes",
            f"{i['pipeline_events_per_s']:,} events/s ({i['pipeline_s']} s)",
            f"plain psycopg `COPY` of the same lines (parsed, no validation) into a typed table with `jsonb` "
            f"columns: {i['copy_events_per_s']:,} events/s ({i['copy_s']} s)",
            f"{i['ratio']}×",
        ),
        (
            "`ingest`",
            "the loader's peak memory (main process) for a tenth of the events and for all of them",
            f"{i['peak_rss_mb_tenth']:,} MB / {i['peak_rss_mb_full']:,} MB",
            "",
            f"{i['memory_ratio_for_10x_events']}× for 10× the events",
        ),
        ("`generate`", "synthetic events written", f"{g['events_per_s']:,} events/s ({g['files']} files)", "", ""),
        (
            "`materialize`",
            "the whole job through Dagster: an incremental load that finds nothing new, `dbt build` (models, unit "
            f"and data tests) over {m['events_in_marts']:,} events, the Redis push",
            f"{m['seconds']} s",
            "",
            "",
        ),
        (
            "`hot_metrics`",
            "a dashboard read of today's three numbers, p50 (p99)",
            f"Redis {h['redis_read_p50_us']:.0f} µs ({h['redis_read_p99_us']:.0f} µs)",
            f"the same from `analytics.daily_metrics`: {h['postgres_read_p50_us']:.0f} µs; today's DAU computed "
            f"live from `fct_events`: {h['live_dau_from_fct_events_p50_us'] / 1000:.1f} ms",
            f"Redis at {h['redis_speedup_vs_mart_p50']}× and {h['redis_speedup_vs_live_p50']:.0f}× their speed",
        ),
    ]
    if "freshness" in results:
        f = results["freshness"]
        if "sensor_only_s" in f:
            rows.append(
                (
                    "`freshness`",
                    f"a batch file of page views put in the bucket, until today's `events` in Redis includes them, "
                    f"with `dagster dev` and `analyticspro realtime` running (a look every {f['poll_s']:g} s: "
                    f"{f['s3_list_calls_per_day']:,} S3 LISTs a day), median of {f['samples']} (worst)",
                    f"{f['event_to_redis_s']} s ({f['event_to_redis_max_s']} s)",
                    f"Dagster's bucket sensor alone: {f['sensor_only_s']} s ({f['sensor_only_max_s']} s); the "
                    f"target: {f['target_s']} s",
                    f"{round(f['event_to_redis_s'] / f['sensor_only_s'], 2)}× the sensor's, "
                    f"{round(f['event_to_redis_s'] / f['target_s'], 2)}× the target",
                )
            )
        else:
            rows.append(
                (
                    "`freshness`",
                    f"a batch file of page views put in the bucket with `dagster dev` running, until today's `events` "
                    f"in Redis includes them (bucket sensor, then a `realtime_load` run: load and hot metrics), median "
                    f"of {f['samples']} (worst)",
                    f"{f['event_to_redis_s']} s ({f['event_to_redis_max_s']} s)",
                    f"the target: {f['target_s']} s",
                    f"{round(f['event_to_redis_s'] / f['target_s'], 2)}× the target",
                )
            )
    if "sensor" in results:
        rows += _sensor_rows(results["sensor"])
    if "marts" in results:
        k = results["marts"]
        rows += [
            (
                "`marts`",
                f"`dbt run` of every model: a full build over {k['events']:,} events ({k['days']} days), then the "
                f"incremental build after one new hour ({k['new_hour_events']:,} events)",
                f"full {k['full_build_s']} s; incremental {k['incremental_build_s']} s",
                f"the full build: {k['full_build_s']} s",
                f"{k['incremental_ratio']}×",
            ),
            (
                "`marts`",
                "`dbt test` (data and unit tests): after the full build; after the hour, of the rows the hour wrote "
                "(`test_scope: changed`, as Dagster's runs for new data) and of every row",
                f"{k['full_tests_s']} s; {k['incremental_tests_s']} s"
                + (f" / {k['incremental_tests_all_rows_s']} s" if "incremental_tests_all_rows_s" in k else ""),
                f"every row: {k['incremental_tests_all_rows_s']} s" if "incremental_tests_all_rows_s" in k else "",
                f"{round(k['incremental_tests_s'] / k['incremental_tests_all_rows_s'], 2)}×"
                if k.get("incremental_tests_all_rows_s")
                else "",
            ),
            (
                "`marts`",
                "the default funnel's models rebuilt from scratch (step rows, persons, steps, breakdown)",
                f"{k['funnel_mart_build_s']} s ({k['funnel_step_rows']:,} step rows)",
                "",
                "",
            ),
            (
                "`marts`",
                "an ad-hoc 4-step funnel (first entry, greedy 14-day window) over the maintained step table, "
                "median of 5",
                f"{k['funnel_adhoc_ms']:,} ms (straight from `fct_events`: {k['funnel_adhoc_fct_events_ms']:,} ms)",
                f"DuckDB, the same query over all events in Parquet: {k['funnel_duckdb_ms']:,} ms; over the "
                f"step rows in Parquet: {k['funnel_duckdb_step_rows_ms']:,} ms",
                f"{k['funnel_adhoc_vs_duckdb']}× and {k['funnel_adhoc_vs_duckdb_step_rows']}× DuckDB's time",
            ),
        ]
    if "dashboard" in results and "error" not in results["dashboard"]:
        d = results["dashboard"]
        rows += [
            (
                "`dashboard`",
                f"the web dashboard's queries (overview, catalogue, hot metrics) with preset ranges, served from the "
                f"Redis answer cache: {d['connections']} clients for {d['seconds']} s (wrk, same 2 cores, "
                f"{d['workers']} workers), p50 / p95 / p99",
                f"{d['p50_ms']} / {d['p95_ms']} / {d['p99_ms']} ms, {d['rps']:,} req/s",
                f"the same with custom ranges (never cached): {d['uncached_p50_ms']} / "
                f"{d['uncached_p95_ms']} / {d['uncached_p99_ms']} ms, {d['uncached_rps']:,} req/s",
                f"p95 {round(d['p95_ms'] / 50, 2)}× the 50 ms target; "
                f"{round(d['rps'] / d['uncached_rps'], 1)}× the uncached throughput",
            ),
            (
                "`dashboard`",
                "query builder, uncached, over all the marts' events (90 days): \"purchase_completed where "
                "user.plan = 'pro' by day\", median of 5",
                f"{d['insight_uncached_ms']:,} ms",
                "the target: 800 ms",
                f"{round(d['insight_uncached_ms'] / 800, 2)}× the target",
            ),
        ]
        if "insight_page_views_by_week_sampled_ms" in d:  # measured before the query builder became the engine's
            rows.append(
                (
                    "`dashboard`",
                    "query builder (on PostgreSQL, before the insights engine): every page view by week, exact and "
                    "on a 10% sample (estimated, with margins); purchases over 100 by billing period (two JSON "
                    "properties)",
                    f"exact {d['insight_page_views_by_week_ms']:,} ms; sampled "
                    f"{d['insight_page_views_by_week_sampled_ms']:,} ms; by property "
                    f"{d['insight_by_property_ms']:,} ms",
                    "",
                    f"sample {d['insight_sampled_speedup']}× faster",
                )
            )
        else:
            rows.append(
                (
                    "`dashboard`",
                    "query builder (the insights engine's trends): every page view by week, exact; purchases over 100 "
                    "by billing period (two JSON properties)",
                    f"{d['insight_page_views_by_week_ms']:,} ms; by property {d['insight_by_property_ms']:,} ms",
                    "",
                    "",
                )
            )
    if "collector" in results:
        c = results["collector"]
        levels = sorted(int(key[1 : -len("_events_per_s")]) for key in c if re.fullmatch(r"c\d+_events_per_s", key))
        curve = ", ".join(f"{n}: {c[f'c{n}_events_per_s']:,} ({c[f'c{n}_p99_ms']:.0f} ms)" for n in levels)
        rows.append(
            (
                "`collector`",
                f"`/v1/batch` requests of 100 events (wrk on loopback, same 2 cores), local-folder sink with fsync, "
                f"{c['workers']} worker, {c['seconds_per_level']} s per concurrency; the most events/s with p99 under "
                f"{c['target_p99_ms']:.0f} ms (at {c['connections']} connections). Events/s (p99) by connections: "
                f"{curve}; {c['events_in_sink']:,} events in {c['objects_in_sink']:,} objects, {c['non_2xx']} errors",
                f"{c['events_per_s']:,} events/s, p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms",
                f"a bare ASGI app on the same server (reads the body, answers 200): {c['ceiling_events_per_s']:,} "
                f"events/s; the target: {c['target_events_per_s']:,} events/s",
                f"{c['ratio_to_ceiling']}× the bare server; {round(c['events_per_s'] / c['target_events_per_s'], 1)}× "
                f"the target",
            )
        )
        if "flush0_events_per_s" in c:
            same = c["flush0_connections"]
            rows.append(
                (
                    "`collector`",
                    f"the flush interval's trade-off: {c['flush0_connections']} connections with "
                    f"`COLLECTOR_FLUSH_MS=0` (write as soon as the previous write is done) instead of 50",
                    f"{c['flush0_events_per_s']:,} events/s, p50 {c['flush0_p50_ms']:.1f} ms, p99 "
                    f"{c['flush0_p99_ms']:.1f} ms, {c['flush0_objects_per_s']} objects/s",
                    f"50 ms: {c[f'c{same}_events_per_s']:,} events/s, p99 "
                    f"{c[f'c{same}_p99_ms']:.1f} ms, at most 20 objects/s "
                    f"({c['objects_per_s']} over the run)",
                    "",
                )
            )
    if "scale" in results:
        k = results["scale"]
        rows += [
            (
                "`scale`",
                f"a full build of every model (`dbt run`) over the same {k['events']:,} events: on Spark (local mode, "
                f"{k['cores']} cores, Parquet lake) against PostgreSQL (`--full-refresh`)",
                f"Spark {k['spark_build_s']} s (lake export before it: {k['lake_export_s']} s)",
                f"PostgreSQL: {k['postgres_build_s']} s",
                f"{k['spark_vs_postgres']}×",
            ),
            (
                "`scale`",
                "the same Spark build on 1 core and on 2 (`SPARK_CORES`)",
                f"2 cores {k['spark_2core_s']} s",
                f"1 core: {k['spark_1core_s']} s",
                f"{k['spark_2core_speedup_vs_1core']}× faster on 2",
            ),
        ]
    if "insights" in results:
        rows += _insights_rows(results["insights"])
    if "growth" in results:
        rows += _growth_rows(results["growth"])
    lines = ["| benchmark | what is measured | result | baseline in the same run | ratio |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _growth_rows(n: dict) -> list[tuple[str, ...]]:
    sizes = " / ".join(f"{events / 1e6:.3g}M" for events in n["events"])
    rows = [
        (
            "`growth`",
            f"a new hour ({n['hour_events']:,} events) built incrementally over {sizes} events of history, an hour "
            "after the previous hour's run (the newest events of one generated history; docs/growth.svg)",
            " / ".join(f"{s} s" for s in n["incremental_s"]),
            "full builds: " + " / ".join(f"{s} s" for s in n["full_build_s"]),
            f"{n['incremental_flatness']}× from the smallest history to the largest ({n['events_growth']}× the "
            f"events; full build {n['full_build_growth']}×)",
        ),
    ]
    if "first_hour_s" in n:
        rows.append(
            (
                "`growth`",
                f"the hour before it ({n['first_hour_events']:,} events), the first after the full build and "
                "VACUUM ANALYZE",
                " / ".join(f"{s} s" for s in n["first_hour_s"]),
                "",
                f"{n['first_hour_flatness']}× from the smallest history to the largest",
            )
        )
    if "incremental_disk_read_mb" in n:
        for hour, label in (("incremental", "the second hour"), ("first_hour", "the first hour")):
            rows.append(
                (
                    "`growth`",
                    f"what {label} read: PostgreSQL's reads from outside its buffers (MB, seconds); the disk's (MB)",
                    " / ".join(
                        f"{mb:,.0f} MB in {s} s"
                        for mb, s in zip(n[f"{hour}_pg_read_mb"], n[f"{hour}_pg_read_s"], strict=True)
                    ),
                    "disk: " + " / ".join(f"{mb:,.0f} MB" for mb in n[f"{hour}_disk_read_mb"]),
                    "",
                )
            )
    return rows


def _sensor_rows(n: dict) -> list[tuple[str, ...]]:
    # the S3 tick less moto's own time for its one request (moto sorts the whole bucket; S3 serves StartAfter by index)
    client_ratio = round(
        (n["tick_ms_s3"] - n["s3_list_request_ms"]) / (n["tick_ms_s3_small"] - n["s3_list_request_ms_small"]), 2
    )
    listing = (
        "one bucket sensor tick, as `dagster dev` runs it, with {objects:,} objects loaded ({where}): a new object "
        "found and its run requested, median of {ticks} (a tick with nothing new)"
    )
    return [
        (
            "`sensor`",
            listing.format(objects=n["objects"], where="a folder", ticks=n["ticks"]),
            f"{n['tick_ms']} ms ({n['idle_tick_ms']} ms)",
            f"the same with {n['objects_small']:,} objects: {n['tick_ms_small']} ms; a full listing (a sweep, and "
            f"every tick before the cursor): {n['sweep_ms']:,} ms",
            f"{n['tick_ratio_100k_vs_1k']}× the small bucket, {n['tick_vs_full_listing']}× a full listing",
        ),
        (
            "`sensor`",
            listing.format(
                objects=n["objects"], where="S3 on a moto server, which sorts every key per request", ticks=n["ticks"]
            ),
            f"{n['tick_ms_s3']} ms ({n['idle_tick_ms_s3']} ms)",
            f"the same with {n['objects_small']:,} objects: {n['tick_ms_s3_small']} ms; moto's own time for the "
            f"tick's one request, made alone: {n['s3_list_request_ms']} ms ({n['s3_list_request_ms_small']} ms with "
            f"{n['objects_small']:,}); a full listing: {n['sweep_ms_s3']:,} ms",
            f"{n['tick_ratio_100k_vs_1k_s3']}× the small bucket; without moto's request time {client_ratio}×",
        ),
    ]


def _insights_rows(n: dict) -> list[tuple[str, ...]]:
    return [
        (
            "`insights`",
            f"the columnar copy of {n['events']:,} events ({n['days']} days): written in full from PostgreSQL, and "
            f"loaded into the engine (memory: {n['engine_memory_mb']:,} MB); then taking a new hour "
            f"({n['new_hour_events']:,} events: the copy and the engine)",
            f"build {n['build_s']} s, load {n['load_s']} s; new hour {n['refresh_s']} s",
            f"the full build: {n['build_s']} s",
            f"{n['refresh_vs_build']}× (target ≤ 0.1)",
        ),
        (
            "`insights`",
            "an ad-hoc 4-step funnel (page / → signup → trial → purchase where plan = pro, an exclusion, 14 days, 90 "
            f"days of entries), median of 5; persons by step {n['funnel_persons_by_step']}",
            f"{n['funnel_ms']:,} ms",
            f"DuckDB, a hand-written query over its own table sorted by (person, time): {n['funnel_duckdb_ms']:,} ms",
            f"{n['funnel_vs_duckdb']}× (target ≤ 3); {round(n['funnel_ms'] / 1000, 2)}× the 1,000 ms target",
        ),
        (
            "`insights`",
            f"the same funnel over a quarter of the persons ({n['funnel_quarter_events']:,} events, same days), "
            "asked in turns with the funnel over all of them, medians of 9",
            f"{n['funnel_quarter_ms']:,} ms",
            f"all the events: {n.get('funnel_paired_ms', n['funnel_ms']):,} ms",
            f"{n['funnel_growth']}× for {round(n['events'] / n['funnel_quarter_events'], 1)}× the events "
            "(target ≤ 4.5)",
        ),
        (
            "`insights`",
            "trends (2 series, a formula, a breakdown by plan, 90 days by day); 12-week retention; 5-step paths; "
            "medians of 5",
            f"{n['trends_breakdown_ms']:,} ms; {n['retention_ms']:,} ms; {n['paths_ms']:,} ms",
            "the targets: 500 ms; 1,000 ms; 2,000 ms",
            f"{round(n['trends_breakdown_ms'] / 500, 2)}×; {round(n['retention_ms'] / 1000, 2)}×; "
            f"{round(n['paths_ms'] / 2000, 2)}×",
        ),
    ]


if __name__ == "__main__":
    print(markdown(json.loads(RESULTS.read_text())))
    sys.exit(0)
