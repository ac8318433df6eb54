"""The collector's settings, from environment variables with local defaults.

ANALYTICSPRO_WRITE_KEYS        comma-separated write keys the collector accepts (HTTP Basic username, as Segment's
                               SDKs send it, or `writeKey` in the body). Unset: one random key is made and kept in
                               .analyticspro/write_key (mode 0600); `analyticspro collector` prints it.
COLLECTOR_SINK                 a folder, s3://bucket/prefix or kinesis://STREAM (default EVENTS_BUCKET_URL: where the
                               loaders read).
COLLECTOR_SPOOL_DIR            where accepted batches wait while the sink is down (default .analyticspro/spool).
COLLECTOR_FLUSH_MS             at most one write per this many ms, shared by the requests of the interval
                               (default 50; 0: write as soon as the previous write is done).
COLLECTOR_FLUSH_EVENTS         the most events in one write (default 20000).
COLLECTOR_SPOOL_RETRY_SECONDS  how often a spool is drained while it holds batches (default 5).
COLLECTOR_BUFFER_SECONDS       buffer mode: acknowledge once fsynced in the spool and ship one object per this many
                               seconds (default 0: write to the sink before acknowledging).
COLLECTOR_FORWARDED_ALLOW_IPS  proxies whose X-Forwarded-For is trusted for `context.ip` (default 127.0.0.1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from common.settings import (
    DEFAULT_STATE_DIR,
    _non_negative_int_env,
    _positive_int_env,
    get_settings,
    local_secret,
)

WRITE_KEY_FILE = DEFAULT_STATE_DIR / "write_key"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8060


@dataclass(frozen=True)
class CollectorSettings:
    write_keys: tuple[str, ...]
    sink_url: str
    spool_dir: Path
    flush_ms: int
    flush_events: int
    spool_retry_seconds: int
    buffer_seconds: int
    forwarded_allow_ips: str
    local_write_key: bool


def local_write_key(path: Path = WRITE_KEY_FILE) -> str:
    return local_secret(path)


def get_collector_settings() -> CollectorSettings:
    raw = os.environ.get("ANALYTICSPRO_WRITE_KEYS")
    if raw is not None and raw.strip():
        keys = tuple(key.strip() for key in raw.split(",") if key.strip())
        bad = [key for key in keys if ":" in key or any(c.isspace() for c in key)]
        if bad:
            raise ValueError(
                "ANALYTICSPRO_WRITE_KEYS holds a key with ':' or whitespace, which HTTP Basic auth cannot carry; "
                "use random keys (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
            )
        local = False
    else:
        keys = (local_write_key(),)
        local = True
    return CollectorSettings(
        write_keys=keys,
        sink_url=(os.environ.get("COLLECTOR_SINK") or "").strip() or get_settings().events_bucket_url,
        spool_dir=Path(os.environ.get("COLLECTOR_SPOOL_DIR") or DEFAULT_STATE_DIR / "spool"),
        flush_ms=_non_negative_int_env("COLLECTOR_FLUSH_MS", 50),
        flush_events=_positive_int_env("COLLECTOR_FLUSH_EVENTS", 20_000),
        spool_retry_seconds=_positive_int_env("COLLECTOR_SPOOL_RETRY_SECONDS", 5),
        buffer_seconds=_non_negative_int_env("COLLECTOR_BUFFER_SECONDS", 0),
        forwarded_allow_ips=os.environ.get("COLLECTOR_FORWARDED_ALLOW_IPS") or "127.0.0.1",
        local_write_key=local,
    )
