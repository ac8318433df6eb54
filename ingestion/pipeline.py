"""The dlt pipeline every source loads through: PostgreSQL `raw` schema, tuned for event volumes.

- Arrow tables in, CSV + COPY out, normalize in this process: dlt does no per-row Python work (STACK-NOTES).
- `raw.events` merges with dlt's `insert-only` strategy on `message_id`: an event already stored is never
  replaced, so the first copy received wins across loads and sources; within a load the sources keep the
  first copy themselves (ingestion/batches.py).
- `raw.rejected_events` merges the same way on a key of (source, position): re-reading a bad line adds nothing.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.configuration import configspec
from dlt.common.runtime.collector import LogCollector
from dlt.common.typing import TSecretStrValue
from dlt.destinations.impl.postgres.configuration import PostgresCredentials

from common.settings import Settings, get_settings
from ingestion.batches import PreparedLoad, write_load_csv
from ingestion.validation import EVENT_COLUMNS, REJECTED_COLUMNS

PIPELINE_NAME = "analyticspro_events"
RAW_DATASET = "raw"
EVENTS_TABLE = "events"
REJECTED_TABLE = "rejected_events"
OBJECTS_TABLE = "loaded_objects"
INSERT_ONLY = {"disposition": "merge", "strategy": "insert-only"}

OBJECT_COLUMNS: dict[str, dict[str, Any]] = {
    "object_url": {"data_type": "text", "nullable": False, "primary_key": True},
    "size_bytes": {"data_type": "bigint", "nullable": False, "primary_key": True},
    "modified_at": {"data_type": "timestamp", "nullable": False, "primary_key": True},
    "lines_read": {"data_type": "bigint", "nullable": False},
    "events": {"data_type": "bigint", "nullable": False},
    "rejected": {"data_type": "bigint", "nullable": False},
    "loaded_at": {"data_type": "timestamp", "nullable": False},
}

# Events reach dlt as files it does not normalize, so its own two columns are declared (and filled in by
# ingestion/batches.py): the load id, which the incremental dbt models read, and the row key.
DLT_COLUMNS: dict[str, dict[str, Any]] = {
    "_dlt_load_id": {"data_type": "text", "nullable": False},
    "_dlt_id": {"data_type": "text", "nullable": False, "row_key": True},
}

TABLES: dict[str, dict[str, dict[str, Any]]] = {
    EVENTS_TABLE: {**EVENT_COLUMNS, **DLT_COLUMNS},
    REJECTED_TABLE: REJECTED_COLUMNS,
    OBJECTS_TABLE: OBJECT_COLUMNS,
}

# dlt settings for throughput (see ../shared/STACK-NOTES.md); any of them can be overridden by the env var.
TUNING = {
    # one normalize worker, in this process: the events arrive as CSV files written by the chunk workers
    # (ingestion/chunks.py), which dlt only links into the package, so a pool has nothing to spread; and dlt's pool
    # forks this process, which is unsafe once other threads run here (the prefetching reader, DuckDB's, Arrow's):
    # a forked worker died mid-load in CI that way (BrokenProcessPool)
    "NORMALIZE__WORKERS": "1",
    # rejections arrive as Arrow tables: give them dlt's two columns (the dbt models read new rows by load id)
    "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID": "true",
    "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_ID": "true",
    "DATA_WRITER__FILE_MAX_ITEMS": "200000",
    "DATA_WRITER__BUFFER_MAX_ITEMS": "50000",
    "LOAD__WORKERS": "2",
    # free the disk a load used once it is committed: the CSV files and the staging table's rows
    "LOAD__DELETE_COMPLETED_JOBS": "true",
    "LOAD__TRUNCATE_STAGING_DATASET": "true",
    "RUNTIME__DLTHUB_TELEMETRY": "false",  # also when run from outside the project root
}


@configspec(init=False)
class PostgresUrlCredentials(PostgresCredentials):
    """dlt's Postgres credentials with the password optional: local servers often use trust or peer auth."""

    password: TSecretStrValue | None = None


def postgres_credentials(database_url: str) -> PostgresUrlCredentials:
    credentials = PostgresUrlCredentials()
    credentials.parse_native_representation(database_url)
    credentials.resolve()
    return credentials


def apply_table_hints(resource: Any) -> Any:
    """One resource feeds three tables; each gets its own columns, key, insert-only merge and a frozen
    contract (a column nobody declared is an error, not a silent schema change).

    Events are the resource's own table: their items are imported CSV files, which dlt cannot route to a
    table variant. Rejections and loaded objects are variants, created first so they do not inherit the
    events columns (a variant starts as a copy of the resource's hints)."""
    contract = {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}
    for table in (REJECTED_TABLE, OBJECTS_TABLE, EVENTS_TABLE):
        columns = TABLES[table]
        resource.apply_hints(
            table_name=table,
            columns=[{"name": name, **spec} for name, spec in columns.items()],  # fresh copies: dlt edits hints
            primary_key=[name for name, spec in columns.items() if spec.get("primary_key")],
            write_disposition=INSERT_ONLY,
            schema_contract=contract,
            create_table_variant=table != EVENTS_TABLE,
        )
    return resource


