"""Storage tiers: hot (Redis, 24 h of metrics), warm (PostgreSQL, the last WARM_DAYS days of fct_events partitions),
cold (Parquet in the bucket).

`archive_date` moves one day to the cold tier: the day's fct_events partition and its raw.events rows are written
as Parquet to `<EVENTS_BUCKET_URL>/archive/events/date=YYYY-MM-DD/{fct_events,raw_events}-<stamp>.parquet`; each
file is read back into a temporary table and compared with the source (row count and an md5 over every row as
PostgreSQL prints it); only then is the partition detached and dropped and the raw rows deleted, and the files
recorded in `ops.archived_partitions`. Marts keep their aggregated history. A full rebuild of the marts refuses
while days are archived (the raw rows are in the archive): restore them first.

`restore_dates` brings days back from their files (the partition recreated, raw rows re-inserted, nothing
duplicated) and marks them restored; the files stay as the cold copy.

The marts keep an archived day's people: before the partition is dropped, each person's aggregates of that day
(first/last seen, signup, counts, revenue, latest traits) are added to `ops.person_archive_history`, which
dim_users adds to the warm events when it recomputes a person, so a person whose early days are archived keeps
their first-seen date, signup and totals when they come back.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg2 import sql

from common.db import ensure_database, fct_events_days, table_exists
from common.ops import ensure_ops_tables
from common.settings import Settings, get_settings
from common.storage import arrow_type, bucket_filesystem, table_columns

ARCHIVE_PREFIX = "archive/events"
FCT_EVENTS = ("analytics", "fct_events")
RAW_EVENTS = ("raw", "events")


class ArchiveError(RuntimeError):
    """An export did not verify; nothing was dropped."""


@dataclass
class ArchivedFile:
    table: str
    url: str
    rows: int
    rows_md5: str
    file_sha256: str


def archive_url(settings: Settings, day: date, table: str, stamp: str) -> str:
    return f"{settings.events_bucket_url.rstrip('/')}/{ARCHIVE_PREFIX}/date={day.isoformat()}/{table}-{stamp}.parquet"


def _select_list(columns: list[tuple]) -> sql.Composable:
    items = []
    for name, data_type, precision, _scale in columns:
        if arrow_type(data_type, precision, _scale) == pa.string() and data_type not in ("text", "character varying"):
            items.append(sql.SQL("{}::text as {}").format(sql.Identifier(name), sql.Identifier(name)))
        else:
            items.append(sql.Identifier(name))
    return sql.SQL(", ").join(items)


def _fetch_table(cursor, schema: str, table: str, where: sql.Composable, args: tuple) -> pa.Table:
    columns = table_columns(cursor, schema, table)
    schema_ = pa.schema([pa.field(name, arrow_type(t, p, s)) for name, t, p, s in columns])
    cursor.execute(
        sql.SQL("select {} from {}.{} where {} order by 1").format(
            _select_list(columns), sql.Identifier(schema), sql.Identifier(table), where
        ),
        args,
    )
    rows = cursor.fetchall()
    return pa.Table.from_pylist([dict(zip(schema_.names, row, strict=True)) for row in rows], schema=schema_)


def _rows_md5(cursor, relation: sql.Composable, where: sql.Composable, args: tuple) -> tuple[int, str]:
    cursor.execute(
        sql.SQL(
            "select count(*), coalesce(md5(string_agg(t::text, E'\\n' order by t::text)), '') "
            "from (select * from {} where {}) as t"
        ).format(relation, where),
        args,
    )
    count, digest = cursor.fetchone()
    return int(count), digest


def _copy_into(cursor, relation: sql.Composable, table: pa.Table) -> None:
    """COPY an Arrow table into `relation` (same column names) through CSV; nulls stay nulls, '' stays ''."""
    columns = []
    for index, field in enumerate(table.schema):
        column = table.column(index)
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            text = column.cast(pa.timestamp("us")).cast(pa.string())
            column = pa.chunked_array([pa.compute.binary_join_element_wise(chunk, "Z", "") for chunk in text.chunks])
        columns.append(column)
    table = pa.table(columns, names=table.schema.names)
    buffer = io.BytesIO()
    pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    buffer.seek(0)
    names = sql.SQL(", ").join(sql.Identifier(name) for name in table.schema.names)
    cursor.copy_expert(
        sql.SQL("copy {} ({}) from stdin (format csv)").format(relation, names).as_string(cursor), buffer
    )


@contextmanager
def _temporary_copy(cursor, schema: str, table: str, contents: pa.Table) -> Iterator[sql.Composable]:
    temp = sql.Identifier(f"restore_{table}_{hashlib.md5(str(id(contents)).encode()).hexdigest()[:8]}")
    cursor.execute(
        sql.SQL("create temporary table {} (like {}.{})").format(temp, sql.Identifier(schema), sql.Identifier(table))
    )
    try:
        _copy_into(cursor, temp, contents)
        yield temp
    finally:
        cursor.execute(sql.SQL("drop table if exists {}").format(temp))


def _write_verified(
    settings: Settings, cursor, label: str, schema: str, table: str, where: sql.Composable, args: tuple, url: str
) -> ArchivedFile:
    contents = _fetch_table(cursor, schema, table, where, args)
    expected = _rows_md5(cursor, sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table)), where, args)
    buffer = io.BytesIO()
    pq.write_table(contents, buffer, compression="zstd")
    fs = bucket_filesystem(settings)
    fs.makedirs(url.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(url, "wb") as handle:
        handle.write(buffer.getvalue())
    with fs.open(url, "rb") as handle:
        written = handle.read()
    back = pq.read_table(io.BytesIO(written))
    with _temporary_copy(cursor, schema, table, back) as temp:
        got = _rows_md5(cursor, temp, sql.SQL("true"), ())
    if got != expected:
        fs.rm(url)
        raise ArchiveError(
            f"{url}: read back {got[0]:,} rows (md5 {got[1]}), the source has {expected[0]:,} (md5 {expected[1]}); "
            "the file was removed and nothing was dropped. Check the bucket's permissions and free space, then rerun."
        )
    return ArchivedFile(label, url, expected[0], expected[1], hashlib.sha256(written).hexdigest())


# One row per person and archive file: writing the same file again replaces its rows, a restore deletes them, late
# rows archived later add a file of their own. The aggregates are dim_users' own (dbt_project/macros/
# person_aggregates.sql), computed by the function ops.person_aggregates(day) that dim_users' build creates.
REMEMBER_PEOPLE = """
insert into ops.person_archive_history (
    person_id, archive_file, user_id, first_seen_at, last_seen_at, first_activity_at, last_activity_at,
    signed_up_at, activity_events, active_days, total_revenue, traits, last_identified_at
)
select
    p.person_id, %(archive_file)s, p.user_id, p.first_seen_at, p.last_seen_at, p.first_activity_at,
    p.last_activity_at, p.signed_up_at, p.activity_events, p.active_days, p.total_revenue, p.traits,
    p.last_identified_at
