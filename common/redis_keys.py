"""Every Redis key AnalyticsPro writes: the hot metrics the dashboards read (`P:metrics:v1:*`) and the state the
real-time fold keeps (`P:hot:v1:*`), `P` being REDIS_KEY_PREFIX. Written by warehouse/realtime.py, read by the
dashboards, erased by warehouse/erasure.py; the layout is described in warehouse/realtime.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

VERSION = "v1"


@dataclass(frozen=True)
class HotKeys:
    """Every Redis key of the hot metrics, from the prefix."""

    prefix: str

    def metric(self, name: str, day: date) -> str:
        return f"{self.prefix}:metrics:{VERSION}:{name}:{day.isoformat()}"

    def last_hour(self, name: str) -> str:
        return f"{self.prefix}:metrics:{VERSION}:{name}:last_hour"

    @property
    def active_5m(self) -> str:
        return f"{self.prefix}:metrics:{VERSION}:active_people:last_5m"

    @property
    def funnel(self) -> str:
        return f"{self.prefix}:metrics:{VERSION}:funnel:default"

    @property
    def updated_at(self) -> str:
        return f"{self.prefix}:metrics:{VERSION}:updated_at"

    # state
    @property
    def cursor(self) -> str:
        return f"{self.prefix}:hot:{VERSION}:cursor"

    def persons(self, day: date) -> str:
        return f"{self.prefix}:hot:{VERSION}:persons:{day.isoformat()}"

    def counts(self, day: date) -> str:
        return f"{self.prefix}:hot:{VERSION}:counts:{day.isoformat()}"

    def minute(self, moment: datetime) -> str:
        return f"{self.prefix}:hot:{VERSION}:minute:{moment.strftime('%Y%m%d%H%M')}"

    @property
    def seen(self) -> str:
        return f"{self.prefix}:hot:{VERSION}:seen"

    @property
    def identity(self) -> str:
        return f"{self.prefix}:hot:{VERSION}:identity"
