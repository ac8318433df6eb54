"""The dashboards service's settings, from environment variables with local defaults.

ANALYTICSPRO_API_TOKENS         comma-separated bearer tokens the API accepts. Unset: a random token is made once
                                and kept in .analyticspro/api_token (mode 0600), so a laptop needs no set-up.
ANALYTICSPRO_READONLY_USER      the read-only PostgreSQL role for the API and BI tools (default analyticspro_reader).
ANALYTICSPRO_READONLY_PASSWORD  its password (optional; trust/peer auth needs none).
DASHBOARD_DATABASE_URL          how the API connects (default: DATABASE_URL with the read-only user).
DASHBOARD_CACHE_TTL_SECONDS     Redis cache of dashboard answers (default 60).
DASHBOARD_LIVE_CACHE_SECONDS    how long a process keeps an answer about today's live numbers (default 1; 0: never).
INSIGHT_TIMEOUT_MS              statement timeout of one query-builder question (default 10000).
INSIGHT_MAX_DAYS                the widest date range an exact question may span (default 366).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from common.settings import (
    DEFAULT_STATE_DIR,
    Settings,
    _non_negative_int_env,
    _positive_int_env,
    get_settings,
    insight_max_days,
    local_secret,
)

DEFAULT_READONLY_USER = "analyticspro_reader"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
TOKEN_FILE = DEFAULT_STATE_DIR / "api_token"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class DashboardSettings:
    base: Settings
    api_tokens: tuple[str, ...]
    readonly_user: str
    readonly_password: str | None
    database_url: str
    cache_ttl_seconds: int
    live_cache_seconds: int
    marts_refresh_seconds: int
    insight_timeout_ms: int
    insight_max_days: int

    @property
    def redacted_database_url(self) -> str:
        parts = urlsplit(self.database_url)
        if parts.password:
            parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
        return urlunsplit(parts)


def local_token(path: Path = TOKEN_FILE) -> str:
    """The machine-local API token (made on first use, readable by its owner only)."""
    return local_secret(path)


def readonly_url(database_url: str, user: str, password: str | None) -> str:
    """The same server and database as `database_url`, as another user."""
    parts = urlsplit(database_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = quote(user) + (f":{quote(password)}" if password else "") + f"@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def get_dashboard_settings() -> DashboardSettings:
    base = get_settings()
    raw_tokens = os.environ.get("ANALYTICSPRO_API_TOKENS")
    if raw_tokens is not None and raw_tokens.strip():
        tokens = tuple(token.strip() for token in raw_tokens.split(",") if token.strip())
        if any(len(token) < 16 for token in tokens):
            raise ValueError(
                "ANALYTICSPRO_API_TOKENS holds a token shorter than 16 characters; use long random tokens "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
    else:
        tokens = (local_token(),)
    user = os.environ.get("ANALYTICSPRO_READONLY_USER") or DEFAULT_READONLY_USER
    if not _ROLE_NAME.match(user):
        raise ValueError(
            f"ANALYTICSPRO_READONLY_USER={user!r} is not a plain role name; use lower-case letters, digits and _"
        )
    password = os.environ.get("ANALYTICSPRO_READONLY_PASSWORD") or None
    return DashboardSettings(
        base=base,
        api_tokens=tokens,
        readonly_user=user,
        readonly_password=password,
        database_url=os.environ.get("DASHBOARD_DATABASE_URL") or readonly_url(base.database_url, user, password),
        cache_ttl_seconds=_positive_int_env("DASHBOARD_CACHE_TTL_SECONDS", 60),
        live_cache_seconds=_non_negative_int_env("DASHBOARD_LIVE_CACHE_SECONDS", 1),
        marts_refresh_seconds=_non_negative_int_env("DASHBOARD_MARTS_REFRESH_SECONDS", 5),
        insight_timeout_ms=_positive_int_env("INSIGHT_TIMEOUT_MS", 10_000),
        insight_max_days=insight_max_days(),
    )


def dashboard_url(host: str | None = None, port: int | None = None) -> str:
    """Where `analyticspro dashboard` serves the page; with the local token in the fragment (never sent to the
    server, never logged) when no ANALYTICSPRO_API_TOKENS is set."""
    url = f"http://{host or DEFAULT_HOST}:{port or DEFAULT_PORT}/"
    if not (os.environ.get("ANALYTICSPRO_API_TOKENS") or "").strip():
        url += f"#token={local_token()}"
    return url
