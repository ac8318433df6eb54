"""Cross-process exclusion through PostgreSQL advisory locks.

Only one load (whatever started it: a sensor's run, the hourly schedule, `analyticspro load`, a test) writes the
dlt pipeline's state and raw.events at a time, and likewise one dbt build and one hot-metrics update. The lock
is held by a database session, so it is released when its holder ends in any way, a SIGKILL included: nothing
is ever left locked by a crashed run.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2

LOAD_LOCK = "analyticspro.load"
DBT_LOCK = "analyticspro.dbt"
HOT_METRICS_LOCK = "analyticspro.hot_metrics"
ERASURE_LOCK = "analyticspro.erasure"


def lock_id(name: str) -> int:
    return zlib.crc32(name.encode())


@contextmanager
def advisory_lock(
    database_url: str, name: str, say: Callable[[str], None] = print, poll_seconds: float = 1.0
) -> Iterator[None]:
    """Hold the session-level advisory lock `name` for the block, waiting (and saying so) while another holds it."""
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            waited = 0.0
            while True:
                cursor.execute("select pg_try_advisory_lock(%s)", (lock_id(name),))
                if cursor.fetchone()[0]:
                    break
                if waited == 0.0:
                    say(f"waiting for another {name.split('.')[-1]} (advisory lock {name}) to finish")
                time.sleep(poll_seconds)
                waited += poll_seconds
        yield
    finally:
        connection.close()  # ends the session, which releases the lock
