"""The lake: validated, deduplicated events as a Parquet table partitioned by event date, under EVENTS_LAKE_URL
(a folder, or s3://bucket/prefix).

    <EVENTS_LAKE_URL>/events/event_date=YYYY-MM-DD/events.parquet    every raw.events row of that UTC day
    <EVENTS_LAKE_URL>/ops/lake_days/lake_days.parquet                the manifest: each day's row count, newest
                                                                     load id and when its file was written
    <EVENTS_LAKE_URL>/marts/<model>/                                 the marts, when built by the spark engine
    <EVENTS_LAKE_URL>/marts/<model>__delta/                          a person-keyed mart's rows recomputed since
                                                                     its last compaction (read_lake_table merges)

The events files have the columns and types of the cold tier's archive files (warehouse/archive.py: the
raw.events columns; jsonb as JSON text, timestamps as UTC microseconds), so Spark, DuckDB, Athena or Trino read
both the same way. PostgreSQL stays the point where events are deduplicated: `sync_lake` writes each day whose
rows changed since its last write (new loads, late events, `analyticspro forget`), as one file replaced whole
(a rename on a folder, a single PUT on S3), so a reader never sees half a day and a re-run writes nothing new.
The manifest (ops.lake_days, copied to the lake after every change) is how the Spark build finds the days that
changed since it last read them, and rewrites only those partitions of fct_events.
Days archived to the cold tier keep their lake file (the lake keeps every day; the warm window is PostgreSQL's).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from psycopg2 import sql

from common.db import PERSON_COLUMNS, table_exists
from common.ops import ensure_ops_tables
from common.settings import PROJECT_ROOT, Settings, normalize_bucket_url
from common.storage import arrow_type, bucket_filesystem, filesystem
from warehouse.archive import archived_dates, table_columns

DEFAULT_LAKE = PROJECT_ROOT / "data" / "lake"
EVENTS_FOLDER = "events"
FILE_NAME = "events.parquet"
MANIFEST = "ops/lake_days/lake_days.parquet"
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("event_date", pa.date32()),
        pa.field("row_count", pa.int64()),
        pa.field("max_load_id", pa.string()),
        pa.field("written_at", pa.timestamp("us", tz="UTC")),
    ]
)


def lake_url(explicit: str | None = None) -> str:
    """EVENTS_LAKE_URL (a local folder made absolute, or s3://…), else <project>/data/lake."""
    url = explicit or os.environ.get("EVENTS_LAKE_URL") or str(DEFAULT_LAKE)
    return normalize_bucket_url(url).rstrip("/")


def day_url(lake: str, day: date) -> str:
    return f"{lake}/{EVENTS_FOLDER}/event_date={day.isoformat()}/{FILE_NAME}"


def manifest_url(lake: str) -> str:
    return f"{lake}/{MANIFEST}"


def _write_manifest(cursor, fs: Any, lake: str) -> None:
    """ops.lake_days as the lake's manifest (one small file replaced whole): what Spark reads to find changed days."""
    cursor.execute("select event_date, row_count, max_load_id, written_at from ops.lake_days order by event_date")
    columns = list(zip(*cursor.fetchall(), strict=True)) or [[] for _ in MANIFEST_SCHEMA]
    table = pa.table(
        [pa.array(values, field.type) for values, field in zip(columns, MANIFEST_SCHEMA, strict=True)],
        schema=MANIFEST_SCHEMA,
    )
    _write(fs, manifest_url(lake), table)


@dataclass
class LakeSync:
    lake: str
    days_written: int = 0
    rows_written: int = 0
    days_removed: int = 0
    days_unchanged: int = 0

    def describe(self) -> str:
        return (
            f"lake {self.lake}: {self.days_written} day(s) written ({self.rows_written:,} events), "
            f"{self.days_unchanged} unchanged, {self.days_removed} removed"
        )


def _write(fs: Any, url: str, table: pa.Table, int96: bool = False) -> None:
    """One Parquet file, replaced whole. `int96`: timestamps as INT96, the physical type Spark writes them as; a file
    Spark wrote keeps it, else Spark reads the rewritten timestamps as another type and fails on the file."""
    options = {"compression": "zstd", "use_deprecated_int96_timestamps": int96}
    if "://" not in url:  # a folder: write beside, then rename over the old file (atomic)
        folder = Path(url).parent
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".events-", suffix=".parquet")
        os.close(handle)
        try:
            pq.write_table(table, temporary, **options)
            os.replace(temporary, url)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        # a file Spark wrote has Hadoop's checksum beside it (.<name>.crc), which no longer matches: without it,
        # Hadoop reads the file unchecked
        (folder / f".{Path(url).name}.crc").unlink(missing_ok=True)
        return
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    with fs.open(url, "wb") as handle:  # one PUT: readers see the old file or the new one
        handle.write(buffer.getvalue())


