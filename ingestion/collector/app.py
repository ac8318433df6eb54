"""The collector: Segment's HTTP Tracking API as an ASGI application (`analyticspro collector`).

Endpoints (request and response shapes of https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/):
- `POST /v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`: one event, its type
  given by the path; `/v1/t`, `/v1/i`, `/v1/p`, `/v1/s`, `/v1/g`, `/v1/a` are analytics.js's short forms.
- `POST /v1/batch`, `/v1/import` (and analytics.js's `/v1/b`): `{"batch": [events], "context": {...},
  "sentAt": ...}`; the batch's `context` and `sentAt` apply to every event that has none of its own.
- `GET /health`, `GET /openapi.json` (ingestion/collector/openapi.py). `OPTIONS` answers browsers' CORS checks, and
  `GET /v1/projects/<writeKey>/settings` the settings analytics.js loads from Segment's CDN (`cdnURL` set here).

The write key is the HTTP Basic username (Segment's scheme; password empty) or `writeKey` in the body (what
analytics.js sends). Bodies may be gzipped (`Content-Encoding: gzip`). Each event gets `receivedAt` (the time the
request arrived), `context.ip` from the request when it has none, and a `messageId` when it has none (derived
from its content, so a retried request does not count twice). Every event is checked with the loaders' own
validation (ingestion/validation.py): what the collector accepts, the loader loads.

Answers: 200 `{"success": true}` once every event is durably written (sink or spool); 400 with
`{"success": false, "code", "message"}` for a request that is malformed or over Segment's limits (32 KB per
event, 500 KB per request), and, when some events of a batch are invalid, 400 naming them while the valid ones
are accepted (the invalid ones are also kept, and quarantined with their reason in raw.rejected_events when
loaded); 401 for a missing or unknown write key; 503 with Retry-After when nothing can keep the batch. Never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from common.asgi import send_json_body
from ingestion.collector.config import CollectorSettings, get_collector_settings
from ingestion.collector.openapi import openapi_document
from ingestion.collector.sinks import sink_from_url
from ingestion.collector.spool import Spool
from ingestion.collector.writer import BatchWriter, Unavailable
from ingestion.validation import MAX_EVENT_BYTES, Rejection, validate_decoded

log = logging.getLogger("analyticspro.collector")

MAX_BATCH_BYTES = 500 * 1024
MAX_LISTED_ERRORS = 20
SINGLE = {
    "track": "track", "identify": "identify", "page": "page", "screen": "screen", "group": "group", "alias": "alias",
    "t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias",
}  # fmt: skip
BATCH = {"batch", "import", "b"}
CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, GET, OPTIONS"),
    (b"access-control-allow-headers", b"Authorization, Content-Type, Content-Encoding"),
    (b"access-control-max-age", b"86400"),
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BadRequest(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def write_key_from_header(header: bytes | None) -> str | None:
    """The username of an HTTP Basic `Authorization` header (Segment's SDKs send `base64(writeKey + ":")`)."""
    if not header or header[:6].lower() != b"basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


class KeyRing:
    """The accepted write keys, compared in constant time (sha256 digests, so lengths do not leak)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or not key:
            return False
        offered = hashlib.sha256(key.encode()).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(offered, digest)
        return matched


def decode_body(body: bytes, encoding: bytes, limit: int) -> Any:
    """The JSON document of a request body (gzip or plain), at most `limit` bytes once decompressed."""
    encoding = encoding.strip().lower()
    if encoding in (b"gzip", b"x-gzip") or (not encoding and body[:2] == b"\x1f\x8b"):
        inflater = zlib.decompressobj(wbits=31)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise BadRequest("invalid_gzip", f"the body is not valid gzip ({exc}); send it gzipped or plain") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
    elif encoding not in (b"", b"identity"):
        raise BadRequest(
            "unsupported_encoding",
            f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; send gzip or no encoding",
        )
    if not body.strip():
        raise BadRequest("invalid_json", "the body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("invalid_json", f"the body is not valid JSON: {exc}") from None


def _too_large(limit: int) -> BadRequest:
    what = "a batch request" if limit == MAX_BATCH_BYTES else "a single-event request"
    return BadRequest(
        "request_too_large",
        f"{what} may be at most {limit:,} bytes (Segment's limit); send fewer events per request",
    )


def message_id_for(event: dict) -> str:
    """A stable id for an event sent without one: the same event sent again (a retry) gets the same id. `sentAt`
    is left out: SDKs set it anew on every attempt."""
    content = {key: value for key, value in event.items() if key != "sentAt"}
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"ap-{digest[:40]}"


def prepare(
    item: Any, kind: str | None, batch_context: Any, batch_sent_at: Any, received_at: str, ip: str | None
) -> dict | Any:
    """Stamp one event as Segment's API does; anything that is not an object is passed on (and refused)."""
    if not isinstance(item, dict):
        return item
    item.pop("writeKey", None)
    if kind is not None:
        item["type"] = kind
    if "messageId" not in item or item["messageId"] in (None, ""):
        item["messageId"] = message_id_for(item)
    if batch_sent_at is not None and "sentAt" not in item:
        item["sentAt"] = batch_sent_at
    context = item.get("context")
    if isinstance(batch_context, dict) and batch_context:
        context = {**batch_context, **context} if isinstance(context, dict) else context or dict(batch_context)
    if ip is not None and (context is None or isinstance(context, dict)) and not (context or {}).get("ip"):
        context = {**(context or {}), "ip": ip}
    if context is not None:
        item["context"] = context
    item["receivedAt"] = received_at
    return item


def check(events: list[Any], received_at: datetime) -> tuple[list[bytes], list[dict]]:
    """Serialize every event to its line and validate it as the loader will; (lines, errors of invalid ones)."""
    lines: list[bytes] = []
    errors: list[dict] = []
    for index, event in enumerate(events):
        line = orjson.dumps(event)
        lines.append(line)
        result = validate_decoded(event, line, "collector", str(index), received_fallback=received_at)
        if isinstance(result, Rejection):
            message_id = event.get("messageId") if isinstance(event, dict) else None
            reason = result.reason
            if len(line) > MAX_EVENT_BYTES:
                reason = f"{reason} (Segment's limit per event); send smaller properties"
            errors.append({"index": index, "messageId": message_id, "reason": reason})
    return lines, errors


class Collector:
    """The ASGI application."""

    def __init__(self, settings: CollectorSettings, writer: BatchWriter | None = None) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.write_keys)
        self.writer = writer or BatchWriter(
            sink_from_url(settings.sink_url),
            Spool(settings.spool_dir),
            flush_ms=settings.flush_ms,
            flush_events=settings.flush_events,
            spool_retry_seconds=settings.spool_retry_seconds,
            buffer_seconds=settings.buffer_seconds,
        )
        self._openapi = orjson.dumps(openapi_document())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._http(scope, receive, send)
        except BadRequest as exc:
            await _json(send, exc.status, {"success": False, "code": exc.code, "message": exc.message}, _auth(exc))
        except Exception:  # noqa: BLE001 - a bug must not become a 500 without a word; it is logged in full
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            await _json(
                send, 503, {"success": False, "code": "internal", "message": "the collector failed; retry"},
                [(b"retry-after", b"5")],
            )  # fmt: skip

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _warm_up()
                await self.writer.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.writer.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        if method == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": CORS})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/health":
            await _json(send, 200, self.health())
            return
        if path == "/openapi.json":
            await _raw(send, 200, self._openapi)
            return
        if method == "GET" and path.startswith("/v1/projects/") and path.endswith("/settings"):
            await self._browser_settings(scope, send, path.removeprefix("/v1/projects/").removesuffix("/settings"))
            return
        name = path.removeprefix("/v1/") if path.startswith("/v1/") else None
        if name not in SINGLE and name not in BATCH:
            raise BadRequest("not_found", f"no endpoint {path}; see /openapi.json for the endpoints", 404)
        if method != "POST":
            raise BadRequest("method_not_allowed", f"{path} takes POST", 405)
        await self._events(scope, receive, send, None if name in BATCH else SINGLE[name])

    async def _events(self, scope: Scope, receive: Receive, send: Send, kind: str | None) -> None:
        received = datetime.now(UTC)
        headers = dict(scope["headers"])
        header_key = write_key_from_header(headers.get(b"authorization"))
        if b"authorization" in headers and header_key not in self.keys:
            raise _unauthorized()
        limit = MAX_BATCH_BYTES if kind is None else MAX_EVENT_BYTES
        body = await _read_body(receive, headers, limit)
        document = decode_body(body, headers.get(b"content-encoding", b""), limit)
        if not isinstance(document, dict):
            raise BadRequest("invalid_request", f"the body must be a JSON object, got {type(document).__name__}")
        if header_key is None and document.get("writeKey") not in self.keys:
            raise _unauthorized()
        received_at = received.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        ip = (scope.get("client") or (None,))[0]
        if kind is None:
            items = document.get("batch")
            if not isinstance(items, list):
                raise BadRequest(
                    "invalid_request",
                    "a batch request needs a 'batch' array of events"
                    + ("" if items is None else f", got {type(items).__name__}"),
                )
            batch_context, sent_at = document.get("context"), document.get("sentAt")
            events = [prepare(item, None, batch_context, sent_at, received_at, ip) for item in items]
        else:
            events = [prepare(document, kind, None, None, received_at, ip)]
        lines, errors = check(events, received)
        if lines:
            try:
                await self.writer.submit(lines)
            except Unavailable as exc:
                raise BadRequest("unavailable", f"the collector cannot keep events now ({exc}); retry", 503) from None
        if not errors:
            await _json(send, 200, {"success": True})
            return
        accepted = len(lines) - len(errors)
        first = errors[0]
        message = (
            f"{len(errors)} of {len(lines)} events are invalid (the other {accepted} were accepted); "
            f"event {first['index']}: {first['reason']}"
            if kind is None
            else f"the event is invalid: {first['reason']}"
        )
        await _json(
            send,
            400,
            {
                "success": False,
                "code": "invalid_events" if kind is None else "invalid_event",
                "message": message,
                "accepted": accepted,
                "rejected": errors[:MAX_LISTED_ERRORS],
            },
        )

    async def _browser_settings(self, scope: Scope, send: Send, key: str) -> None:
        """What analytics.js fetches from Segment's CDN before it sends anything (`cdnURL` pointed here): the
        Segment.io destination, sending to this collector."""
        if key not in self.keys:
            raise _unauthorized()
        headers = dict(scope["headers"])
        host = headers.get(b"x-forwarded-host") or headers.get(b"host") or b"127.0.0.1"
        scheme = headers.get(b"x-forwarded-proto", scope.get("scheme", "http").encode()).decode("latin-1")
        settings = {
            "integrations": {
                "Segment.io": {"apiKey": key, "apiHost": f"{host.decode('latin-1')}/v1", "protocol": scheme}
            },
            "plan": {"track": {"__default": {"enabled": True}}, "identify": {"__default": {"enabled": True}}},
        }
        await _json(send, 200, settings)

    def health(self) -> dict:
        stats = self.writer.stats
        spool = self.writer.spool.stats()
        return {
            "status": "ok" if stats.sink_ok and (self.writer.buffer_seconds or not spool.files) else "degraded",
            "buffer_seconds": self.writer.buffer_seconds,
            "sink": _redacted(self.writer.sink.url),
            "sink_ok": stats.sink_ok,
            "last_sink_error": stats.last_sink_error,
            "spooled_batches": spool.files,
            "spooled_bytes": spool.bytes,
            "accepted_events": stats.accepted_events,
            "written_to_sink": stats.written_to_sink,
            "written_to_spool": stats.written_to_spool,
            "drained_from_spool": stats.drained_from_spool,
        }


