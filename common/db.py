"""The services every part needs: PostgreSQL (the database in DATABASE_URL, created when missing) and Redis, with
errors that say what to start; and the existence check every read-out makes before it queries."""

from __future__ import annotations

from datetime import date

import psycopg2
import redis
from psycopg2 import sql

from common.settings import Settings

# the columns that name a person in any table: erasure reaches every table that has one of them
PERSON_COLUMNS = ("person_id", "user_id", "anonymous_id")


class ServiceUnavailable(RuntimeError):
    """A service we need is not reachable; the message says what to do."""


def ensure_database(settings: Settings) -> bool:
    """Create the database named in DATABASE_URL if it is missing; True if it was created."""
    name = settings.database_name
    try:
        connection = psycopg2.connect(settings.database_url_for("postgres"), connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise ServiceUnavailable(
            f"cannot reach PostgreSQL at {settings.redacted_database_url}: {str(exc).strip()}\n"
            "Start it with `scripts/ensure-services.sh` (installs and starts PostgreSQL and Redis on "
            "Debian/Ubuntu as root), `docker compose up -d`, or point DATABASE_URL at a running server."
        ) from exc
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("select 1 from pg_database where datname = %s", (name,))
            if cursor.fetchone():
                return False
            cursor.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            return True
    finally:
        connection.close()


def ensure_redis(settings: Settings) -> None:
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"cannot reach Redis at {settings.redis_url}: {exc}\n"
            "Start it with `scripts/ensure-services.sh`, `docker compose up -d`, or point REDIS_URL at a "
            "running server."
        ) from exc


def drop_database(settings: Settings) -> None:
    connection = psycopg2.connect(settings.database_url_for("postgres"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.database_name))
            )
    finally:
        connection.close()


def table_exists(cursor, qualified: str) -> bool:
    """True when the table (or view) `schema.name` exists; every read-out checks before it queries."""
    cursor.execute("select to_regclass(%s) is not null", (qualified,))
    return bool(cursor.fetchone()[0])


def fct_events_days(cursor) -> list[date]:
    """The days that have an analytics.fct_events partition in PostgreSQL (the warm tier), from the catalogue: no
    row is read."""
    if not table_exists(cursor, "analytics.fct_events"):
        return []
    cursor.execute(
        """
        select cast(substring(pg_get_expr(child.relpartbound, child.oid) from $r$FROM \\('([0-9-]+)'\\)$r$) as date)
        from pg_inherits join pg_class as child on child.oid = pg_inherits.inhrelid
        where pg_inherits.inhparent = 'analytics.fct_events'::regclass order by 1
        """
    )
    return [row[0] for row in cursor.fetchall()]
