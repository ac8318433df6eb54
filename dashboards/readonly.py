"""The read-only PostgreSQL role that the dashboards API and BI tools (Metabase, Superset, ...) use.

It can connect to the warehouse database and SELECT from the `analytics` schema (the marts) — now and
after every dbt rebuild (default privileges of the role that builds the marts) — and nothing else: no
other schema, no writes (its sessions are read-only by default, and it owns nothing), a statement timeout.
"""

from __future__ import annotations

import contextlib

import psycopg2
from psycopg2 import errors, sql

from dashboards.config import DashboardSettings, get_dashboard_settings

MARTS_SCHEMA = "analytics"
STATEMENT_TIMEOUT = "60s"


def ensure_readonly_role(settings: DashboardSettings) -> None:
    """Create the role if missing and grant it read access to the marts of this database (idempotent)."""
    role = sql.Identifier(settings.readonly_user)
    connection = psycopg2.connect(settings.base.database_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("select 1 from pg_roles where rolname = %s", (settings.readonly_user,))
            if cursor.fetchone() is None:
                with contextlib.suppress(errors.DuplicateObject, errors.UniqueViolation):  # another process won
                    cursor.execute(sql.SQL("create role {} login").format(role))
            cursor.execute(
                sql.SQL("alter role {} with login nosuperuser nocreatedb nocreaterole noinherit").format(role)
            )
            if settings.readonly_password:
                cursor.execute(sql.SQL("alter role {} with password %s").format(role), (settings.readonly_password,))
            cursor.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(role))
            cursor.execute(sql.SQL("alter role {} set statement_timeout = %s").format(role), (STATEMENT_TIMEOUT,))
            cursor.execute("select current_database(), current_user")
            database, owner = cursor.fetchone()
            schema = sql.Identifier(MARTS_SCHEMA)
            cursor.execute(sql.SQL("create schema if not exists {}").format(schema))
            statements = [
                "grant connect on database {database} to {role}",
                "grant usage on schema {schema} to {role}",
                "grant select on all tables in schema {schema} to {role}",
                "alter default privileges for role {owner} in schema {schema} grant select on tables to {role}",
            ]
            for statement in statements:
                cursor.execute(
                    sql.SQL(statement).format(
                        database=sql.Identifier(database), role=role, schema=schema, owner=sql.Identifier(owner)
                    )
                )
    finally:
        connection.close()


def drop_readonly_role(settings: DashboardSettings) -> None:
    """Remove the role's privileges in this database and, when it holds none elsewhere, the role itself."""
    connection = psycopg2.connect(settings.base.database_url)
    connection.autocommit = True
    role = sql.Identifier(settings.readonly_user)
    try:
        with connection.cursor() as cursor:
            cursor.execute("select 1 from pg_roles where rolname = %s", (settings.readonly_user,))
            if cursor.fetchone() is None:
                return
            cursor.execute(sql.SQL("drop owned by {}").format(role))
            cursor.execute("select current_database()")
            database = cursor.fetchone()[0]
            cursor.execute(sql.SQL("revoke connect on database {} from {}").format(sql.Identifier(database), role))
            with contextlib.suppress(errors.DependentObjectsStillExist):  # it still reads another database's marts
                cursor.execute(sql.SQL("drop role {}").format(role))
    finally:
        connection.close()


def ensure_reader() -> str:
    """The read-only role of the dashboards API and BI tools, with its grants in this database; returns its name."""
    dashboard_settings = get_dashboard_settings()
    ensure_readonly_role(dashboard_settings)
    return dashboard_settings.readonly_user