def _warm_up() -> None:
    """Validate one event at start-up: the user-agent rules load on first use (~0.1 s), not in a client's request."""
    sample = {
        "type": "page", "messageId": "warm-up", "anonymousId": "a", "timestamp": "2026-01-01T00:00:00Z",
        "context": {"ip": "127.0.0.1", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36"},
    }  # fmt: skip
    check([sample], datetime.now(UTC))


def _redacted(url: str) -> str:
    return url.split("@", 1)[-1] if "://" in url and "@" in url else url


def _unauthorized() -> BadRequest:
    return BadRequest(
        "unauthorized",
        "missing or unknown write key: send it as the HTTP Basic username (Segment's SDKs do) or as writeKey "
        "in the body; the keys are in ANALYTICSPRO_WRITE_KEYS (or .analyticspro/write_key)",
        401,
    )


def _auth(exc: BadRequest) -> list[tuple[bytes, bytes]]:
    if exc.status == 401:
        return [(b"www-authenticate", b'Basic realm="AnalyticsPro collector"')]
    if exc.status == 503:
        return [(b"retry-after", b"5")]
    return []


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client_disconnected", "the client went away before the body arrived", 400)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await _raw(send, status, orjson.dumps(payload), headers)


async def _raw(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send_json_body(send, status, body, [(b"access-control-allow-origin", b"*"), *headers])


def app_from_env() -> Collector:
    """The application uvicorn's workers build (`analyticspro collector`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Collector(get_collector_settings())
