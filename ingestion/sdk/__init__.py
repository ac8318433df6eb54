"""AnalyticsPro's Python SDK: Segment's calls, sent in the background to a collector or straight to a sink.

    from ingestion.sdk import Analytics

    analytics = Analytics("WRITE_KEY", host="http://127.0.0.1:8060")      # a collector (or any Segment-API host)
    analytics = Analytics(sink="kinesis://events")                         # or straight to Kinesis, S3, a folder
    analytics.track("user-42", "button_clicked", {"button_id": "start_free_trial"})
    analytics.identify("user-42", {"plan": "pro", "mrr": 99})
    analytics.page(anonymous_id="anon-9", name="Pricing", properties={"path": "/pricing"})
    analytics.alias("anon-9", "user-42")
    analytics.group("user-42", "acme", {"plan": "enterprise"})
    analytics.flush()       # wait until everything queued is sent (or has failed for good)
    analytics.shutdown()    # flush, then stop the thread (also done at interpreter exit)

A call never blocks and never raises: it serializes the event (32 KB at most), puts it on a bounded queue and
returns its messageId. A background thread (`threads` of them for heavy senders) sends batches (up to
`batch_size` events and 475 KB, at least every `flush_interval` seconds), retrying network errors, 429 and 5xx
with exponential backoff and jitter (Retry-After is honoured); a 4xx other than 429 is not retried. Events that do
not fit the queue, are invalid, or fail for good are counted in `stats` and logged (logger `analyticspro.sdk`),
and `on_error(exception, events)` is called.
"""

from __future__ import annotations

import atexit
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from ingestion.sdk.transport import VERSION, HttpTransport, SendError, SinkTransport, iso_utc

__all__ = ["Analytics", "SendError"]

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 475_000  # under the collector's 500 KB, with room for the envelope
LIBRARY = {"name": "analyticspro-python", "version": VERSION}

log = logging.getLogger("analyticspro.sdk")