def _select_list(columns: list[tuple]) -> tuple[sql.Composable, dict[str, pa.DataType], dict[str, pa.DataType]]:
    """SELECT items that COPY prints unambiguously, the CSV column types to read them as, and the final types."""
    items, read_types, final_types = [], {}, {}
    for name, data_type, precision, scale in columns:
        final = arrow_type(data_type, precision, scale)
        final_types[name] = final
        column = sql.Identifier(name)
        if pa.types.is_timestamp(final):  # exact microseconds since the epoch (UTC)
            items.append(sql.SQL("(extract(epoch from {}) * 1000000)::bigint as {}").format(column, column))
            read_types[name] = pa.int64()
        elif pa.types.is_string(final) and data_type not in ("text", "character varying"):
            items.append(sql.SQL("{}::text as {}").format(column, column))
            read_types[name] = pa.string()
        else:
            items.append(column)
            read_types[name] = final
    return sql.SQL(", ").join(items), read_types, final_types


def _fetch_day(cursor, columns: list[tuple], day: date) -> pa.Table:
    select, read_types, final_types = _select_list(columns)
    buffer = io.BytesIO()
    query = sql.SQL(
        'copy (select {} from raw.events where "timestamp" >= %s and "timestamp" < %s order by message_id) '
        "to stdout (format csv, header true, force_quote *)"
    ).format(select)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + (datetime(2000, 1, 2) - datetime(2000, 1, 1))
    cursor.copy_expert(cursor.mogrify(query, (start, end)).decode(), buffer)
    buffer.seek(0)
    names = [column[0] for column in columns]
    table = pa_csv.read_csv(
        buffer,
        convert_options=pa_csv.ConvertOptions(
            column_types=read_types,
            # force_quote: only NULL is unquoted-empty, so '' stays ''
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=["t"],
            false_values=["f"],
        ),
    )
    arrays = []
    for name in names:
        column = table.column(name)
        final = final_types[name]
        if pa.types.is_timestamp(final):
            column = pc.cast(column, pa.timestamp("us")).cast(final)
        arrays.append(column)
    return pa.table(arrays, schema=pa.schema([pa.field(n, final_types[n]) for n in names]))


def _record_day(cursor, day: date, row_count: int, load_id: str | None, url: str) -> None:
    """The manifest's row for a day file just written (what raw.events held for it, and where it is)."""
    cursor.execute(
        """
        insert into ops.lake_days (event_date, row_count, max_load_id, object_url, written_at)
        values (%s, %s, %s, %s, now())
        on conflict (event_date) do update set row_count = excluded.row_count,
            max_load_id = excluded.max_load_id, object_url = excluded.object_url, written_at = now()
        """,
        (day, row_count, load_id, url),
    )


