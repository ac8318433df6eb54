"""How the SDK's batches travel: POST /v1/batch to a collector (or any Segment-API host), or straight to a sink
(a folder, S3, Kinesis) as one batch object; both raise SendError for the sending thread to retry or give up."""

from __future__ import annotations

import base64
import gzip
import http.client
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

import orjson

from ingestion.collector.sinks import SinkError, batch_name, sink_from_url

VERSION = "0.1.0"


def iso_utc(value: datetime | date | str | None) -> str:
    """An ISO-8601 UTC timestamp with milliseconds and `Z`, as Segment's libraries send it (now when None)."""
    if value is None:
        value = datetime.now(UTC)
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return datetime(value.year, value.month, value.day, tzinfo=UTC).isoformat().replace("+00:00", "Z")


class SendError(Exception):
    """A batch was not accepted: `status` is the HTTP status (None for a network error or a sink failure)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class HttpTransport:
    """POST /v1/batch to a Segment-API host over one kept-alive connection, the write key as Basic username."""

    def __init__(self, write_key: str, host: str, timeout: float, gzip_body: bool) -> None:
        parts = urlsplit(host if "://" in host else f"http://{host}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"host {host!r} is not an http(s) URL; use e.g. http://127.0.0.1:8060")
        self._scheme, self._netloc = parts.scheme, parts.netloc
        self._path = parts.path.rstrip("/") + "/v1/batch"
        self._auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        self._timeout = timeout
        self._gzip = gzip_body
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._connection = cls(self._netloc, timeout=self._timeout)
        return self._connection

    def send(self, events: list[bytes]) -> None:
        sent_at = iso_utc(None).encode()
        body = b'{"batch":[' + b",".join(events) + b'],"sentAt":"' + sent_at + b'"}'
        headers = {
            "Content-Type": "application/json",
            "Authorization": self._auth,
            "User-Agent": f"analyticspro-python/{VERSION}",
        }
        if self._gzip:
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        try:
            connection = self._connect()
            connection.request("POST", self._path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise SendError(f"could not reach {self._scheme}://{self._netloc}: {exc}") from None
        if 200 <= response.status < 300:
            return
        try:
            message = orjson.loads(payload).get("message") or payload[:300].decode("utf-8", "replace")
        except (orjson.JSONDecodeError, AttributeError):
            message = payload[:300].decode("utf-8", "replace")
        retry_after = response.getheader("Retry-After")
        raise SendError(
            f"HTTP {response.status}: {message}",
            status=response.status,
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class SinkTransport:
    """Straight to a sink (Kinesis, S3 or a folder) in the collector's format, stamping receivedAt itself."""

    def __init__(self, url: str) -> None:
        self.sink = sink_from_url(url)
        self._pending: list[bytes] | None = None

    def send(self, events: list[bytes]) -> None:
        now = datetime.now(UTC)
        stamp = iso_utc(now).encode()
        tail = b',"sentAt":"' + stamp + b'","receivedAt":"' + stamp + b'"}'
        lines = self._pending or [event[:-1] + tail for event in events]
        try:
            self.sink.write(lines, batch_name(now), now)
        except SinkError as exc:
            self._pending = exc.remaining  # a retry sends only what the sink did not take
            raise SendError(str(exc)) from None
        self._pending = None

    def close(self) -> None:
        self._pending = None
