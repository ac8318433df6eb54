"""The dlt load as a Dagster asset: bucket of Segment batch files -> raw.events."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData

from ingestion.events import RAW_DATASET, check_bucket, ensure_raw_indexes, events_pipeline, segment_events
from ingestion.settings import get_settings


class RawTablesTranslator(DagsterDltTranslator):
    """Asset keys mirror [schema, table], so `raw/events` is also what the dbt source resolves to."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(
            key=dg.AssetKey([RAW_DATASET, data.resource.table_name or data.resource.name]),
            deps=[],
            group_name="ingestion",
            description=(
                "Segment events from every batch file under EVENTS_BUCKET_URL, validated and merged on "
                "message_id; invalid lines go to raw.rejected_events with the reason."
            ),
        )


def build_ingestion_defs() -> dg.Definitions:
    settings = get_settings()

    @dlt_assets(
        dlt_source=segment_events(settings.events_bucket_url),
        dlt_pipeline=events_pipeline(settings),
        name="load_events",
        dagster_dlt_translator=RawTablesTranslator(),
    )
    def load_events(context: dg.AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[Any]:
        # A fresh source and pipeline per run: a dlt source keeps state from the run that used it,
        # and the bucket and database are read from the environment when the run starts.
        run_settings = get_settings()
        check_bucket(run_settings.events_bucket_url)
        pipeline = events_pipeline(run_settings)
        yield from dlt.run(
            context=context,
            dlt_source=segment_events(run_settings.events_bucket_url),
            dlt_pipeline=pipeline,
        )
        ensure_raw_indexes(pipeline)

    return dg.Definitions(assets=[load_events], resources={"dlt": DagsterDltResource()})
