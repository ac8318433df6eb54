"""Retries with backoff for transient failures: a database restart, a dropped Redis connection, S3 or Kinesis
throttling. A transient failure makes the step ask Dagster for a retry (dg.RetryRequested), after 5 s, 10 s,
20 s, 40 s ... (at most 60 s, with jitter), up to RUN_RETRY_LIMIT times (default 5); anything else fails at once,
so a broken model or a failing test does not retry pointlessly. Every retried step is idempotent: a load resumes
from its committed state, dbt models upsert, hot metrics advance a cursor in the same transaction as the counts.
"""

from __future__ import annotations

import os
import random

import dagster as dg

# what PostgreSQL, libpq, Redis and AWS say when the service is restarting, unreachable or throttling
TRANSIENT_MARKERS = (
    "could not connect to server",
    "connection refused",
    "connection to server at",
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "connection already closed",
    "ssl syscall error",
    "no connection to the server",
    "error while reading from socket",
    "connection reset by peer",
    "throttling",
    "slowdown",
    "slow down",
    "provisionedthroughputexceeded",
    "requestlimitexceeded",
    "serviceunavailable",
    "too many requests",
)


# what no retry gets past: a wrong database name, user or password, missing rights (say so at once)
PERMANENT_MARKERS = (
    "does not exist",
    "authentication failed",
    "no password supplied",
    "password authentication",
    "no pg_hba.conf entry",
    "permission denied",
)


def retry_limit() -> int:
    raw = os.environ.get("RUN_RETRY_LIMIT") or "5"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"RUN_RETRY_LIMIT={raw!r} is not a whole number; set e.g. 5, or unset it") from None
    return max(value, 0)


def backoff_seconds(retry_number: int) -> float:
    """Exponential backoff with jitter: about 5, 10, 20, 40, 60, 60 ... seconds."""
    base = min(60.0, 5.0 * 2**retry_number)
    return round(base * random.uniform(0.8, 1.2), 1)


def is_transient(error: BaseException | str) -> bool:
    """True for an error (or any error in its cause chain, or a message) that a later attempt can get past."""
    if isinstance(error, str):
        text = error.lower()
        return any(marker in text for marker in TRANSIENT_MARKERS)
    if any(marker in str(error).lower() for marker in PERMANENT_MARKERS):
        return False
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in {"OperationalError", "InterfaceError", "EndpointConnectionError"}:
            return True
        if type(current).__module__.startswith("redis") and type(current).__name__ in {
            "ConnectionError",
            "TimeoutError",
            "BusyLoadingError",
        }:
            return True
        if is_transient(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_if_transient(
    context: dg.AssetExecutionContext | dg.OpExecutionContext | dg.AssetCheckExecutionContext, error: BaseException
) -> None:
    """Raise dg.RetryRequested (with backoff) when `error` is transient; return otherwise (the caller re-raises)."""
    if not is_transient(error):
        return
    limit = retry_limit()
    if isinstance(context, dg.AssetCheckExecutionContext):
        context = context.op_execution_context
    attempt = context.retry_number
    if attempt >= limit:
        context.log.error(f"transient failure, and {limit} retries are spent: {error}")
        return
    wait = backoff_seconds(attempt)
    context.log.warning(f"transient failure (retry {attempt + 1} of {limit} in {wait:.0f} s): {error}")
    raise dg.RetryRequested(max_retries=limit, seconds_to_wait=wait) from error
