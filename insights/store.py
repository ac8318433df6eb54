"""The columnar copy the insights engine reads: every event of analytics.fct_events (and of the days archived to the
cold tier) as Parquet, one file per UTC day, sorted by (person, time, message id), with the persons' fields and the
event catalogue beside them.

    <INSIGHTS_DIR>/manifest.json                 which file holds each day, and the fingerprint it was written at
    <INSIGHTS_DIR>/events/YYYY-MM-DD.<gen>.parquet   a day, or the rows of a day built since its earlier files
    <INSIGHTS_DIR>/persons.<gen>.parquet         dim_users' fields a question may filter or break down by
    <INSIGHTS_DIR>/catalogue.<gen>.parquet       dim_event_properties: event names, their property keys and types

The folder is <INSIGHTS_DIR>/<database name> (INSIGHTS_DIR defaults to .analyticspro/insights), so two databases
never share a copy.

`sync_store` is incremental: a day is written again only when its fingerprint in PostgreSQL (row count and latest
`_built_at`: a late event, a re-stitched person or an erasure all change it) differs from the manifest's, and then
only the day's rows built since it was written are added, as one more file of the day (a delta), so a new hour costs
its own rows. A delta row that replaces an earlier version of its message says whose it was (`previous_person_id`):
an engine applying the delta re-reads only the persons it touches.

Archived days are read from their cold-tier Parquet and re-stitched with the current identity map, so a question
reaching them never undercounts. Files are never overwritten: each write is a new generation and the manifest is
replaced atomically, so an engine loading the copy in another process always sees one consistent set; files no longer
listed are removed after FILE_GRACE_SECONDS.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from common.db import fct_events_days, table_exists
from common.locks import advisory_lock
from common.settings import DEFAULT_STATE_DIR, Settings, get_settings
from common.storage import bucket_filesystem

INSIGHTS_LOCK = "analyticspro.insights"
MAX_FILES = 8  # a day (or the persons) in this many files is written again as one
MAX_DELTA_SHARE = 0.3  # ... and so is one whose changed rows are more than this share of it
MANIFEST = "manifest.json"
FORMAT = 2  # 2: event files carry previous_person_id; a copy in an older format is written again in full
FILE_GRACE_SECONDS = 3600  # an engine reading an older generation has long finished by then

# what a question can read of an event, in file order; person_id is the stitched person of fct_events
EVENT_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("event_at", pa.timestamp("us", "UTC")),
        ("message_id", pa.string()),
        ("event_date", pa.date32()),
        ("event_type", pa.string()),
        ("event_name", pa.string()),
        ("is_activity", pa.bool_()),
        ("page_path", pa.string()),
        ("referrer", pa.string()),
        ("utm_source", pa.string()),
        ("utm_medium", pa.string()),
        ("utm_campaign", pa.string()),
        ("revenue", pa.float64()),
        ("properties", pa.string()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        # in a delta file, the person of the message's version it replaces (null for a new message, and in a file
        # holding a whole day): what an engine must re-read when it applies the delta
        ("previous_person_id", pa.string()),
    ]
)
# person fields a question may filter or break down by (user.<field>): name -> the dim_users column's Arrow type
PERSON_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("plan", pa.string()),
        ("country", pa.string()),
        ("email", pa.string()),
        ("user_id", pa.string()),
        ("mrr", pa.float64()),
        ("signup_date", pa.date32()),
        ("is_identified", pa.bool_()),
    ]
)
CATALOGUE_SCHEMA = pa.schema([("event_name", pa.string()), ("property_key", pa.string()), ("value_types", pa.string())])


def store_dir(settings: Settings | None = None) -> Path:
    """<INSIGHTS_DIR>/<database name>; INSIGHTS_DIR defaults to .analyticspro/insights."""
    root = Path(os.environ.get("INSIGHTS_DIR") or DEFAULT_STATE_DIR / "insights").expanduser().resolve()
    return root / (settings or get_settings()).database_name


@dataclass
class Manifest:
    generation: int = 0
    # "YYYY-MM-DD" -> {files, rows, fingerprint, built_at, tier}; a later file's row replaces an earlier one's with the
    # same message id (a day is its first file plus the rows changed since, until it is written again as one)
    days: dict[str, dict] = field(default_factory=dict)
    persons: dict = field(default_factory=dict)  # {files, rows, fingerprint, built_at}; later files win by person_id
    catalogue: dict = field(default_factory=dict)
    synced_at: str | None = None
    events_built_at: str | None = None  # the latest fct_events `_built_at` the copy has seen
    format: int = FORMAT

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        for entry in [*data["days"].values(), data["persons"]]:  # a manifest written before deltas: one file each
            if "file" in entry:
                entry["files"] = [entry.pop("file")]
        data.setdefault("format", 1)
        keys = ("generation", "days", "persons", "catalogue", "synced_at", "events_built_at", "format")
        return cls(**{key: data[key] for key in keys if key in data})

    def write(self, folder: Path) -> None:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".manifest-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump(self.__dict__, out, indent=1, sort_keys=True)
        os.replace(temporary, folder / MANIFEST)

    def files(self) -> set[str]:
        entries = [*self.days.values(), self.persons]
        return {name for entry in entries for name in entry.get("files", [])} | (
            {self.catalogue["file"]} if self.catalogue else set()
        )


@dataclass
class StoreSync:
    folder: Path
    days_written: int = 0
    days_removed: int = 0
    rows_written: int = 0
    persons_written: bool = False
    seconds: float = 0.0
    no_events_table: bool = False
    phases: dict[str, float] = field(default_factory=dict)  # seconds by phase, for whoever tunes it

    def describe(self) -> str:
        if self.no_events_table:
            return (
                "insights: PostgreSQL has no analytics.fct_events yet, so the copy is empty: build the marts on "
                "PostgreSQL with `analyticspro materialize` (a Spark-only warehouse has none for the engine to read)"
            )
        if not (self.days_written or self.days_removed or self.persons_written):
            return f"insights: the columnar copy in {self.folder} is current ({self.seconds:.1f}s)"
        return (
            f"insights: {self.days_written} day(s) written ({self.rows_written:,} events), {self.days_removed} "
            f"removed{', persons refreshed' if self.persons_written else ''}, in {self.seconds:.1f}s"
        )


def _copy_csv(cursor, query: str, args: tuple, schema: pa.Schema) -> pa.Table:
    """The rows of `query` through COPY ... CSV (far faster than fetching tuples), typed by `schema`."""
    buffer = io.BytesIO()
    statement = cursor.mogrify(query, args).decode()
    # FORCE_QUOTE keeps '' apart from NULL: quoted fields are strings, unquoted empty ones are nulls
    cursor.copy_expert(f"copy ({statement}) to stdout with (format csv, force_quote *)", buffer)
    buffer.seek(0)
    temporal = {f.name: pa.int64() for f in schema if pa.types.is_timestamp(f.type)}
    options = pa_csv.ConvertOptions(
        column_types={**{f.name: f.type for f in schema}, **temporal},
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    read = pa_csv.ReadOptions(column_names=schema.names, block_size=1 << 24)
    table = pa_csv.read_csv(buffer, read_options=read, convert_options=options) if buffer.getbuffer().nbytes else None
    if table is None:
        return schema.empty_table()
    for name in temporal:  # exported as microseconds since the epoch: exact and cheap to parse
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(schema.field(name).type))
    return table


EVENT_SELECT = """
select person_id, (extract(epoch from event_at) * 1000000)::bigint, message_id, event_date, event_type, event_name,
       is_activity, page_path, referrer, utm_source, utm_medium, utm_campaign, revenue::float8, properties::text,
       user_id, anonymous_id, null::text
