"""Every Redis key AnalyticsPro writes, `P` being REDIS_KEY_PREFIX: the hot metrics the dashboards read
(`P:metrics:v1:*`), the state the real-time fold keeps (`P:hot:v1:*`), and the dashboards API's answer cache
(`P:dashboard:<version>:*`). The hot metrics are written by warehouse/realtime.py (which describes them), read by
the dashboards and the summary, and their person state is erased by warehouse/erasure.py."""

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
    loads = property(lambda self: self._state("loads"))  # zset: the dlt loads folded in, by commit time
    since = property(lambda self: self._state("since"))  # when the state was (re)built from raw.events
    seen = property(lambda self: self._state("seen"))
    identity = property(lambda self: self._state("identity"))

    def persons(self, day: date) -> str:
        return self._state("persons", day.isoformat())

    def counts(self, day: date) -> str:
        return self._state("counts", day.isoformat())

    def minute(self, moment: datetime) -> str:
        return self._state("minute", moment.strftime("%Y%m%d%H%M"))

    # patterns, for SCAN
    published_pattern = property(lambda self: f"{self.prefix}:metrics:*")
    state_pattern = property(lambda self: self._state("*"))

    @property
    def person_state_patterns(self) -> dict[str, str]:
        """The state of every version that holds person ids, by Redis type: what an erasure scans."""
        return {
            "set": f"{self.prefix}:hot:*:persons:*",
            "zset": f"{self.prefix}:hot:*:seen",
            "hash": f"{self.prefix}:hot:*:identity",
        }


def dashboard_cache_prefix(prefix: str, version: str) -> str:
    """The dashboards API's answers are cached under this (one key per question, `<this>:<hash>`)."""
    return f"{prefix}:dashboard:{version}"


def follower_heartbeat(prefix: str) -> str:
    """Present while `analyticspro realtime` runs (JSON: pid, host, sources, interval): the sensors leave new data
    to it."""
    return f"{prefix}:realtime:{VERSION}:follower"
