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

    def _published(self, *parts: str) -> str:
        return ":".join((self.prefix, "metrics", VERSION, *parts))

    def _state(self, *parts: str) -> str:
        return ":".join((self.prefix, "hot", VERSION, *parts))

    # published: what the dashboards read
    def metric(self, name: str, day: date) -> str:
        return self._published(name, day.isoformat())

    def last_hour(self, name: str) -> str:
        return self._published(name, "last_hour")

    active_5m = property(lambda self: self._published("active_people", "last_5m"))
    funnel = property(lambda self: self._published("funnel", "default"))
    updated_at = property(lambda self: self._published("updated_at"))

    # state: what the real-time fold keeps between runs
    cursor = property(lambda self: self._state("cursor"))
    seen = property(lambda self: self._state("seen"))
    identity = property(lambda self: self._state("identity"))

    def persons(self, day: date) -> str:
        return self._state("persons", day.isoformat())

    def counts(self, day: date) -> str:
        return self._state("counts", day.isoformat())

    def minute(self, moment: datetime) -> str:
        return self._state("minute", moment.strftime("%Y%m%d%H%M"))
