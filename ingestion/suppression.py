"""The suppression list of erased people (GDPR): events of theirs that arrive after the erasure (still in a
Kinesis stream, re-delivered, in a batch file written before the request) are dropped at load, and counted.

`ops.suppressed_identities` holds SHA-256 hashes of the user and anonymous ids, not the ids themselves; a load
hashes the distinct ids it reads and drops the rows whose user or anonymous id matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc

from common.db import table_exists
from common.ops import SUPPRESSION_TABLE


def identity_hash(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()


def load_suppressed(database_url: str) -> frozenset[str]:
    """The hashes in the suppression list (empty when nobody was erased yet)."""
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            if not table_exists(cursor, SUPPRESSION_TABLE):
                return frozenset()
            cursor.execute(f"select identity_hash from {SUPPRESSION_TABLE}")
            return frozenset(row[0] for row in cursor.fetchall())
    finally:
        connection.close()


def _matching(values: pa.ChunkedArray, suppressed: frozenset[str]) -> list[str]:
    distinct: Iterable[str | None] = pc.unique(values).to_pylist()
    return [value for value in distinct if value is not None and identity_hash(value) in suppressed]


def drop_suppressed(table: pa.Table, suppressed: frozenset[str]) -> tuple[pa.Table, int]:
    """`table` without the rows of suppressed people, and how many rows were dropped."""
    if not suppressed or table.num_rows == 0:
        return table, 0
    users = _matching(table.column("user_id"), suppressed)
    anonymous = _matching(table.column("anonymous_id"), suppressed)
    if not users and not anonymous:
        return table, 0
    hit = pc.or_kleene(
        pc.fill_null(pc.is_in(table.column("user_id"), value_set=pa.array(users, pa.string())), False),
        pc.fill_null(pc.is_in(table.column("anonymous_id"), value_set=pa.array(anonymous, pa.string())), False),
    )
    kept = table.filter(pc.invert(hit))
    return kept, table.num_rows - kept.num_rows