@dataclass
class Stats:
    queued: int = 0
    sent: int = 0
    dropped: int = 0  # the queue was full
    invalid: int = 0  # refused before queueing (no user, no event name, over 32 KB, not serializable)
    failed: int = 0  # given up on after retries, or refused by the collector
    retries: int = 0
    batches: int = 0


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Analytics:
    """A client; one per process is enough (it is thread-safe)."""

    def __init__(
        self,
        write_key: str | None = None,
        host: str = "http://127.0.0.1:8060",
        *,
        sink: str | None = None,
        batch_size: int = 100,
        flush_interval: float = 0.5,
        max_queue_size: int = 10_000,
        max_retries: int = 10,
        timeout: float = 15,
        gzip: bool = True,
        on_error: Callable[[Exception, list[bytes]], None] | None = None,
        send: bool = True,
        threads: int = 1,
    ) -> None:
        if sink is None and not write_key:
            raise ValueError("Analytics needs a write_key (for a collector) or sink= (kinesis://, s3://, a folder)")
        self.stats = Stats()
        self.batch_size = max(1, min(batch_size, 2500))
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.on_error = on_error
        self.send = send
        # one transport per sending thread (a connection is not shared between threads); made now, so a bad host
        # or sink URL fails here, in the caller's hands
        self._transports: list[HttpTransport | SinkTransport] = [
            SinkTransport(sink) if sink is not None else HttpTransport(write_key or "", host, timeout, gzip)
            for _ in range(max(1, threads))
        ]
        self._queue: queue.Queue[bytes] = queue.Queue(max_queue_size)
        self._flush_now = threading.Event()
        self._stopping = threading.Event()
        self._stats_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(transport,), name=f"analyticspro-sdk-{n}", daemon=True)
            for n, transport in enumerate(self._transports)
        ]
        for thread in self._threads:
            thread.start()
        atexit.register(self.shutdown, timeout=5)

    # -- the calls --------------------------------------------------------------------------------------------
    def track(
        self,
        user_id: str | None = None,
        event: str | None = None,
        properties: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | str | None = None,
        anonymous_id: str | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str | None:
        if not isinstance(event, str) or not event:
            return self._invalid("track needs an event name")
        return self._enqueue("track", user_id, anonymous_id, context, timestamp, integrations, message_id,
                             event=event, properties=properties or {})  # fmt: skip

    def identify(
        self,
        user_id: str | None = None,
        traits: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | str | None = None,
        anonymous_id: str | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str | None:
        return self._enqueue("identify", user_id, anonymous_id, context, timestamp, integrations, message_id,
                             traits=traits or {})  # fmt: skip

    def page(
        self,
        user_id: str | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | str | None = None,
        anonymous_id: str | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str | None:
        return self._enqueue("page", user_id, anonymous_id, context, timestamp, integrations, message_id,
                             name=name, category=category, properties=properties or {})  # fmt: skip

    def screen(
        self,
        user_id: str | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | str | None = None,
        anonymous_id: str | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str | None:
        return self._enqueue("screen", user_id, anonymous_id, context, timestamp, integrations, message_id,
                             name=name, category=category, properties=properties or {})  # fmt: skip

    def group(
        self,
        user_id: str | None = None,
        group_id: str | None = None,
        traits: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | str | None = None,
        anonymous_id: str | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str | None:
        if group_id in (None, ""):
            return self._invalid("group needs a group_id")
        return self._enqueue("group", user_id, anonymous_id, context, timestamp, integrations, message_id,
                             groupId=group_id, traits=traits or {})  # fmt: skip

    def alias(
        self,
        previous_id: str | None = None,
        user_id: str | None = None,
        context: dict | None = None,
        timestamp: datetime | str | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str | None:
        if previous_id in (None, ""):
            return self._invalid("alias needs a previous_id")
        return self._enqueue("alias", user_id, None, context, timestamp, integrations, message_id,
                             previousId=previous_id)  # fmt: skip

    def enqueue(self, message: dict) -> str | None:
        """Send an already-formed Segment message as it is (a replay of stored events); it needs a type and a
        messageId. Returns the messageId, or None when it was not queued (counted and logged)."""
        if not isinstance(message, dict) or not message.get("type") or not message.get("messageId"):
            return self._invalid("enqueue needs a Segment message with a type and a messageId")
        return self._put(message)

    @property
    def pending(self) -> int:
        """Events queued and not yet taken by a sending thread (a bulk sender waits while this is near
        max_queue_size instead of letting events be dropped)."""
        return self._queue.qsize()

    @property
    def max_queue_size(self) -> int:
        return self._queue.maxsize

    # -- control ----------------------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now and wait until it is sent or failed for good; False if `timeout` ran out."""
        self._flush_now.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if not any(thread.is_alive() for thread in self._threads):
                    return False
                self._queue.all_tasks_done.wait(0.1 if remaining is None else min(remaining, 0.1))
        return True

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush (for at most `timeout` seconds), then stop the background thread."""
        if self._stopping.is_set():
            return
        self.flush(timeout)
        self._stopping.set()
        self._flush_now.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for transport in self._transports:
            transport.close()
        unsent = self._queue.qsize()
        if unsent:
            log.warning("analyticspro: %d events were not sent before shutdown", unsent)
        with self._stats_lock:
            self.stats.failed += unsent

    def stats_dict(self) -> dict[str, int]:
        with self._stats_lock:
            return asdict(self.stats)

    # -- inside -----------------------------------------------------------------------------------------------
    def _invalid(self, reason: str) -> None:
        with self._stats_lock:
            self.stats.invalid += 1
        log.error("analyticspro: event not sent: %s", reason)
        return None

    def _enqueue(
        self,
        kind: str,
        user_id: Any,
        anonymous_id: Any,
        context: dict | None,
        timestamp: datetime | str | None,
        integrations: dict | None,
        message_id: str | None,
        **fields: Any,
    ) -> str | None:
        try:
            if user_id in (None, "") and anonymous_id in (None, "") and kind != "alias":
                return self._invalid(f"{kind} needs a user_id or an anonymous_id")
            if kind == "alias" and user_id in (None, ""):
                return self._invalid("alias needs a user_id")
            message_id = message_id or str(uuid.uuid4())
            message: dict[str, Any] = {"type": kind, "messageId": message_id, "timestamp": iso_utc(timestamp)}
            if user_id not in (None, ""):
                message["userId"] = user_id
            if anonymous_id not in (None, ""):
                message["anonymousId"] = anonymous_id
            message.update({key: value for key, value in fields.items() if value is not None})
            message["context"] = {**(context or {}), "library": LIBRARY}
            if integrations:
                message["integrations"] = integrations
            return self._put(message)
        except Exception as exc:  # noqa: BLE001 - a call never raises into the host program
            return self._invalid(f"{kind}: {exc}")

    def _put(self, message: dict) -> str | None:
        kind, message_id = message.get("type"), message.get("messageId")
        try:
            data = orjson.dumps(message, default=_default, option=orjson.OPT_NON_STR_KEYS)
            if len(data) > MAX_EVENT_BYTES:
                return self._invalid(f"{kind} {message_id} is {len(data):,} bytes; the limit is {MAX_EVENT_BYTES:,}")
            if not self.send:
                return message_id
            try:
                self._queue.put_nowait(data)
            except queue.Full:
                with self._stats_lock:
                    self.stats.dropped += 1
                    dropped = self.stats.dropped
                if dropped == 1 or dropped % 1000 == 0:
                    log.warning(
                        "analyticspro: the queue is full (%d events); %d events dropped so far. The collector is "
                        "slow or unreachable, or max_queue_size is too small for this traffic",
                        self._queue.maxsize,
                        dropped,
                    )
                return None
            with self._stats_lock:
                self.stats.queued += 1
            if self._queue.qsize() >= self.batch_size:
                self._flush_now.set()
            return message_id
        except Exception as exc:  # noqa: BLE001 - a call never raises into the host program
            return self._invalid(f"{kind}: {exc}")

    def _next_batch(self, carry: bytes | None) -> tuple[list[bytes], bytes | None]:
        """Up to batch_size events and MAX_BATCH_BYTES, waiting at most flush_interval after the first; and the
        event taken that did not fit (the next batch's first)."""
        batch: list[bytes] = [carry] if carry is not None else []
        size = sum(len(item) + 1 for item in batch)
        carry = None
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            if self._flush_now.is_set() or self._stopping.is_set():
                remaining = 0
            try:
                item = self._queue.get(timeout=max(remaining, 0.0)) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                if batch or self._stopping.is_set():
                    break
                self._flush_now.clear()
                self._flush_now.wait(self.flush_interval)
                deadline = time.monotonic() + self.flush_interval
                continue
            if batch and size + len(item) + 1 > MAX_BATCH_BYTES:
                carry = item
                break
            batch.append(item)
            size += len(item) + 1
        if self._queue.empty():
            self._flush_now.clear()
        return batch, carry

    def _run(self, transport: HttpTransport | SinkTransport) -> None:
        carry: bytes | None = None
        while not (self._stopping.is_set() and self._queue.empty() and carry is None):
            try:
                batch, carry = self._next_batch(carry)
                if batch:
                    self._deliver(transport, batch)
                    for _ in batch:
                        self._queue.task_done()
            except Exception:  # noqa: BLE001 - the thread must outlive any bug in one batch
                log.exception("analyticspro: unexpected error in the sending thread")

    def _deliver(self, transport: HttpTransport | SinkTransport, batch: list[bytes]) -> None:
        attempt = 0
        while True:
            try:
                transport.send(batch)
            except SendError as exc:
                retryable = (
                    exc.status is None or exc.status == 429 or (exc.status >= 500 and exc.status not in (501, 505))
                )
                if retryable and attempt < self.max_retries and not (self._stopping.is_set() and attempt >= 2):
                    delay = (
                        exc.retry_after if exc.retry_after is not None else random.uniform(0, min(30, 0.5 * 2**attempt))
                    )
                    attempt += 1
                    with self._stats_lock:
                        self.stats.retries += 1
                    log.debug("analyticspro: retry %d in %.2f s: %s", attempt, delay, exc)
                    self._stopping.wait(min(delay, 60))
                    continue
                self._failed(exc, batch)
                return
            with self._stats_lock:
                self.stats.sent += len(batch)
                self.stats.batches += 1
            return

    def _failed(self, exc: Exception, batch: list[bytes]) -> None:
        with self._stats_lock:
            self.stats.failed += len(batch)
        log.error("analyticspro: %d events not delivered: %s", len(batch), exc)
        if self.on_error is not None:
            try:
                self.on_error(exc, batch)
            except Exception:  # noqa: BLE001
                log.exception("analyticspro: on_error raised")
