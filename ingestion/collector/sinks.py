"""Where accepted events go: a local folder, `s3://bucket/prefix` or `kinesis://STREAM` (`COLLECTOR_SINK`).

Every sink writes what the loaders already read (ingestion/bucket.py, ingestion/kinesis.py), so events sent to the
collector load like any other batch:
- folder and S3: one gzipped JSON-lines object per flush, at `events/YYYY/MM/DD/HH/<name>.jsonl.gz` under the
  folder or prefix (the Firehose layout; the hour is the UTC hour the events were received). A folder object is
  written to a temporary name, fsynced, renamed and its folder fsynced, so a loader never sees half a file and a
  crash never loses an acknowledged one;
- Kinesis: `PutRecords`, one event per record, partition key the user (so a user's events keep their order on a
  shard), at most 500 records or 5 MB per call; only the records a call reports as failed are sent again.

A sink that cannot take a batch raises `SinkError` with the lines it did not write; the collector spools those
(ingestion/collector/spool.py). The Python SDK (ingestion/sdk/) uses the same sinks to write without a collector.
"""

from __future__ import annotations

import gzip
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from common.aws import aws_endpoint, aws_region
from common.settings import normalize_bucket_url

KINESIS_MAX_RECORDS = 500
KINESIS_MAX_BYTES = 5 * 1024 * 1024
KINESIS_MAX_ATTEMPTS = 6


class SinkError(Exception):
    """The sink did not take (all of) a batch; `remaining` are the lines it did not write."""

    def __init__(self, message: str, remaining: Sequence[bytes]) -> None:
        super().__init__(message)
        self.remaining = list(remaining)


class Sink(Protocol):
    url: str

    def write(self, lines: Sequence[bytes], name: str, received: datetime) -> None:
        """Write the JSON lines durably as one batch called `name` (the same name twice overwrites, so a
        retried batch is not duplicated where the sink allows it); raise SinkError otherwise."""
        ...


_HOST = "".join(c if c.isalnum() else "-" for c in socket.gethostname().split(".")[0][:24]) or "host"
_sequence = 0
_sequence_lock = threading.Lock()


def batch_name(received: datetime) -> str:
    """A name unique across processes and hosts that sorts by time: `analyticspro-collector-<time>-<host>-<pid>-<n>`."""
    global _sequence
    with _sequence_lock:
        _sequence += 1
        number = _sequence
    node = f"{_HOST}-{os.getpid()}"  # read per call: uvicorn's workers are forked
    return f"analyticspro-collector-{received:%Y%m%dT%H%M%S%f}-{node}-{number:06d}-{random.getrandbits(24):06x}"


def object_key(name: str, received: datetime) -> str:
    """`events/YYYY/MM/DD/HH/<name>.jsonl.gz`: the folders the loaders date objects by."""
    return f"events/{received:%Y/%m/%d/%H}/{name}.jsonl.gz"


def gzip_lines(lines: Sequence[bytes]) -> bytes:
    # level 1: a batch compresses ~6x at a fraction of the CPU of the default level
    return gzip.compress(b"".join(line + b"\n" for line in lines), compresslevel=1, mtime=0)


class FolderSink:
    """A local folder standing in for a bucket (the default: EVENTS_BUCKET_URL)."""

    def __init__(self, folder: str | Path, fsync: bool = True) -> None:
        self.root = Path(folder)
        self.url = str(self.root)
        self.fsync = fsync

    def write(self, lines: Sequence[bytes], name: str, received: datetime) -> None:
        target = self.root / object_key(name, received)
        try:
            if not self.root.is_dir():  # an unmounted volume must not silently become a new empty folder
                raise FileNotFoundError(f"the sink folder {self.root} does not exist")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")  # *.part is not a batch file to the loaders
            with open(partial, "wb") as handle:
                handle.write(gzip_lines(lines))
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(partial, target)
            if self.fsync:
                _fsync_dir(target.parent)
        except OSError as exc:
            raise SinkError(f"could not write {target}: {exc}", lines) from exc


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _aws_client(service: str, connect_timeout: float, read_timeout: float) -> Any:
    # start-up cost and heap: boto3 is only loaded by a worker that writes to S3 or Kinesis (loaded at import, it
    # lengthened a folder-sink collector's latency tail: p99 at 16 connections 82 ms, 71 ms without it)
    import boto3
    from botocore.config import Config  # comes with boto3, loaded only here too

    endpoint = aws_endpoint(service)
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": 2},  # a sink that is down is found out fast, then spooled
        max_pool_connections=16,
    )
    return boto3.client(service, region_name=aws_region(), endpoint_url=endpoint, config=config)


class _LazyClient:
    """A sink's boto3 client, made on first use (a sink is built, and checks its URL, without reaching AWS)."""

    def __init__(self, service: str, client: Any, connect_timeout: float, read_timeout: float) -> None:
        self._service = service
        self._client = client
        self._timeouts = (connect_timeout, read_timeout)
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _aws_client(self._service, *self._timeouts)
            return self._client