def _archived_day(settings: Settings, cursor, columns: list[tuple], day: date) -> pa.Table:
    """One archived day's raw rows from the cold tier's Parquet files, in the lake's column order and types."""
    _select, _read, final_types = _select_list(columns)
    schema = pa.schema([pa.field(name, final_types[name]) for name in final_types])
    cursor.execute(
        "select object_url from ops.archived_partitions where event_date = %s and table_name = 'raw_events' "
        "and restored_at is null order by archived_at",
        (day,),
    )
    fs = bucket_filesystem(settings)
    tables = []
    for (url,) in cursor.fetchall():
        with fs.open(url, "rb") as handle:
            tables.append(pq.read_table(io.BytesIO(handle.read())).select(schema.names).cast(schema))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return table.sort_by("message_id")


def sync_lake(settings: Settings, lake: str | None = None, say: Callable[[str], None] = print) -> LakeSync:
    """Write every day of raw.events whose rows changed since the lake last got it; remove days that have no rows
    any more (unless archived to the cold tier). Days in the cold tier (their raw rows gone from PostgreSQL) are
    copied from the archive's Parquet, so the lake holds every day. Idempotent: a second run writes nothing."""
    lake = lake_url(lake)
    result = LakeSync(lake=lake)
    connection = psycopg2.connect(settings.database_url)
    try:
        with connection.cursor() as cursor:
            ensure_ops_tables(connection)
            if not table_exists(cursor, "raw.events"):
                say("lake: raw.events does not exist yet (nothing loaded); nothing to write")
                return result
            cursor.execute(
                """
                select ("timestamp" at time zone 'UTC')::date, count(*), max(_dlt_load_id)
                from raw.events group by 1 order by 1
                """
            )
            current = {day: (count, load_id) for day, count, load_id in cursor.fetchall()}
            cursor.execute("select event_date, row_count, max_load_id, object_url from ops.lake_days")
            written = {day: (count, load_id, url) for day, count, load_id, url in cursor.fetchall()}
            columns = table_columns(cursor, "raw", "events")
            fs = filesystem(lake)
            changed = [
                day
                for day, state in current.items()
                if written.get(day, (None, None, None))[:2] != state
                or written[day][2] != day_url(lake, day)
                or not fs.exists(day_url(lake, day))
            ]
            result.days_unchanged = len(current) - len(changed)
            if changed:
                say(f"lake: writing {len(changed)} day(s) of events to {lake}/{EVENTS_FOLDER}/")

            def put_day(day: date, table: pa.Table, row_count: int, load_id: str | None) -> None:
                url = day_url(lake, day)
                _write(fs, url, table)
                _record_day(cursor, day, row_count, load_id, url)
                connection.commit()
                result.days_written += 1
                result.rows_written += table.num_rows

            archived = set(archived_dates(connection))
            for index, day in enumerate(changed, 1):
                table = _fetch_day(cursor, columns, day)
                if day in archived:  # late events of an archived day: the lake's day is both, each event once
                    cold = _archived_day(settings, cursor, columns, day)
                    new = pc.invert(pc.is_in(table.column("message_id"), value_set=cold.column("message_id")))
                    table = pa.concat_tables([cold, table.filter(new)]).sort_by("message_id")
                put_day(day, table, *current[day])
                if index % 10 == 0 or index == len(changed):
                    say(f"lake: {index}/{len(changed)} days, {result.rows_written:,} events")
            # days in the cold tier and not (or no longer) in the lake: their raw rows are only in the archive's
            # Parquet (same columns, same types), so the lake is copied from there and Spark sees every day
            for day in sorted(archived - set(current)):
                if day in written and fs.exists(written[day][2]):
                    continue
                table = _archived_day(settings, cursor, columns, day)
                load_id = pc.max(table.column("_dlt_load_id")).as_py() if table.num_rows else None
                put_day(day, table, table.num_rows, load_id)
                say(f"lake: {day} copied from the cold tier ({table.num_rows:,} events)")
            for day in sorted(set(written) - set(current) - archived):
                url = written[day][2]
                if fs.exists(url):
                    fs.rm(url)
                cursor.execute("delete from ops.lake_days where event_date = %s", (day,))
                connection.commit()
                result.days_removed += 1
            if result.days_written or result.days_removed or not fs.exists(manifest_url(lake)):
                _write_manifest(cursor, fs, lake)
    finally:
        connection.close()
    return result


