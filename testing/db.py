"""A query helper the tests share: run one statement on the settings' database, return its rows."""

from __future__ import annotations

import psycopg2


def rows(settings, sql: str, args: tuple = ()) -> list[tuple]:
    """The rows of `sql` (none for a statement that returns none), on a connection of its own."""
    connection = psycopg2.connect(settings.database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, args or None)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()
