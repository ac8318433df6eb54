"""How the command line speaks: one timestamped line per step, secrets never printed."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit


def say(message: str) -> None:
    print(f"[analyticspro {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def redacted(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url