def scrub_lake(user_id: str, anonymous: list[str], lake: str | None = None, say: Callable[[str], None] = print) -> int:
    """Erasure (`analyticspro forget`): rewrite every Parquet file of the lake — the events, and the intermediate
    and mart tables a Spark build wrote — that holds rows of the person (by person_id, user_id or anonymous_id)
    without them; returns the rows removed. Archived days' copies in the lake are scrubbed too."""
    lake = lake_url(lake)
    fs = filesystem(lake)
    if not fs.exists(lake):
        return 0
    people = pa.array([user_id, *anonymous], pa.string())
    removed_total = 0
    scrubbed: set[str] = set()  # the Spark-built tables (by model) that lost rows
    for path in sorted(fs.glob(f"{lake}/**/*.parquet")):
        url = path if "://" not in lake else f"{lake.split('://', 1)[0]}://{path}"
        if Path(url).name.startswith((".", "_")):
            continue  # a write in progress, or Spark's bookkeeping
        with fs.open(url, "rb") as handle:
            data = io.BytesIO(handle.read())
        # Spark writes timestamps as INT96 (microseconds, UTC): read them as such, and write them back as INT96
        int96 = any(column.physical_type == "INT96" for column in pq.ParquetFile(data).schema)
        data.seek(0)
        table = pq.read_table(data, coerce_int96_timestamp_unit="us" if int96 else None)
        hit = None
        for name in PERSON_COLUMNS:
            if name in table.schema.names:
                matches = pc.is_in(table.column(name).cast(pa.string()), value_set=people)
                hit = matches if hit is None else pc.or_kleene(hit, matches)
        if hit is None:
            continue
        hit = pc.fill_null(hit, False)
        removed = pc.sum(hit).as_py() or 0
        if removed:
            _write(fs, url, table.filter(pc.invert(hit)), int96=int96)
            removed_total += removed
            say(f"lake: rewrote {url} without {removed} row(s)")
            parts = url[len(lake) + 1 :].split("/")
            if len(parts) > 2 and parts[0] in ("intermediate", "marts"):
                scrubbed.add(parts[1].removesuffix("__delta"))
    _mark_touched_everywhere(fs, lake, scrubbed, say)
    return removed_total


def _mark_touched_everywhere(fs: Any, lake: str, models: set[str], say: Callable[[str], None]) -> None:
    """After an erasure: for each merge-on-read model that logs the values its builds change (ops.lake_merge_touched,
    dbt_project/macros/lake_merge.sql) and lost rows outside dbt, a null value, "every value": the aggregates over it
    (fct_funnel_steps, fct_funnel_breakdown, revenue_monthly, fct_cohort_retention) recount every partition on their
    next Spark run."""
    for model in sorted(models):
        folder = f"{lake}/ops/lake_merge_touched/model={model}"
        if not fs.exists(folder):
            continue
        marker = pa.table(
            {
                "value": pa.array([None], pa.string()),
                "built_at": pa.array([datetime.now(UTC).replace(tzinfo=None)], pa.timestamp("us")),
            }
        )
        # INT96, as Spark writes the log's other files
        _write(fs, f"{folder}/erasure-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.parquet", marker, int96=True)
        say(f"lake: {model} marked for its aggregates to recount every partition")


# The folders of a merge-on-read table beside its base (dbt_project/macros/lake_merge.sql): the rows of the keys
# recomputed since the last compaction, and the build's staging copy (empty between builds).
MERGE_FOLDERS = ("__delta", "__staging")


