"""Load Segment batch files from a bucket (S3 or a local folder) into PostgreSQL `raw.events` with dlt.

Plain dlt, no Dagster: `python -m ingestion.events [SOURCE]` runs it alone; Dagster wraps the same
source and pipeline in `orchestration/defs/ingestion`.

- every line is validated; bad lines go to `raw.rejected_events` with the reason and the payload;
- rows `merge` on `message_id`, so re-delivered events and re-read files add nothing;
- the file listing is incremental on the object's modification time, so a run reads only objects
  that arrived since the last one (late objects with old keys included); `rescan=True` re-reads all.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import AwsCredentials
from dlt.common.runtime.collector import LogCollector
from dlt.common.storages.fsspec_filesystem import FileItemDict
from dlt.common.typing import TSecretStrValue
from dlt.destinations.impl.postgres.configuration import PostgresCredentials
from dlt.sources.filesystem import filesystem

from ingestion.settings import Settings, get_settings, normalize_bucket_url
from ingestion.validation import EVENT_COLUMNS, REJECTED_COLUMNS, Rejection, validate_line

PIPELINE_NAME = "analyticspro_events"
RAW_DATASET = "raw"
EVENT_FILE_GLOB = "**/*.jsonl*"


@configspec(init=False)
class PostgresUrlCredentials(PostgresCredentials):
    """dlt's Postgres credentials with the password optional: local servers often use trust or peer auth."""

    password: TSecretStrValue | None = None


def postgres_credentials(database_url: str) -> PostgresUrlCredentials:
    credentials = PostgresUrlCredentials()
    credentials.parse_native_representation(database_url)
    credentials.resolve()
    return credentials


def aws_credentials_from_env() -> AwsCredentials:
    """The standard AWS variables, so the same code runs against AWS and a local endpoint."""
    return AwsCredentials(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
    )


CHUNK_ROWS = 5000
EVENTS_TABLE = "events"
REJECTED_TABLE = "rejected_events"


def _read_file(file_item: FileItemDict) -> Iterator[Any]:
    """Rows of one batch file in chunks, each chunk marked with the table it belongs to.

    A file that cannot be read to its end (a truncated or corrupt gzip object) keeps the lines read
    before the damage and gets one rejection row saying where reading stopped; the other files load.
    """
    source = file_item["file_url"]
    rejected_at = datetime.now(UTC)
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    number = 0
    try:
        with file_item.open() as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                result = validate_line(line, source, f"line {number}")
                if isinstance(result, Rejection):
                    bad.append(result.as_row(rejected_at))
                else:
                    good.append(result)
                if len(good) >= CHUNK_ROWS:
                    yield dlt.mark.with_table_name(good, EVENTS_TABLE)
                    good = []
    except (OSError, EOFError, zlib.error) as exc:
        reason = (
            f"the object could not be read after line {number}: {type(exc).__name__}: {exc}. The object stays in "
            f"the bucket; replace it with a good copy and it is loaded on the next run"
        )
        bad.append(Rejection(source, f"after line {number}", reason, "").as_row(rejected_at))
    if good:
        yield dlt.mark.with_table_name(good, EVENTS_TABLE)
    if bad:
        yield dlt.mark.with_table_name(bad, REJECTED_TABLE)


@dlt.source(name="segment", max_table_nesting=0)
def segment_events(bucket_url: str, rescan: bool = False) -> Any:
    """Segment-spec events from every `.jsonl` / `.jsonl.gz` object under `bucket_url`."""
    if bucket_url.startswith("s3://"):
        files = filesystem(bucket_url=bucket_url, credentials=aws_credentials_from_env(), file_glob=EVENT_FILE_GLOB)
    else:
        files = filesystem(bucket_url=bucket_url, file_glob=EVENT_FILE_GLOB)
    if not rescan:
        files.apply_hints(incremental=dlt.sources.incremental("modification_date"))

    @dlt.transformer(name=EVENTS_TABLE, table_name=EVENTS_TABLE)
    def events(file_items: list[FileItemDict]) -> Iterator[Any]:
        for file_item in file_items:
            yield from _read_file(file_item)

    resource = files | events
    # One read of each file feeds two tables; each gets its own columns, key and contract.
    contract = {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}
    for table, columns, key in (
        (EVENTS_TABLE, EVENT_COLUMNS, "message_id"),
        (REJECTED_TABLE, REJECTED_COLUMNS, "rejection_id"),
    ):
        resource.apply_hints(
            table_name=table,
            columns=[{"name": name, **spec} for name, spec in columns.items()],  # fresh copies: dlt edits hints
            primary_key=key,
            write_disposition="merge",
            schema_contract=contract,
            create_table_variant=True,
        )
    return resource