from ops.person_aggregates(%(day)s) as p
on conflict (person_id, archive_file) do update set
    user_id = excluded.user_id,
    first_seen_at = excluded.first_seen_at,
    last_seen_at = excluded.last_seen_at,
    first_activity_at = excluded.first_activity_at,
    last_activity_at = excluded.last_activity_at,
    signed_up_at = excluded.signed_up_at,
    activity_events = excluded.activity_events,
    active_days = excluded.active_days,
    total_revenue = excluded.total_revenue,
    traits = excluded.traits,
    last_identified_at = excluded.last_identified_at
"""


def remember_people(cursor, day: date, archive_file: str) -> None:
    """Record the per-person aggregates of the day's fct_events rows, archived as `archive_file`."""
    cursor.execute(REMEMBER_PEOPLE, {"archive_file": archive_file, "day": day})


def partition_dates(connection: psycopg2.extensions.connection) -> list[date]:
    """The days that have an fct_events partition in PostgreSQL (the warm tier)."""
    with connection.cursor() as cursor:
        return fct_events_days(cursor)


def archivable_dates(connection: psycopg2.extensions.connection, warm_days: int, today: date) -> list[date]:
    cutoff = today - timedelta(days=warm_days)
    return [day for day in partition_dates(connection) if day < cutoff]


