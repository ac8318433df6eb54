"""Group commit: the requests that arrive together share one durable write, and each is answered after it.

A request hands its JSON lines to `BatchWriter.submit` and waits. One writer task writes everything pending, in a
thread, to the sink (or, when the sink refuses, to the spool), starting at most one write per `COLLECTOR_FLUSH_MS`
(sooner when `COLLECTOR_FLUSH_EVENTS` are pending): a request that arrives after a quiet spell is written at once,
while under load each write carries every request of the last interval, so the number of objects stays
proportional to time, not to traffic. A request is answered only after its write returned: 200 means written to
the sink or fsynced in the spool.

Buffer mode (`COLLECTOR_BUFFER_SECONDS` > 0), for folder and S3 sinks under steady traffic: every write goes to the
spool (fsynced: 200 then means durable on the collector's disk), and every that many seconds the spooled batches
are shipped as one object (Firehose's trade: a minute's delay for ~1 object a minute instead of up to 20 a second).

After a sink failure the writer goes straight to the spool (no request waits for a sink that is down) until the
drain task, every `COLLECTOR_SPOOL_RETRY_SECONDS`, has written a spooled batch to the sink again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from ingestion.collector.sinks import Sink, SinkError, batch_name, now_utc
from ingestion.collector.spool import Spool

log = logging.getLogger("analyticspro.collector")


class Unavailable(Exception):
    """Neither the sink nor the spool could keep a batch (the local disk is full or read-only)."""


@dataclass
class WriterStats:
    accepted_events: int = 0
    written_to_sink: int = 0
    written_to_spool: int = 0
    drained_from_spool: int = 0
    writes: int = 0
    sink_ok: bool = True
    last_sink_error: str | None = None
    last_sink_error_at: float | None = None
    spool_started_at: float | None = field(default=None, repr=False)


class BatchWriter:
    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        flush_ms: int = 50,
        flush_events: int = 20_000,
        spool_retry_seconds: float = 5,
        buffer_seconds: float = 0,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.flush_seconds = flush_ms / 1000
        self.flush_events = flush_events
        self.spool_retry_seconds = spool_retry_seconds
        self.buffer_seconds = buffer_seconds
        self.stats = WriterStats()
        self._pending: list[tuple[Sequence[bytes], asyncio.Future]] = []
        self._pending_events = 0
        self._last_write = 0.0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="collector-write")
        self._drain_executor = ThreadPoolExecutor(1, thread_name_prefix="collector-drain")
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write_loop()), asyncio.create_task(self._drain_loop())]

    async def close(self) -> None:
        """Write what is pending, then stop (the spool keeps anything the sink did not take)."""
        self._closing = True
        self._wake.set()
        self._full.set()
        await self._tasks[0]
        self._tasks[1].cancel()
        if self.buffer_seconds > 0:  # ship what is buffered now rather than at the next start
            await asyncio.get_running_loop().run_in_executor(self._drain_executor, self.drain_once)
        self._executor.shutdown(wait=True)
        self._drain_executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, lines: Sequence[bytes]) -> str:
        """Wait until the lines are durably written; returns "sink" or "spool", raises Unavailable."""
        if self._closing:
            raise Unavailable("the collector is shutting down; retry")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((lines, future))
        self._pending_events += len(lines)
        self._wake.set()
        if self._pending_events >= self.flush_events:
            self._full.set()
        return await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if not self._pending:
                self._wake.clear()
                if self._closing:
                    return
                continue
            linger = self._last_write + self.flush_seconds - time.monotonic()
            if linger > 0 and not self._closing and self._pending_events < self.flush_events:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), linger)
            self._last_write = time.monotonic()
            batch, self._pending, self._pending_events = self._pending, [], 0
            self._wake.clear()
            self._full.clear()
            lines = [line for request_lines, _ in batch for line in request_lines]
            try:
                where = await loop.run_in_executor(self._executor, self._write, lines, now_utc())
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the loop goes on
                log.error("could not keep a batch of %d events anywhere: %s", len(lines), exc)
                error = Unavailable(str(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.stats.accepted_events += len(lines)
            for _, future in batch:
                if not future.done():
                    future.set_result(where)

    def _write(self, lines: list[bytes], received: datetime) -> str:
        """In the writer thread: the sink, else the spool."""
        name = batch_name(received)
        self.stats.writes += 1
        if self.buffer_seconds > 0:  # buffer mode: acknowledged once fsynced locally, shipped by the drain task
            self.spool.write(lines, name, received)
            self.stats.written_to_spool += len(lines)
            return "spool"
        remaining = lines
        if self.stats.sink_ok:
            try:
                self.sink.write(lines, name, received)
                self.stats.written_to_sink += len(lines)
                return "sink"
            except SinkError as exc:
                self._sink_failed(exc)
                remaining = exc.remaining
                self.stats.written_to_sink += len(lines) - len(remaining)
        self.spool.write(remaining, name, received)  # OSError here -> Unavailable for these requests
        self.stats.written_to_spool += len(remaining)
        return "spool"

    def _sink_failed(self, exc: Exception) -> None:
        if self.stats.sink_ok:
            log.warning(
                "the sink %s failed (%s); spooling to %s until it answers", self.sink.url, exc, self.spool.folder
            )
        self.stats.sink_ok = False
        self.stats.last_sink_error = str(exc)[:500]
        self.stats.last_sink_error_at = time.time()

    async def _drain_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            buffering = self.buffer_seconds > 0 and self.stats.sink_ok
            await asyncio.sleep(self.buffer_seconds if buffering else self.spool_retry_seconds)
            try:
                await loop.run_in_executor(self._drain_executor, self.drain_once)
            except Exception:  # noqa: BLE001 - never let the drain task die
                log.exception("draining the spool failed; retrying in %s s", self.spool_retry_seconds)

    def drain_once(self) -> int:
        """Write spooled batches to the sink; marks the sink healthy again once one was written."""
        if not self.spool.files():
            self.stats.sink_ok = True  # nothing waits: the next write tries the sink again
            return 0
        try:
            drained = self.spool.drain(self.sink, merge=self.buffer_seconds > 0)
        except SinkError as exc:
            self._sink_failed(exc)
            return 0
        if drained or not self.spool.files():
            if not self.stats.sink_ok:
                log.warning("the sink %s answers again; drained %d spooled events", self.sink.url, drained)
            self.stats.sink_ok = True
        self.stats.drained_from_spool += drained
        return drained
