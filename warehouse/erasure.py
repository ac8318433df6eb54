"""GDPR erasure: `analyticspro forget --user-id ID` (and the Dagster job `forget_person`, same config).

One person — the user id and every anonymous id ever seen with it — is deleted from every tier:

1. the suppression list first (`ops.suppressed_identities`, hashes only), so a load that starts from now on drops
   their events; then the load lock is taken, so a load already running finishes before anything is deleted;
2. PostgreSQL: raw.events, the quarantined lines that mention them (raw.rejected_events), and every row of every
   staging / intermediate / analytics table with their person_id, user_id or anonymous_id (one transaction);
3. Redis: their entries in the hot-metrics state (people sets, last-seen times, learned identities);
4. the cold archive, and the Parquet lake Spark builds from (its events and the tables a Spark build wrote): each
   file holding their rows is rewritten without them;
5. the landing files in the bucket: each batch object holding a line of theirs is rewritten without it (and its
   raw.loaded_objects row updated, so it is not read again);
6. the insights engine's columnar copy (insights/store.py): each day file holding their rows is rewritten, the old
   ones deleted at once; a dashboards process drops them from memory at its next question.

`ops.erasure_requests` records each request: when, who asked, how many identities and rows per tier — never the
ids or the data. Aggregates (daily counts, funnels, cohorts, MRR totals) hold no personal data and keep their
numbers until the next incremental run, which recomputes the dates and keys listed in `ops.erased_events` (dates and
event names of the deleted events, never ids).
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg2
import redis
from psycopg2 import sql

from common.db import PERSON_COLUMNS, table_exists
from common.locks import DBT_LOCK, ERASURE_LOCK, LOAD_LOCK, advisory_lock
from common.ops import SUPPRESSION_TABLE, ensure_ops_tables
from common.redis_keys import HotKeys
from common.settings import Settings
from ingestion.bucket import list_objects, object_key
from ingestion.suppression import identity_hash
from insights.scrub import scrub_store
from warehouse.archive import scrub_archive
from warehouse.lake import scrub_lake

MART_SCHEMAS = ("staging", "intermediate", "analytics")


class NothingToForget(ValueError):
    """The user id is empty."""


@dataclass
class ErasureReport:
    request_id: str
    identities: int
    rows: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        parts = ", ".join(f"{tier} {count:,}" for tier, count in self.rows.items() if count)
        return f"erasure {self.request_id}: {self.identities} identities; removed {parts or 'nothing (no data held)'}"


def resolve_identities(connection: psycopg2.extensions.connection, user_id: str) -> list[str]:
    """The anonymous ids of `user_id`: seen with it in raw events, mapped to it by the identity map, or stitched
    to it in fct_events."""
    found: set[str] = set()
    with connection.cursor() as cursor:
        if table_exists(cursor, "raw.events"):
            cursor.execute(
                "select distinct anonymous_id from raw.events where user_id = %s and anonymous_id is not null",
                (user_id,),
            )
            found.update(row[0] for row in cursor.fetchall())
        if table_exists(cursor, "intermediate.int_identity_map"):
            cursor.execute(
                "select anonymous_id from intermediate.int_identity_map where user_id = %s or previous_user_id = %s",
                (user_id, user_id),
            )
            found.update(row[0] for row in cursor.fetchall())
        if table_exists(cursor, "analytics.fct_events"):
            cursor.execute(
                "select distinct anonymous_id from analytics.fct_events "
                "where person_id = %s and anonymous_id is not null",
                (user_id,),
            )
            found.update(row[0] for row in cursor.fetchall())
    found.discard(user_id)
    return sorted(found)


def _person_tables(cursor) -> list[tuple[str, str, list[str]]]:
    """(schema, table, person columns) of every ordinary or partitioned table in the mart schemas."""
    cursor.execute(
        """
        select c.table_schema, c.table_name, array_agg(c.column_name::text order by c.column_name)
        from information_schema.columns as c
        join pg_class as t on t.relname = c.table_name
        join pg_namespace as n on n.oid = t.relnamespace and n.nspname = c.table_schema
        where c.table_schema = any(%s) and c.column_name = any(%s)
          and t.relkind in ('r', 'p') and not t.relispartition
        group by c.table_schema, c.table_name
        order by 1, 2
        """,
        (list(MART_SCHEMAS), list(PERSON_COLUMNS)),
    )
    return cursor.fetchall()


def _like_patterns(identities: list[str]) -> list[str]:
    """LIKE patterns matching each id as a JSON string anywhere in a quarantined line."""
    patterns = []
    for value in identities:
        encoded = json.dumps(value)  # "id", as it is written in the JSON text
        patterns.append("%" + encoded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    return patterns


def _record_erased_events(cursor, user_id: str, everyone: list[str], anonymous: list[str]) -> None:
    """Before the person's rows go: the (date, event name) of each of their events (no ids) in ops.erased_events
    (dbt's), so the next incremental run recomputes the counts, cohorts and catalogue entries those events were in;
    also the dates of their signup and first activity from dim_users (their cohort, even when archived)."""
    if not table_exists(cursor, "ops.erased_events"):
        return  # dbt never ran here: no aggregate holds their events
    if table_exists(cursor, "analytics.fct_events"):
        cursor.execute(
            "insert into ops.erased_events (event_date, event_name) select distinct event_date, event_name "
            "from analytics.fct_events where person_id = any(%s) or user_id = %s or anonymous_id = any(%s)",
            (everyone, user_id, anonymous or [""]),
        )
    if table_exists(cursor, "analytics.dim_users"):
        cursor.execute(
            "insert into ops.erased_events (event_date) select distinct day from analytics.dim_users, "
            "lateral (values (signup_date), ((first_activity_at at time zone 'UTC')::date)) as days (day) "
            "where person_id = any(%s) and day is not null",
            (everyone,),
        )


def delete_from_postgres(
    connection: psycopg2.extensions.connection, user_id: str, anonymous: list[str]
) -> dict[str, int]:
    """Delete every row of the person in raw and mart tables, in one transaction; rows per table."""
    everyone = [user_id, *anonymous]
    rows: dict[str, int] = {}
    with connection.cursor() as cursor:
        if table_exists(cursor, "raw.events"):
            cursor.execute(
                "delete from raw.events where user_id = %s or anonymous_id = any(%s)", (user_id, anonymous or [""])
            )
            rows["raw.events"] = cursor.rowcount
        if table_exists(cursor, "raw.rejected_events"):
            cursor.execute("delete from raw.rejected_events where payload like any(%s)", (_like_patterns(everyone),))
            rows["raw.rejected_events"] = cursor.rowcount
        _record_erased_events(cursor, user_id, everyone, anonymous)
        if table_exists(cursor, "ops.person_archive_history"):
            cursor.execute("delete from ops.person_archive_history where person_id = any(%s)", (everyone,))
            rows["ops.person_archive_history"] = cursor.rowcount
        for schema, table, columns in _person_tables(cursor):
            conditions = []
            args: list = []
            if "person_id" in columns:
                conditions.append(sql.SQL("person_id = any(%s)"))
                args.append(everyone)
            if "user_id" in columns:
                conditions.append(sql.SQL("user_id = %s"))
                args.append(user_id)
            if "anonymous_id" in columns:
                conditions.append(sql.SQL("anonymous_id = any(%s)"))
                args.append(anonymous or [""])
            statement = sql.SQL("delete from {}.{} where {}").format(
                sql.Identifier(schema), sql.Identifier(table), sql.SQL(" or ").join(conditions)
            )
            cursor.execute(statement, args)
            rows[f"{schema}.{table}"] = cursor.rowcount
    return rows


def delete_from_redis(client: redis.Redis, prefix: str, identities: list[str]) -> int:
    """Remove the person from the hot-metrics state (counters are aggregates and stay); entries removed."""
    removed = 0
    patterns = HotKeys(prefix).person_state_patterns
    for key in client.scan_iter(patterns["set"], count=1000):
        removed += client.srem(key, *identities)
    for key in client.scan_iter(patterns["zset"], count=1000):
        removed += client.zrem(key, *identities)
    for key in client.scan_iter(patterns["hash"], count=1000):
        removed += client.hdel(key, *identities)
    return removed


def _line_is_theirs(line: bytes, user_id: str, anonymous: set[str]) -> bool:
    try:
        event = json.loads(line)
    except ValueError:
        return False
    if not isinstance(event, dict):
        return False
    return event.get("userId") == user_id or event.get("anonymousId") in anonymous


def scrub_bucket(
    settings: Settings, connection: psycopg2.extensions.connection, user_id: str, anonymous: list[str], say
) -> tuple[int, int]:
    """Rewrite every landing object that holds a line of the person's without those lines; (objects, lines)."""
    needles = [json.dumps(value).encode() for value in [user_id, *anonymous]]
    anonymous_set = set(anonymous)
    objects = lines_removed = 0
    rewritten: dict[str, tuple] = {}
    for item in list_objects(settings.events_bucket_url):
        data = item.read_bytes()
        compressed = item["file_name"].endswith(".gz")
        try:
            text = gzip.decompress(data) if compressed else data
        except (OSError, EOFError):
            continue  # an unreadable object: its readable part was quarantined at load; nothing to parse here
        if not any(needle in text for needle in needles):
            continue
        kept = [line for line in text.splitlines(keepends=True) if not _line_is_theirs(line, user_id, anonymous_set)]
        removed = len(text.splitlines()) - len(kept)
        if not removed:
            continue
        rewritten[item["file_url"]] = object_key(item)
        body = b"".join(kept)
        body = gzip.compress(body) if compressed else body
        with item.fsspec.open(item["file_url"], "wb") as handle:
            handle.write(body)
        objects += 1
        lines_removed += removed
        say(f"rewrote {item['file_url']} without {removed} line(s)")
    if rewritten:  # the loaded-objects record follows the rewrite, so the object is not read again
        with connection.cursor() as cursor:
            for item in list_objects(settings.events_bucket_url):
                if item["file_url"] in rewritten and table_exists(cursor, "raw.loaded_objects"):
                    url, size, modified = object_key(item)
                    _, old_size, old_modified = rewritten[url]
                    cursor.execute(
                        "update raw.loaded_objects set size_bytes = %s, modified_at = %s "
                        "where object_url = %s and size_bytes = %s and modified_at = %s",
                        (size, modified, url, old_size, old_modified),
                    )
    return objects, lines_removed


def forget(settings: Settings, user_id: str, requested_by: str, say: Callable[[str], None] = print) -> ErasureReport:
    """Erase one person from every tier and record the request; safe to run again (it finds nothing more)."""
    if not user_id or not user_id.strip():
        raise NothingToForget("give the user id to erase: analyticspro forget --user-id ID")

    request_id = str(uuid.uuid4())
    requested_at = datetime.now(UTC)
    connection = psycopg2.connect(settings.database_url)
    try:
        ensure_ops_tables(connection)
        with advisory_lock(settings.database_url, ERASURE_LOCK, say):
            anonymous = resolve_identities(connection, user_id)
            identities = [user_id, *anonymous]
            with connection.cursor() as cursor:
                for kind, identity in [("user_id", user_id)] + [("anonymous_id", a) for a in anonymous]:
                    cursor.execute(
                        f"insert into {SUPPRESSION_TABLE} (identity_hash, kind, request_id) values (%s, %s, %s) "
                        "on conflict (identity_hash) do nothing",
                        (identity_hash(identity), kind, request_id),
                    )
            connection.commit()
            say(f"suppressed {len(identities)} identities (the user id and {len(anonymous)} anonymous ids)")
            with advisory_lock(settings.database_url, LOAD_LOCK, say):  # a load in flight finishes first
                # and a dbt build in flight: the erasure's transaction then starts after it, so the next build's
                # high-water mark is older than ops.erased_events.erased_at and it sees the erasure (a build that
                # read the tables while the delete was uncommitted would miss it for good)
                with advisory_lock(settings.database_url, DBT_LOCK, say):
                    # ids stitched by a load that finished meanwhile
                    anonymous = sorted(set(anonymous) | set(resolve_identities(connection, user_id)))
                    identities = [user_id, *anonymous]
                    rows = delete_from_postgres(connection, user_id, anonymous)
                    connection.commit()
                say(f"PostgreSQL: {sum(rows.values()):,} rows deleted")
                client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
                rows["redis"] = delete_from_redis(client, settings.redis_key_prefix, identities)
                rows["archive"] = scrub_archive(settings, user_id, anonymous, say)
                rows["lake"] = scrub_lake(user_id, anonymous, say=say)
                rows["bucket_objects"], rows["bucket_lines"] = scrub_bucket(
                    settings, connection, user_id, anonymous, say
                )
                rows["insights"] = scrub_store(settings, identities, say)
                connection.commit()
        with connection.cursor() as cursor:
            cursor.execute(
                "insert into ops.erasure_requests "
                "(request_id, requested_at, completed_at, requested_by, identities, rows_deleted) "
                "values (%s, %s, %s, %s, %s, %s)",
                (request_id, requested_at, datetime.now(UTC), requested_by, len(identities), json.dumps(rows)),
            )
        connection.commit()
    finally:
        connection.close()
    return ErasureReport(request_id=request_id, identities=len(identities), rows=rows)