class S3Sink:
    """`s3://bucket/prefix`: one object per batch under the prefix (the AWS endpoint and credentials come from the
    standard AWS variables, `AWS_ENDPOINT_URL` included)."""

    def __init__(self, url: str, client: Any = None, connect_timeout: float = 2, read_timeout: float = 10) -> None:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"{url!r} names no bucket; use s3://bucket/prefix")
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._client = _LazyClient("s3", client, connect_timeout, read_timeout)

    @property
    def client(self) -> Any:
        return self._client.get()

    def key(self, name: str, received: datetime) -> str:
        key = object_key(name, received)
        return f"{self.prefix}/{key}" if self.prefix else key

    def write(self, lines: Sequence[bytes], name: str, received: datetime) -> None:
        key = self.key(name, received)
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=gzip_lines(lines), ContentType="application/x-ndjson"
            )
        except Exception as exc:  # noqa: BLE001 - any failure (network, auth, missing bucket) means: spool it
            raise SinkError(f"could not put s3://{self.bucket}/{key}: {exc}", lines) from exc


def _partition_key(line: bytes) -> str:
    event = orjson.loads(line)
    for key in ("userId", "anonymousId", "messageId"):
        value = event.get(key) if isinstance(event, dict) else None
        if value not in (None, ""):
            return str(value)[:256]
    return "analyticspro"


class KinesisSink:
    """`kinesis://STREAM`: PutRecords, one event per record; failed records (throttling) are retried alone."""

    def __init__(
        self,
        url: str,
        client: Any = None,
        connect_timeout: float = 2,
        read_timeout: float = 10,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = KINESIS_MAX_ATTEMPTS,
    ) -> None:
        self.url = url
        self.stream = url.removeprefix("kinesis://").strip("/")
        if not self.stream:
            raise ValueError(f"{url!r} names no stream; use kinesis://STREAM")
        self._client = _LazyClient("kinesis", client, connect_timeout, read_timeout)
        self._sleep = sleep
        self.attempts = attempts

    @property
    def client(self) -> Any:
        return self._client.get()

    def write(self, lines: Sequence[bytes], name: str, received: datetime) -> None:
        records = [{"Data": line, "PartitionKey": _partition_key(line)} for line in lines]
        unsent: list[dict] = []
        for start, end in _kinesis_chunks(lines):
            chunk = records[start:end]
            try:
                unsent.extend(self._put(chunk))
            except Exception as exc:  # noqa: BLE001 - the stream is unreachable: everything not yet in is spooled
                unsent.extend(chunk)
                unsent.extend(records[end:])
                raise SinkError(
                    f"PutRecords to {self.stream} failed: {exc}", [record["Data"] for record in unsent]
                ) from exc
        if unsent:
            raise SinkError(
                f"{len(unsent)} records were still refused by {self.stream} after {self.attempts} attempts",
                [record["Data"] for record in unsent],
            )

    def _put(self, records: list[dict]) -> list[dict]:
        """Send records; resend only those the response marks failed, with backoff; return those never taken."""
        for attempt in range(self.attempts):
            response = self.client.put_records(StreamName=self.stream, Records=records)
            if not response.get("FailedRecordCount"):
                return []
            records = [
                record for record, result in zip(records, response["Records"], strict=True) if result.get("ErrorCode")
            ]
            if attempt < self.attempts - 1:
                self._sleep(random.uniform(0, 0.1 * 2**attempt))
        return records


def _kinesis_chunks(lines: Sequence[bytes]) -> list[tuple[int, int]]:
    """[start, end) ranges of at most 500 records and 5 MB (data plus partition keys) each."""
    chunks: list[tuple[int, int]] = []
    start, size = 0, 0
    for index, line in enumerate(lines):
        weight = len(line) + 256
        if index > start and (index - start >= KINESIS_MAX_RECORDS or size + weight > KINESIS_MAX_BYTES):
            chunks.append((start, index))
            start, size = index, 0
        size += weight
    if start < len(lines):
        chunks.append((start, len(lines)))
    return chunks


def sink_from_url(url: str) -> Sink:
    """`kinesis://STREAM`, `s3://bucket/prefix` or a local folder (created when missing)."""
    url = url.strip()
    if not url:
        raise ValueError("COLLECTOR_SINK is empty; set it to a folder, s3://bucket/prefix or kinesis://STREAM")
    if url.startswith("kinesis://"):
        return KinesisSink(url)
    if url.startswith("s3://"):
        return S3Sink(url)
    if "://" in url and not url.startswith("file://"):
        raise ValueError(
            f"COLLECTOR_SINK={url!r} is not a sink this collector writes to; use a folder, s3://bucket/prefix "
            f"or kinesis://STREAM"
        )
    folder = Path(normalize_bucket_url(url.removeprefix("file://")))
    folder.mkdir(parents=True, exist_ok=True)
    return FolderSink(folder)


def now_utc() -> datetime:
    return datetime.now(UTC)