class ImportFolder:
    """A folder for the CSV files of one run, next to dlt's own working folder (dlt hard-links them into
    its load package, so they must be on the same filesystem); emptied when the run starts and ends."""

    def __init__(self, pipeline: dlt.Pipeline):
        self.path = Path(pipeline.working_dir) / "import"

    def __enter__(self) -> Path:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def events_item(table: pa.Table, folder: Path) -> Any:
    """A dlt item for a table of events rows: a CSV file in the current load package's format."""
    load_id = dlt.current.load_package_state()["load_id"]
    path = write_load_csv(table, load_id, folder)
    return dlt.mark.with_file_import(str(path), "csv", items_count=table.num_rows)


def events_pipeline(settings: Settings | None = None, progress: bool = False) -> dlt.Pipeline:
    """The pipeline into the `raw` schema of DATABASE_URL; progress=True logs counts every 2 s to stdout."""
    settings = settings or get_settings()
    for key, value in TUNING.items():
        os.environ.setdefault(key, value)
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=str(settings.dlt_pipelines_dir),
        # create_indexes=False: no unique index on dlt's random `_dlt_id`, which nothing reads; the
        # indexes that matter are ours (ensure_raw_indexes)
        destination=dlt.destinations.postgres(
            credentials=postgres_credentials(settings.database_url), create_indexes=False
        ),
        dataset_name=RAW_DATASET,
        progress=LogCollector(log_period=2.0, dump_system_stats=False) if progress else None,
    )


def ensure_raw_indexes(pipeline: dlt.Pipeline) -> None:
    """Index raw.events for the incremental dbt models: time, load id and anonymous id (the primary key on
    message_id is dlt's). An index dlt made is reused, one missing is created."""
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(EVENTS_TABLE)
        rows = client.execute_sql("select to_regclass(%s) is not null", table.replace('"', ""))
        if not rows or not rows[0][0]:
            return
        # the first load builds the indexes over every row at once: give the sort room (this session only)
        client.execute_sql("set maintenance_work_mem = '512MB'")
        client.execute_sql(f"create unique index if not exists events_message_id_key on {table} (message_id)")
        client.execute_sql(f'create index if not exists events_timestamp_idx on {table} ("timestamp")')
        client.execute_sql(f"create index if not exists events_load_id_idx on {table} (_dlt_load_id)")
        client.execute_sql(f"create index if not exists events_anonymous_id_idx on {table} (anonymous_id)")
        # the incremental models look for the loads written since their last read (dbt macros/incremental_scope.sql)
        loads = client.make_qualified_table_name("_dlt_loads")
        client.execute_sql(f"create index if not exists dlt_loads_inserted_at_idx on {loads} (inserted_at)")
        # listings after a bucket's cursor read the loaded objects after it, in byte order (ingestion/listing.py)
        objects = client.make_qualified_table_name(OBJECTS_TABLE)
        exists = client.execute_sql("select to_regclass(%s) is not null", objects.replace('"', ""))
        if exists and exists[0][0]:
            client.execute_sql(
                f'create index if not exists loaded_objects_url_idx on {objects} (object_url collate "C")'
            )


def new_rows(pipeline: dlt.Pipeline, table: str, load_ids: list[str]) -> int:
    """Rows a set of loads added to a table (insert-only: a duplicate adds nothing)."""
    if not load_ids:
        return 0
    with pipeline.sql_client() as client:
        name = client.make_qualified_table_name(table)
        exists = client.execute_sql("select to_regclass(%s) is not null", name.replace('"', ""))
        if not exists or not exists[0][0]:
            return 0
        rows = client.execute_sql(f"select count(*) from {name} where _dlt_load_id = any(%s)", list(load_ids))
        return int(rows[0][0]) if rows else 0


@dlt.source(name="segment", max_table_nesting=0)
def prepared_events(load: PreparedLoad, import_folder: Path) -> Any:
    """The dlt source of every load, whatever the origin: events as imported CSV files, rejections, loaded
    objects, and (Kinesis) the shard positions, which dlt commits in the same load package as the rows."""

    @dlt.resource(name=EVENTS_TABLE, table_name=EVENTS_TABLE)
    def events() -> Iterator[Any]:
        if load.positions is not None:
            dlt.current.resource_state()["shards"] = load.positions
        for table in load.events:
            yield events_item(table, import_folder)
        for table in load.rejected:
            yield dlt.mark.with_table_name(table, REJECTED_TABLE)
        if load.objects:
            yield dlt.mark.with_table_name(load.objects, OBJECTS_TABLE)

    return apply_table_hints(events())


def committed_positions(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """The shard positions of the last committed load (restored from the database if the local state is gone)."""
    state = pipeline.state.get("sources", {}).get("segment", {}).get("resources", {}).get(EVENTS_TABLE, {})
    return copy.deepcopy(state.get("shards", {}))
