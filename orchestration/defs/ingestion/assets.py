"""The dlt load as a Dagster asset: every configured source (EVENTS_BUCKET_URL, and the Kinesis stream
KINESIS_STREAM_NAME when set) -> raw.events, through the same function `analyticspro load` runs.

Partitioned by UTC day: a run of partitions [start, end) loads the not-yet-loaded bucket objects of those days
(the date in the object's key folders, else its modification date), and the stream's new records when the
window includes today.

`lake/events` writes the loaded events to the lake (EVENTS_LAKE_URL, warehouse/lake.py) when the marts build on
Spark or EVENTS_LAKE_URL is set."""

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from dagster_dlt import DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData

from common.settings import get_settings
from ingestion.batches import PreparedLoad
from ingestion.events import configured_sources, load_events
from ingestion.pipeline import RAW_DATASET, events_pipeline, prepared_events
from orchestration.engines import current_engine
from orchestration.partitions import DAILY, run_scope, window_of
from orchestration.retries import retry_if_transient
from warehouse.lake import lake_url, sync_lake

EVENTS_KEY = dg.AssetKey([RAW_DATASET, "events"])
LAKE_EVENTS_KEY = dg.AssetKey(["lake", "events"])


def lake_enabled() -> bool:
    return current_engine() == "spark" or bool(os.environ.get("EVENTS_LAKE_URL"))


@dg.asset(
    key=LAKE_EVENTS_KEY,
    deps=[EVENTS_KEY],
    group_name="ingestion",
    kinds={"parquet"},
    description="raw.events as a Parquet table partitioned by event date under EVENTS_LAKE_URL "
    "(events/event_date=YYYY-MM-DD/events.parquet): each day whose rows changed since its last write is rewritten "
    "whole. What the marts read on the spark engine, and what Athena, Trino or DuckDB can read.",
)
def lake_events(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    try:
        result = sync_lake(get_settings(), say=context.log.info)
    except Exception as error:  # Postgres restarting, S3 throttling: retry with backoff
        retry_if_transient(context, error)
        raise
    context.log.info(result.describe())
    return dg.MaterializeResult(
        metadata={
            "lake": lake_url(),
            "days_written": result.days_written,
            "events_written": result.rows_written,
            "days_unchanged": result.days_unchanged,
            "days_removed": result.days_removed,
        }
    )


class RawTablesTranslator(DagsterDltTranslator):
    """Asset keys mirror [schema, table], so `raw/events` is also what the dbt source resolves to."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(
            key=dg.AssetKey([RAW_DATASET, data.resource.table_name or data.resource.name]),
            deps=[],
            group_name="ingestion",
            description=(
                "Segment events from EVENTS_BUCKET_URL (S3 or a folder) and the Kinesis stream KINESIS_STREAM_NAME, "
                "validated, enriched (clock skew, anonymized IP, user agent) and stored once per message_id; bad "
                "input goes to raw.rejected_events with the reason, loaded objects to raw.loaded_objects."
            ),
        )


def build_ingestion_defs() -> dg.Definitions:
    settings = get_settings()

    @dlt_assets(
        # a source instance only to describe the asset (its resource and table); runs build their own
        dlt_source=prepared_events(PreparedLoad(), Path(".")),
        dlt_pipeline=events_pipeline(settings),
        name="load_events",
        dagster_dlt_translator=RawTablesTranslator(),
        partitions_def=DAILY,
        # a backfill of many days is one run (one pass over the bucket listing, loads of INGEST_MAX_LINES)
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def load_events_asset(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        # Sources and the database are read from the environment when the run starts; a large backlog is
        # cut into bounded loads by load_events itself.
        window, scope = run_scope(context)
        context.log.info(f"loading the objects not loaded yet of {scope}")
        own = window_of(context)
        touched: set = set()
        totals = {"lines_read": 0, "events": 0, "new_events": 0, "duplicates": 0, "rejected": 0}
        per_source = {}
        for source in configured_sources():
            try:
                summary = load_events(source, window=window, progress=False, say=context.log.info)
            except Exception as error:  # a database restart or throttling: retry the step with backoff
                retry_if_transient(context, error)
                raise
            if summary is None:
                continue
            context.log.info(summary.describe())
            per_source[source] = summary.describe()
            touched |= summary.days
            totals["lines_read"] += summary.lines_read
            totals["events"] += summary.events
            totals["new_events"] += summary.stored
            totals["duplicates"] += summary.duplicates
            totals["rejected"] += summary.rejected
        # a new-data run is today's partition: the old days whose objects it loaded are recorded as materialized too
        for day in sorted(day for day in touched if own is None or not own[0] <= day < own[1]):
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=EVENTS_KEY,
                    partition=day.isoformat(),
                    description=f"late objects of {day} loaded by run {context.run.run_id}",
                )
            )
        yield dg.MaterializeResult(
            asset_key=EVENTS_KEY,
            metadata={
                **totals,
                "window": scope,
                "days_loaded": dg.MetadataValue.json(sorted(day.isoformat() for day in touched)),
                "sources": dg.MetadataValue.json(per_source),
            },
        )

    return dg.Definitions(assets=[load_events_asset, lake_events] if lake_enabled() else [load_events_asset])