def lake_marts(lake: str | None = None) -> dict[str, int]:
    """The marts a Spark build wrote to the lake, with their row counts (merge-on-read marts merged: see
    read_lake_table; the others from the Parquet footers)."""
    lake = lake_url(lake)
    fs = filesystem(lake)
    root = f"{lake}/marts"
    if not fs.exists(root):
        return {}
    counts = {}
    for entry in sorted(fs.ls(root, detail=False)):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(MERGE_FOLDERS):
            continue
        if fs.exists(f"{root}/{name}__delta"):
            counts[name] = read_lake_table(name, lake).num_rows
        else:
            counts[name] = _mart_dataset(fs, entry).count_rows()
    return counts


def read_lake_table(model: str, lake: str | None = None, folder: str = "marts") -> pa.Table:
    """A table the Spark build wrote to the lake, as its readers should see it (hive partition folders become
    columns). A merge-on-read table (a `<model>__delta` folder beside it) is merged: the base's rows of keys the
    delta does not hold, then the delta's live rows, on the key lake_merge_keys() gives. The same in SQL, for
    DuckDB: merge_query()."""
    lake = lake_url(lake)
    fs = filesystem(lake)
    base = _mart_dataset(fs, f"{lake}/{folder}/{model}").to_table()
    delta_url = f"{lake}/{folder}/{model}__delta"
    if not fs.exists(delta_url):
        return base
    delta = _mart_dataset(fs, delta_url).to_table()
    if delta.num_rows == 0:
        return base
    key = lake_merge_keys(lake)[model]
    replaced = pc.is_in(base.column(key), value_set=pc.unique(delta.column(key)))
    kept = base.filter(pc.invert(pc.fill_null(replaced, False)))
    live = delta.filter(pc.invert(pc.fill_null(delta.column("_merge_deleted"), False)))
    return pa.concat_tables([kept, live.select(base.column_names).cast(base.schema)])


def lake_merge_keys(lake: str | None = None) -> dict[str, str]:
    """The merge-on-read tables of the lake and their keys (ops.lake_merge_builds, written by each build)."""
    lake = lake_url(lake)
    fs = filesystem(lake)
    url = f"{lake}/ops/lake_merge_builds"
    if not fs.exists(url):
        return {}
    table = _mart_dataset(fs, url).to_table(columns=["model", "merge_key"])
    return dict(zip(table.column("model").to_pylist(), table.column("merge_key").to_pylist(), strict=True))


def merge_query(model: str, key: str, lake: str | None = None, folder: str = "marts") -> str:
    """DuckDB SQL reading a merge-on-read table of the lake as read_lake_table() does."""
    root = f"{lake_url(lake)}/{folder}/{model}"
    return (
        f"select * from read_parquet('{root}/*.parquet') as base where not exists (select 1 from "
        f"read_parquet('{root}__delta/*.parquet') as delta where delta.{key} = base.{key}) union all "
        f"select * exclude (_merge_deleted) from read_parquet('{root}__delta/*.parquet') where not _merge_deleted"
    )


def _mart_dataset(fs: Any, url: str) -> ds.Dataset:
    """A mart's Parquet folder as the Spark build writes it (hive partition folders), footers read lazily."""
    return ds.dataset(url, format="parquet", partitioning="hive", filesystem=fs, exclude_invalid_files=True)


def lake_daily_counts(model: str, start: date, end: date, lake: str | None = None) -> dict[date, int]:
    """Rows per `event_date` in [start, end) of a mart the Spark build wrote to the lake, from the Parquet footers of
    its day partitions (nothing read but the footers); {} when the mart is not in the lake."""
    lake = lake_url(lake)
    fs = filesystem(lake)
    root = f"{lake}/marts/{model}"
    if not fs.exists(root):
        return {}
    counts: dict[date, int] = {}
    for fragment in _mart_dataset(fs, root).get_fragments():
        day = ds.get_partition_keys(fragment.partition_expression).get("event_date")
        if day is None:
            continue
        day = day if isinstance(day, date) else date.fromisoformat(str(day))
        if start <= day < end:
            counts[day] = counts.get(day, 0) + fragment.count_rows()
    return counts
