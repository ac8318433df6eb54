"""Which failures retry: a restarting database, lost connections and throttling do; a wrong database or
password, and a failing model, do not (they would only fail again, later)."""

from __future__ import annotations

import psycopg2
import pytest
import redis
from botocore.exceptions import ClientError

from orchestration.retries import backoff_seconds, is_transient


def test_a_missing_database_is_not_transient(settings):
    with pytest.raises(psycopg2.OperationalError) as caught:
        psycopg2.connect(settings.database_url_for("analyticspro_no_such_database"))
    assert not is_transient(caught.value)


def test_transient_and_permanent_failures():
    assert is_transient(psycopg2.OperationalError("server closed the connection unexpectedly"))
    assert is_transient(psycopg2.OperationalError("FATAL:  the database system is starting up"))
    assert is_transient(redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."))
    throttled = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}}, "GetRecords"
    )
    assert is_transient(throttled)
    wrapped = RuntimeError("Pipeline execution failed at `step=load`")
    wrapped.__cause__ = psycopg2.OperationalError("terminating connection due to administrator command")
    assert is_transient(wrapped)  # dlt wraps the database error
    assert not is_transient(ValueError("column x does not exist"))
    assert not is_transient(RuntimeError("Failure in test unique_fct_events_message_id"))
    assert not is_transient(psycopg2.OperationalError('FATAL:  password authentication failed for user "x"'))


def test_backoff_grows_to_a_minute():
    assert 4 <= backoff_seconds(0) <= 6
    assert 16 <= backoff_seconds(2) <= 24
    assert 48 <= backoff_seconds(6) <= 72
