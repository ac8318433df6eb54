"""How AnalyticsPro speaks on a terminal: one timestamped line per step (the CLI, and runs it launches)."""

from __future__ import annotations

from datetime import datetime


def say(message: str) -> None:
    print(f"[analyticspro {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)
