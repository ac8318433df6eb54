"""The operations tables AnalyticsPro writes outside dbt, defined and created in one place (ensure_ops_tables, called
by every part before it writes one). ops.person_archive_history is dbt's (a source of dim_users, created by its
on-run-start: dbt_project/macros/ops_tables.sql)."""

from __future__ import annotations

import psycopg2.extensions

SUPPRESSION_TABLE = "ops.suppressed_identities"

OPS_DDL = """
create schema if not exists ops;
create table if not exists ops.archived_partitions (
    event_date date not null,
    table_name text not null,
    object_url text not null,
    row_count bigint not null,
    rows_md5 text not null,
    file_sha256 text not null,
    archived_at timestamptz not null,
    restored_at timestamptz,
    primary key (object_url)
);
comment on table ops.archived_partitions is
    'Days moved to the cold tier (Parquet in the bucket): one row per file, with its verified row count and checksums.';
create table if not exists ops.lake_days (
    event_date date primary key,
    row_count bigint not null,
    max_load_id text not null,
    object_url text not null,
    written_at timestamptz not null
);
comment on table ops.lake_days is
    'Days of raw.events written to the lake (EVENTS_LAKE_URL/events/event_date=YYYY-MM-DD/events.parquet).';
create table if not exists ops.suppressed_identities (
    identity_hash text primary key,
    kind text not null,
    request_id uuid not null,
    added_at timestamptz not null default now()
);
comment on table ops.suppressed_identities is
    'SHA-256 of the user and anonymous ids of erased people: loads drop their events (GDPR).';
create table if not exists ops.erasure_requests (
    request_id uuid primary key,
    requested_at timestamptz not null,
    completed_at timestamptz,
    requested_by text not null,
    identities integer not null,
    rows_deleted jsonb not null default '{}'::jsonb
);
comment on table ops.erasure_requests is
    'One row per GDPR erasure (analyticspro forget): when, who asked, rows removed per tier; never the erased ids.';
"""


def ensure_ops_tables(connection: psycopg2.extensions.connection) -> None:
    """Create the operations tables that are missing (idempotent) and commit."""
    with connection.cursor() as cursor:
        cursor.execute(OPS_DDL)
    connection.commit()