def last_change(connection: psycopg2.extensions.connection, day: date) -> datetime | None:
    """When the day's fct_events rows last changed (their newest _built_at)."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("select max(_built_at) from analytics.{}").format(sql.Identifier(f"fct_events_p{day:%Y%m%d}"))
        )
        return cursor.fetchone()[0]


def _raw_day(day: date) -> tuple[sql.Composable, tuple]:
    start = datetime.combine(day, datetime.min.time(), UTC)
    return sql.SQL('"timestamp" >= %s and "timestamp" < %s'), (start, start + timedelta(days=1))


def archive_date(settings: Settings, connection: psycopg2.extensions.connection, day: date) -> list[ArchivedFile]:
    """Export, verify, then drop one day from PostgreSQL (see the module docstring); the files written."""
    ensure_ops_tables(connection)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    partition = f"fct_events_p{day:%Y%m%d}"
    with connection.cursor() as cursor:
        cursor.execute("select to_regprocedure('ops.person_aggregates(date)') is not null")
        if not cursor.fetchone()[0]:
            raise ArchiveError(
                "ops.person_aggregates(date) is missing: dim_users' build creates it. Run `analyticspro materialize` "
                "once, then archive again."
            )
        fct_url = archive_url(settings, day, "fct_events", stamp)
        fct = _write_verified(settings, cursor, "fct_events", "analytics", partition, sql.SQL("true"), (), fct_url)
        where, args = _raw_day(day)
        raw_url = archive_url(settings, day, "raw_events", stamp)
        raw = _write_verified(settings, cursor, "raw_events", "raw", "events", where, args, raw_url)
        # superseded: files of this day that were restored (their rows are in what was just written)
        cursor.execute(
            "select object_url from ops.archived_partitions where event_date = %s and restored_at is not null", (day,)
        )
        superseded = [row[0] for row in cursor.fetchall()]
        # the marts keep the day's people: dim_users adds these aggregates to the warm events
        remember_people(cursor, day, fct.url)
        cursor.execute(
            sql.SQL("alter table analytics.fct_events detach partition analytics.{}").format(sql.Identifier(partition))
        )
        cursor.execute(sql.SQL("drop table analytics.{}").format(sql.Identifier(partition)))
        cursor.execute(sql.SQL("delete from raw.events where {}").format(where), args)
        cursor.execute("delete from ops.archived_partitions where object_url = any(%s)", (superseded or [""],))
        cursor.execute("delete from ops.person_archive_history where archive_file = any(%s)", (superseded or [""],))
        for file in (fct, raw):
            cursor.execute(
                "insert into ops.archived_partitions "
                "(event_date, table_name, object_url, row_count, rows_md5, file_sha256, archived_at) "
                "values (%s, %s, %s, %s, %s, %s, now())",
                (day, file.table, file.url, file.rows, file.rows_md5, file.file_sha256),
            )
    connection.commit()
    fs = bucket_filesystem(settings)
    for url in superseded:
        if fs.exists(url):
            fs.rm(url)
    return [fct, raw]


def archived_dates(connection: psycopg2.extensions.connection, restored: bool = False) -> list[date]:
    """Days whose files are in the cold tier and not (restored=False) or also (True) back in PostgreSQL."""
    with connection.cursor() as cursor:
        if not table_exists(cursor, "ops.archived_partitions"):
            return []
        cursor.execute(
            "select distinct event_date from ops.archived_partitions where (restored_at is not null) = %s order by 1",
            (restored,),
        )
        return [row[0] for row in cursor.fetchall()]


def restore_dates(settings: Settings, first: date, last: date, say: Callable[[str], None] = print) -> dict[date, int]:
    """Bring the archived days in [first, last] back into PostgreSQL; fct_events rows restored per day."""
    ensure_database(settings)
    restored: dict[date, int] = {}
    connection = psycopg2.connect(settings.database_url)
    try:
        ensure_ops_tables(connection)
        with connection.cursor() as cursor:
            cursor.execute(
                "select event_date, table_name, object_url, row_count, rows_md5 from ops.archived_partitions "
                "where event_date between %s and %s and restored_at is null order by event_date, table_name",
                (first, last),
            )
            files = cursor.fetchall()
        if not files:
            say(f"no archived day between {first} and {last} to restore")
        fs = bucket_filesystem(settings)
        for day, table_name, url, row_count, rows_md5 in files:
            with fs.open(url, "rb") as handle:
                contents = pq.read_table(io.BytesIO(handle.read()))
            with connection.cursor() as cursor:
                schema, table = FCT_EVENTS if table_name == "fct_events" else RAW_EVENTS
                with _temporary_copy(cursor, schema, table, contents) as temp:
                    got = _rows_md5(cursor, temp, sql.SQL("true"), ())
                    if got != (row_count, rows_md5):
                        raise ArchiveError(
                            f"{url} does not match its manifest ({got[0]:,} rows, md5 {got[1]}; recorded "
                            f"{row_count:,}, {rows_md5}): the file changed since it was archived. Nothing was restored."
                        )
                    if table_name == "fct_events":
                        cursor.execute(
                            sql.SQL(
                                "create table if not exists analytics.{} partition of analytics.fct_events "
                                "for values from (%s) to (%s)"
                            ).format(sql.Identifier(f"fct_events_p{day:%Y%m%d}")),
                            (day, day + timedelta(days=1)),
                        )
                        cursor.execute(
                            sql.SQL("insert into analytics.fct_events select * from {} on conflict do nothing").format(
                                temp
                            )
                        )
                        restored[day] = cursor.rowcount
                    else:
                        cursor.execute(
                            sql.SQL("insert into raw.events select * from {} on conflict do nothing").format(temp)
                        )
                cursor.execute("update ops.archived_partitions set restored_at = now() where object_url = %s", (url,))
                # the restored rows are warm again: dim_users must not count them twice
                cursor.execute("delete from ops.person_archive_history where archive_file = %s", (url,))
            connection.commit()
            say(f"restored {day} from {url} ({row_count:,} rows)")
    finally:
        connection.close()
    return restored


def scrub_archive(settings: Settings, user_id: str, anonymous: list[str], say: Callable[[str], None] = print) -> int:
    """Rewrite every archived file holding rows of the person without them (erasure); rows removed."""
    connection = psycopg2.connect(settings.database_url)
    removed_total = 0
    try:
        with connection.cursor() as cursor:
            if not table_exists(cursor, "ops.archived_partitions"):
                return 0
            cursor.execute("select object_url, table_name from ops.archived_partitions")
            files = cursor.fetchall()
        fs = bucket_filesystem(settings)
        people = pa.array([user_id, *anonymous], pa.string())
        for url, table_name in files:
            with fs.open(url, "rb") as handle:
                contents = pq.read_table(io.BytesIO(handle.read()))
            hit = pa.compute.is_in(contents.column("user_id"), value_set=people)
            hit = pa.compute.or_kleene(hit, pa.compute.is_in(contents.column("anonymous_id"), value_set=people))
            if "person_id" in contents.schema.names:
                hit = pa.compute.or_kleene(hit, pa.compute.is_in(contents.column("person_id"), value_set=people))
            hit = pa.compute.fill_null(hit, False)
            removed = pa.compute.sum(hit).as_py() or 0
            if not removed:
                continue
            kept = contents.filter(pa.compute.invert(hit))
            buffer = io.BytesIO()
            pq.write_table(kept, buffer, compression="zstd")
            with fs.open(url, "wb") as handle:
                handle.write(buffer.getvalue())
            with connection.cursor() as cursor:
                schema, table = FCT_EVENTS if table_name == "fct_events" else RAW_EVENTS
                with _temporary_copy(cursor, schema, table, kept) as temp:
                    rows, digest = _rows_md5(cursor, temp, sql.SQL("true"), ())
                cursor.execute(
                    "update ops.archived_partitions set row_count = %s, rows_md5 = %s, file_sha256 = %s "
                    "where object_url = %s",
                    (rows, digest, hashlib.sha256(buffer.getvalue()).hexdigest(), url),
                )
            connection.commit()
            removed_total += removed
            say(f"rewrote {url} without {removed} row(s)")
    finally:
        connection.close()
    return removed_total


def refuse_full_refresh_if_archived(settings: Settings | None = None) -> None:
    """A full rebuild reads raw.events, which no longer holds the archived days: refuse instead of silently
    rebuilding the marts without them."""
    settings = settings or get_settings()
    connection = psycopg2.connect(settings.database_url)
    try:
        days = archived_dates(connection)
    finally:
        connection.close()
    if days:
        raise ValueError(
            f"--full-refresh would rebuild the marts without the {len(days)} archived day(s) {days[0]} .. {days[-1]} "
            f"(they are in the cold tier). Restore them first: analyticspro restore --from {days[0]} --to {days[-1]}"
        )
