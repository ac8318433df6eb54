"""Connection settings, read from environment variables with local defaults.

Everything that differs between a laptop, CI and production is an env var; nothing secret
lives in the repository. Read the variables at call time (not import time) so tests and
the CLI can point one process at another database or bucket.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/analytics"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_BUCKET = PROJECT_ROOT / "data" / "bucket"
DEFAULT_STATE_DIR = PROJECT_ROOT / ".analyticspro"


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    redis_key_prefix: str
    events_bucket_url: str
    dagster_home: Path
    dlt_pipelines_dir: Path
    hot_metrics_ttl_seconds: int
    anonymize_ip: bool = True
    ingest_workers: int = 1
    ingest_max_lines: int = 250_000
    kinesis_stream_name: str | None = None
    partitions_start_date: date = date(2024, 1, 1)
    warm_days: int = 90

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/") or "postgres"

    def database_url_for(self, database: str) -> str:
        """The same server and credentials, another database (used to create ours)."""
        parts = urlsplit(self.database_url)
        return urlunsplit(parts._replace(path=f"/{database}"))

    @property
    def redacted_database_url(self) -> str:
        return redact_url(self.database_url)


def redact_url(url: str) -> str:
    """`url` with its password (if any) shown as ***: what logs and messages may print."""
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def utc_today() -> date:
    """Today's date in UTC: every partition, metric and key of AnalyticsPro is a UTC day."""
    return datetime.now(UTC).date()


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number; set it to e.g. {default} or unset it") from None


def _bool_env(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; set it to true or false (default {str(default).lower()})")


def _positive_int_env(name: str, default: int) -> int:
    value = _int_env(name, default)
    if value < 1:
        raise ValueError(f"{name}={value} must be at least 1; unset it for the default ({default})")
    return value


def _non_negative_int_env(name: str, default: int) -> int:
    value = _int_env(name, default)
    if value < 0:
        raise ValueError(f"{name}={value} must be 0 or more; unset it for the default ({default})")
    return value


def local_secret(path: Path) -> str:
    """A machine-local random secret (the dashboard's API token, the collector's write key): made on first use,
    kept in `path` readable by its owner only, so a laptop needs no set-up."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    return secret


def insight_max_days() -> int:
    """INSIGHT_MAX_DAYS: the widest date range (in days) a question to the insights engine may span (default 366)."""
    return _positive_int_env("INSIGHT_MAX_DAYS", 366)


def bucket_settle_seconds() -> int:
    """BUCKET_SETTLE_SECONDS: how long after its last modification an object may still be joined by an upload under
    an earlier key (default 900 s, Firehose's longest buffer); a bucket's listing cursor does not pass it before."""
    return _non_negative_int_env("BUCKET_SETTLE_SECONDS", 900)


def bucket_sweep_minutes() -> int:
    """BUCKET_SWEEP_MINUTES: the longest time between two full listings of a bucket by its loads (default 60); 0
    lists everything every time."""
    return _non_negative_int_env("BUCKET_SWEEP_MINUTES", 60)


def realtime_poll_seconds() -> float:
    """REALTIME_POLL_SECONDS: how often `analyticspro realtime` looks for new objects and records (default 1; on S3
    each look is one LIST request, 86,400 a day at 1 s)."""
    raw = (os.environ.get("REALTIME_POLL_SECONDS") or "").strip()
    try:
        value = float(raw) if raw else 1.0
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600:
        raise ValueError(f"REALTIME_POLL_SECONDS={raw!r} must be a number of seconds from 0.1 to 3600; unset it for 1")
    return value


def _date_env(name: str, default: date) -> date:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a date; set it as YYYY-MM-DD (default {default})") from None


def normalize_bucket_url(url: str) -> str:
    """Local folders become absolute paths; s3://, gs://, file:// URLs pass through."""
    if "://" in url:
        return url
    return str(Path(url).expanduser().resolve())


def get_settings() -> Settings:
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_STATE_DIR / "dagster_home")
    return Settings(
        database_url=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        redis_url=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        redis_key_prefix=os.environ.get("REDIS_KEY_PREFIX") or "analyticspro",
        events_bucket_url=normalize_bucket_url(os.environ.get("EVENTS_BUCKET_URL") or str(DEFAULT_BUCKET)),
        dagster_home=dagster_home,
        dlt_pipelines_dir=Path(os.environ.get("DLT_PIPELINES_DIR") or DEFAULT_STATE_DIR / "dlt"),
        hot_metrics_ttl_seconds=_int_env("HOT_METRICS_TTL_SECONDS", 48 * 3600),
        anonymize_ip=_bool_env("ANONYMIZE_IP", True),
        ingest_workers=_positive_int_env("INGEST_WORKERS", os.cpu_count() or 1),
        ingest_max_lines=_positive_int_env("INGEST_MAX_LINES", 250_000),
        kinesis_stream_name=os.environ.get("KINESIS_STREAM_NAME") or None,
        partitions_start_date=_date_env("PARTITIONS_START_DATE", date(2024, 1, 1)),
        warm_days=_positive_int_env("WARM_DAYS", 90),
    )