def events_pipeline(settings: Settings | None = None, progress: bool = False) -> dlt.Pipeline:
    """The pipeline into the `raw` schema of DATABASE_URL; progress=True logs counts every 2 s to stdout."""
    settings = settings or get_settings()
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=str(settings.dlt_pipelines_dir),
        destination=dlt.destinations.postgres(credentials=postgres_credentials(settings.database_url)),
        dataset_name=RAW_DATASET,
        progress=LogCollector(log_period=2.0, dump_system_stats=False) if progress else None,
    )


def ensure_raw_indexes(pipeline: dlt.Pipeline) -> None:
    """Index raw.events on its merge key: each merge then touches only the rows it replaces instead of
    scanning the table, and the database itself refuses a duplicate message_id. The time, load id and
    anonymous id indexes let the incremental dbt models read only new, recent or re-stitched rows."""
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(EVENTS_TABLE)
        rows = client.execute_sql("select to_regclass(%s) is not null", table.replace('"', ""))
        if not rows or not rows[0][0]:
            return
        client.execute_sql(f"create unique index if not exists events_message_id_key on {table} (message_id)")
        client.execute_sql(f'create index if not exists events_timestamp_idx on {table} ("timestamp")')
        client.execute_sql(f"create index if not exists events_load_id_idx on {table} (_dlt_load_id)")
        client.execute_sql(f"create index if not exists events_anonymous_id_idx on {table} (anonymous_id)")


@dataclass(frozen=True)
class LoadSummary:
    source: str
    rows_by_table: dict[str, int]
    load_ids: list[str]

    @property
    def events(self) -> int:
        return self.rows_by_table.get(EVENTS_TABLE, 0)

    @property
    def rejected(self) -> int:
        return self.rows_by_table.get(REJECTED_TABLE, 0)

    def describe(self) -> str:
        return (
            f"read from {self.source}: {self.events + self.rejected:,} lines -> "
            f"{self.events:,} events loaded (merged on message_id), {self.rejected:,} rejected "
            f"(see raw.rejected_events)"
        )


class BucketNotFound(ValueError):
    """The events bucket is a local folder that does not exist (a typo would otherwise load nothing)."""


def check_bucket(bucket_url: str) -> None:
    """Fail early, with what to do, when a local bucket folder is missing; remote buckets are checked by listing."""
    if "://" in bucket_url and not bucket_url.startswith("file://"):
        return
    folder = bucket_url.removeprefix("file://")
    if not os.path.isdir(folder):
        raise BucketNotFound(
            f"the events folder {folder} does not exist. Set EVENTS_BUCKET_URL (or pass SOURCE) to the folder or "
            f"s3://bucket/prefix holding your .jsonl/.jsonl.gz batch files, or create sample data with "
            f"`analyticspro generate --out {folder}`."
        )


def load_events(source: str | None = None, *, rescan: bool = False, progress: bool = True) -> LoadSummary:
    """Run the pipeline once over `source` (default: EVENTS_BUCKET_URL)."""
    settings = get_settings()
    bucket_url = normalize_bucket_url(source) if source else settings.events_bucket_url
    check_bucket(bucket_url)
    pipeline = events_pipeline(settings, progress=progress)
    info = pipeline.run(segment_events(bucket_url, rescan=rescan))
    ensure_raw_indexes(pipeline)
    counts = dict(pipeline.last_trace.last_normalize_info.row_counts) if pipeline.last_trace else {}
    rows = {table: n for table, n in counts.items() if not table.startswith("_dlt")}
    return LoadSummary(source=bucket_url, rows_by_table=rows, load_ids=list(info.loads_ids))


if __name__ == "__main__":
    print(load_events(sys.argv[1] if len(sys.argv) > 1 else None).describe())