from analytics.fct_events where event_date = %s
"""


def _sorted(table: pa.Table) -> pa.Table:
    # (person, time, message id): a person's events are contiguous and in order, and the row position breaks ties
    # between events of the same instant the way docs/metrics.md says (by message id)
    return table.sort_by([("person_id", "ascending"), ("event_at", "ascending"), ("message_id", "ascending")])


def write_parquet(folder: Path, name: str, table: pa.Table) -> None:
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".write-", suffix=".parquet")
    os.close(handle)
    pq.write_table(table, temporary, compression="zstd", row_group_size=1 << 20)
    os.replace(temporary, folder / name)


def _identity_map(cursor) -> dict[str, str]:
    """anonymous id -> user id, as fct_events stitches them (intermediate.int_identity_map)."""
    if not table_exists(cursor, "intermediate.int_identity_map"):
        return {}
    cursor.execute("select anonymous_id, user_id from intermediate.int_identity_map")
    return dict(cursor.fetchall())


def _archived_day(settings: Settings, urls: list[str], identities: dict[str, str]) -> pa.Table:
    """An archived day's fct_events rows from its cold-tier files, re-stitched with today's identity map (a person
    who identified after the day was archived joins their earlier anonymous events, as in the warm tier)."""
    fs = bucket_filesystem(settings)
    parts = []
    for url in urls:
        with fs.open(url, "rb") as handle:
            parts.append(pq.read_table(handle))
    table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    columns = {}
    for item in EVENT_SCHEMA:
        column = table.column(item.name) if item.name in table.column_names else pa.nulls(table.num_rows)
        columns[item.name] = column.cast(item.type) if column.type != item.type else column
    stitched = [
        user or identities.get(anonymous) or anonymous
        for user, anonymous in zip(columns["user_id"].to_pylist(), columns["anonymous_id"].to_pylist(), strict=True)
    ]
    columns["person_id"] = pa.array(stitched, pa.string())
    return pa.table(columns, schema=EVENT_SCHEMA)


def _warm_days(cursor, manifest: Manifest) -> dict[str, tuple[int, str]]:
    """Each day of fct_events: (rows, latest _built_at). Counting every row costs seconds at 10M events, so after the
    first sync only the days that can have changed are counted: those with a row built since the last sync (the
    `_built_at` index), those the copy lacks, holds from the cold tier or was told to write again (an erasure); the
    other days keep the fingerprint they were written at. The days themselves come from the partition catalogue."""
    if not table_exists(cursor, "analytics.fct_events"):
        return {}
    if manifest.events_built_at is None:
        cursor.execute("select event_date, count(*), max(_built_at) from analytics.fct_events group by 1")
        return {day.isoformat(): (count, built.isoformat()) for day, count, built in cursor.fetchall()}
    days = {day.isoformat() for day in fct_events_days(cursor)}
    since = manifest.events_built_at
    cursor.execute("select distinct event_date from analytics.fct_events where _built_at > %s", (since,))
    recount = {day.isoformat() for (day,) in cursor.fetchall()}
    found = {}
    for day in days:
        entry = manifest.days.get(day, {})
        if entry.get("tier") == "warm" and entry.get("built_at") and day not in recount:
            found[day] = (entry["rows"], entry["built_at"])
        else:
            recount.add(day)
    if recount:
        cursor.execute(
            "select event_date, count(*), max(_built_at) from analytics.fct_events where event_date = any(%s::date[]) "
            "group by 1",
            (sorted(recount),),
        )
        found.update({day.isoformat(): (count, built.isoformat()) for day, count, built in cursor.fetchall()})
    return found


def _delta(
    cursor,
    folder: Path,
    entry: dict,
    schema: pa.Schema,
    query: str,
    args: tuple,
    rows: int,
    events: bool,
) -> pa.Table | None:
    """The rows built since `entry` was written (`query` with `_built_at > %s` last), when adding them as one more
    file is exact — each replaces the row of its key if there was one — or None when the whole set must be written
    again (or when that is cheaper).

    Events (key message_id): exact when the day's row count adds up, so no event was deleted; each row that replaces
    an earlier version gets that version's person as `previous_person_id`. Persons (key person_id): always exact for
    the questions, which read persons only through their events: a person deleted from dim_users (merged into
    another, so no event carries their id any more) may keep a row in an earlier file until the persons are written
    again as one."""
    if not entry.get("built_at") or len(entry.get("files", [])) >= MAX_FILES:
        return None
    delta = _copy_csv(cursor, query, (*args, entry["built_at"]), schema)
    if delta.num_rows > max(1000, MAX_DELTA_SHARE * rows):
        return None
    if not events:
        return delta
    # the earlier versions, latest file first: index_in finds a message's latest version
    known = [pq.read_table(folder / name, columns=["message_id", "person_id"]) for name in reversed(entry["files"])]
    seen = pa.concat_tables(known).combine_chunks()
    position = pc.index_in(delta.column("message_id"), value_set=seen.column("message_id"))
    replacing = pc.sum(pc.cast(pc.is_valid(position), pa.int64())).as_py() or 0
    if entry["rows"] + delta.num_rows - replacing != rows:
        return None
    previous = pc.take(seen.column("person_id"), position)
    return delta.set_column(delta.schema.get_field_index("previous_person_id"), "previous_person_id", previous)


def _archived_files(cursor) -> dict[str, list[str]]:
    if not table_exists(cursor, "ops.archived_partitions"):
        return {}
    cursor.execute(
        "select event_date, object_url from ops.archived_partitions "
        "where table_name = 'fct_events' and restored_at is null order by 1, 2"
    )
    found: dict[str, list[str]] = {}
    for day, url in cursor.fetchall():
        found.setdefault(day.isoformat(), []).append(url)
    return found


def _table_fingerprint(cursor, relation: str) -> str | None:
    if not table_exists(cursor, relation):
        return None
    cursor.execute(f"select count(*), max(_built_at) from {relation}")  # relation: one of ours, never a request's
    count, built = cursor.fetchone()
    return f"{count}:{built.isoformat() if built else ''}"


PERSON_SELECT = (
    "select "
    + ", ".join(f"{name}::float8" if name == "mrr" else name for name in PERSON_SCHEMA.names)
    + " from analytics.dim_users"
)


def _sync_persons(cursor, folder: Path, manifest: Manifest, generation: int) -> bool:
    if not table_exists(cursor, "analytics.dim_users"):
        return False
    cursor.execute("select count(*), max(_built_at) from analytics.dim_users")
    count, built = cursor.fetchone()
    built_at = built.isoformat() if built else None
    fingerprint = f"{count}:{built_at}"
    if manifest.persons.get("fingerprint") == fingerprint:
        return False
    entry = manifest.persons
    name = f"persons.{generation}.parquet"
    delta = _delta(cursor, folder, entry, PERSON_SCHEMA, PERSON_SELECT + " where _built_at > %s", (), count, False)
    if delta is not None:
        write_parquet(folder, name, delta)
        files = [*entry["files"], name]
    else:
        write_parquet(folder, name, _copy_csv(cursor, PERSON_SELECT + " where %s", (True,), PERSON_SCHEMA))
        files = [name]
    manifest.persons = {"files": files, "rows": count, "fingerprint": fingerprint, "built_at": built_at}
    return True


def _sync_catalogue(cursor, folder: Path, manifest: Manifest, generation: int) -> bool:
    if not table_exists(cursor, "analytics.dim_event_properties"):
        return False
    query = "select event_name, property_key, value_types from analytics.dim_event_properties order by 1, 2 limit %s"
    catalogue = _copy_csv(cursor, query, (10_000_000,), CATALOGUE_SCHEMA)
    digest = hashlib.sha256(json.dumps(catalogue.to_pylist()).encode()).hexdigest()[:16]
    if manifest.catalogue.get("fingerprint") == digest:
        return False
    name = f"catalogue.{generation}.parquet"
    write_parquet(folder, name, catalogue)
    manifest.catalogue = {"file": name, "rows": catalogue.num_rows, "fingerprint": digest}
    return True


def remove_unlisted(folder: Path, manifest: Manifest, grace_seconds: float = FILE_GRACE_SECONDS) -> None:
    keep = manifest.files()
    now = time.time()
    for path in [*folder.glob("*.parquet"), *(folder / "events").glob("*.parquet")]:
        name = str(path.relative_to(folder))
        if name not in keep and now - path.stat().st_mtime >= grace_seconds:
            path.unlink(missing_ok=True)


def sync_store(settings: Settings | None = None, say: Callable[[str], None] = print) -> StoreSync:
    """Bring the columnar copy up to date with PostgreSQL and the cold tier; idempotent (a second run writes
    nothing). One sync at a time per database (an advisory lock)."""
    settings = settings or get_settings()
    folder = store_dir(settings)
    (folder / "events").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = StoreSync(folder=folder)
    with advisory_lock(settings.database_url, INSIGHTS_LOCK, say=say):
        manifest = Manifest.read(folder)
        if manifest.format != FORMAT:  # written by an older version: everything again (the generations go on)
            manifest = Manifest(generation=manifest.generation)
        generation = manifest.generation + 1
        catalogue_written = False
        connection = psycopg2.connect(settings.database_url)
        try:
            connection.set_session(readonly=True, isolation_level="REPEATABLE READ")  # one snapshot for all days
            with connection.cursor() as cursor:
                cursor.execute("set local timezone = 'UTC'")
                mark = time.monotonic()
                warm = _warm_days(cursor, manifest)
                result.phases["fingerprints"] = round(time.monotonic() - mark, 2)
                result.no_events_table = not table_exists(cursor, "analytics.fct_events")
                archived = _archived_files(cursor)
                # a change of the identity map re-stitches the archived days (their person ids were fixed when archived)
                identity_print = _table_fingerprint(cursor, "intermediate.int_identity_map") or "none"
                identities: dict[str, str] | None = None
                wanted = {day: f"{count}:{built}" for day, (count, built) in warm.items()}
                for day, urls in archived.items():
                    # an archived day's events are in its cold files, plus any late events loaded since (warm again)
                    cold = hashlib.sha256("|".join([*urls, identity_print]).encode()).hexdigest()
                    wanted[day] = f"{wanted.get(day, '')}|cold:{cold}"
                changed = sorted(
                    day for day, mark in wanted.items() if manifest.days.get(day, {}).get("fingerprint") != mark
                )
                if changed:
                    say(f"insights: writing {len(changed)} day(s) to the columnar copy in {folder}")
                for index, day in enumerate(changed, start=1):
                    entry = manifest.days.get(day, {})
                    name = f"events/{day}.{generation}.parquet"
                    delta = None
                    if day in warm and day not in archived and entry.get("tier") == "warm":
                        since, on = EVENT_SELECT + " and _built_at > %s", (date.fromisoformat(day),)
                        delta = _delta(cursor, folder, entry, EVENT_SCHEMA, since, on, warm[day][0], True)
                    if delta is not None:  # the rows built since the day was written, as one more file
                        table, files = delta, [*entry["files"], name]
                    else:
                        parts = []
                        if day in warm:
                            parts.append(_copy_csv(cursor, EVENT_SELECT, (date.fromisoformat(day),), EVENT_SCHEMA))
                        if day in archived:
                            identities = _identity_map(cursor) if identities is None else identities
                            parts.append(_archived_day(settings, archived[day], identities))
                        table, files = (pa.concat_tables(parts) if len(parts) > 1 else parts[0]), [name]
                    write_parquet(folder, name, _sorted(table))
                    manifest.days[day] = {
                        "files": files,
                        "rows": warm[day][0] if day in warm and day not in archived else table.num_rows,
                        "fingerprint": wanted[day],
                        "built_at": warm[day][1] if day in warm and day not in archived else None,
                        "tier": "cold" if day in archived else "warm",
                    }
                    result.days_written += 1
                    result.rows_written += table.num_rows
                    if index % 10 == 0 or index == len(changed):
                        say(f"insights: {index}/{len(changed)} days, {result.rows_written:,} events")
                for day in sorted(set(manifest.days) - set(wanted)):
                    del manifest.days[day]
                    result.days_removed += 1
                result.phases["days"] = round(time.monotonic() - mark - result.phases["fingerprints"], 2)
                mark = time.monotonic()
                result.persons_written = _sync_persons(cursor, folder, manifest, generation)
                result.phases["persons"] = round(time.monotonic() - mark, 2)
                mark = time.monotonic()
                catalogue_written = _sync_catalogue(cursor, folder, manifest, generation)
                result.phases["catalogue"] = round(time.monotonic() - mark, 2)
        finally:
            connection.close()
        if (
            result.days_written
            or result.days_removed
            or result.persons_written
            or catalogue_written
            or not manifest.generation
            or manifest.events_built_at != max((built for _rows, built in warm.values()), default=None)
        ):
            manifest.generation = generation
            manifest.synced_at = datetime.now(UTC).isoformat()
            manifest.events_built_at = max((built for _rows, built in warm.values()), default=None)
            manifest.write(folder)
        remove_unlisted(folder, manifest)
    result.seconds = time.monotonic() - started
    return result
