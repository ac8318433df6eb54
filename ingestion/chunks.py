"""The CPU-heavy half of a load, run in worker processes: bytes in, Arrow tables and counts out.

A worker decompresses one batch object (or takes one slice of stream records), validates and enriches every
event with the shared step (ingestion/validation.py) and returns Arrow tables, so a load uses every core
while the main process lists, reads and hands tables to dlt. Deduplication across objects happens in the
main process, which sees the results in order.
"""

from __future__ import annotations

import gc
import gzip
import io
import os
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any

import pyarrow as pa

from ingestion.batches import EVENTS_SCHEMA, REJECTED_SCHEMA, LoadCounts, rows_to_arrow
from ingestion.validation import (
    EVENT_COLUMNS,
    GZIP_MAGIC,
    REJECTED_COLUMNS,
    InvalidEvent,
    Options,
    Rejection,
    payload_text,
    split_record,
    validate_decoded,
    validate_line,
)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Validation allocates millions of small dicts that form no reference cycles; Python's cyclic garbage
    collector would scan them over and over (measured: it more than doubles the cost of a line). Reference
    counting still frees everything; the collector runs again when the chunk is done."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class ChunkResult:
    events: pa.Table | None
    rejected: pa.Table | None
    counts: LoadCounts = field(default_factory=LoadCounts)
    message_ids: list[str] = field(default_factory=list)  # of `events`, in order


def _tables(rows: list[dict[str, Any]], rejections: list[Rejection], counts: LoadCounts) -> ChunkResult:
    rejected_at = datetime.now(UTC)
    unique = {r.rejection_id: r.as_row(rejected_at) for r in rejections}
    return ChunkResult(
        events=rows_to_arrow(rows, EVENT_COLUMNS, EVENTS_SCHEMA) if rows else None,
        rejected=rows_to_arrow(list(unique.values()), REJECTED_COLUMNS, REJECTED_SCHEMA) if unique else None,
        counts=counts,
        message_ids=[row["message_id"] for row in rows],
    )


@paused_gc()
def process_object(data: bytes, source: str, options: Options, gzipped: bool | None = None) -> ChunkResult:
    """Every line of one batch object (`.jsonl` or `.jsonl.gz`; gzip is also recognized by its magic bytes).

    An object that cannot be read to its end (a truncated or corrupt gzip object) keeps the lines read before
    the damage and gets one rejection saying where reading stopped; it is marked loaded, so replace it with a
    good copy under a new key (or run with --rescan) to load the rest.
    """
    counts = LoadCounts()
    rows: list[dict[str, Any]] = []
    rejections: list[Rejection] = []
    number = 0
    if gzipped is None:
        gzipped = data[:2] == GZIP_MAGIC
    try:
        handle = gzip.GzipFile(fileobj=io.BytesIO(data)) if gzipped else io.BytesIO(data)
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            result = validate_line(line, source, f"line {number}", options)
            counts.lines_read += 1
            if isinstance(result, Rejection):
                rejections.append(result)
            else:
                rows.append(result)
    except (OSError, EOFError, zlib.error) as exc:
        counts.lines_read += 1  # the unreadable rest counts as one input, rejected
        reason = (
            f"the object could not be read after line {number}: {type(exc).__name__}: {exc}. Upload a good copy "
            f"under a new key (or re-run the load with --rescan after replacing it) to load the rest"
        )
        rejections.append(Rejection(source, f"after line {number}", reason, ""))
    counts.events = len(rows)
    counts.rejected = len(rejections)
    return _tables(rows, rejections, counts)


@paused_gc()
def process_records(records: list[tuple[str, bytes, datetime | None]], source: str, options: Options) -> ChunkResult:
    """Stream records (position, data, arrival time): each may hold one event, a JSON array of events or
    newline-delimited events, optionally gzipped. Every event inside counts as one line read."""
    counts = LoadCounts()
    rows: list[dict[str, Any]] = []
    rejections: list[Rejection] = []
    for position, data, arrival in records:
        try:
            parts = list(split_record(data))
        except InvalidEvent as exc:
            parts = None
            rejections.append(Rejection(source, position, str(exc), payload_text(data)))
            counts.lines_read += 1
        for suffix, decoded, raw in parts or ():
            where = f"{position} {suffix}".strip()
            counts.lines_read += 1
            if decoded is None:
                result = validate_line(raw, source, where, options, received_fallback=arrival)
            else:
                result = validate_decoded(decoded, raw, source, where, options, received_fallback=arrival)
            if isinstance(result, Rejection):
                rejections.append(result)
            else:
                rows.append(result)
    counts.events = len(rows)
    counts.rejected = len(rejections)
    return _tables(rows, rejections, counts)


def _exit_with_parent(parent: int) -> None:
    """Worker start-up: end this worker within a second of the process that started it ending, even by SIGKILL (a
    killed load must not leave validation workers behind): a watchdog thread polls the parent's pid. (Not Linux's
    PR_SET_PDEATHSIG: it follows the *thread* that started the worker, here the loader's prepare thread, and killed
    the workers when that thread ended; a killed worker can leave the pool's queue locked and its shutdown waiting
    forever.)"""
    if os.getppid() != parent:  # the parent died before this worker started
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class ChunkRunner:
    """Runs chunk work in `workers` processes (in this process when workers is 1), yielding results in
    submission order with at most 2 x workers chunks in flight, so memory stays bounded."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ChunkRunner:
        if self.workers > 1:
            # spawn: workers start from a clean process (safe beside Dagster's and dlt's threads) and are
            # children of this one, so they can follow it when it dies
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=get_context("spawn"), initializer=_exit_with_parent, initargs=(os.getpid(),)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def map(self, fn: Any, jobs: Iterable[tuple[Any, ...]]) -> Iterator[ChunkResult]:
        if self._pool is None:
            for args in jobs:
                yield fn(*args)
            return
        in_flight: list[Future] = []
        for args in jobs:
            in_flight.append(self._pool.submit(fn, *args))
            if len(in_flight) >= 2 * self.workers:
                yield in_flight.pop(0).result()
        for future in in_flight:
            yield future.result()
