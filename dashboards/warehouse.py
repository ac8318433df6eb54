"""What the dashboards read: the marts in PostgreSQL (as the read-only role, through an asyncpg pool) and the hot
metrics in Redis (falling back to the marts when Redis cannot answer)."""

from __future__ import annotations

import asyncio
import logging
import time as clock
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.ratios import ratio
from common.redis_keys import HotKeys
from common.settings import utc_today
from dashboards.config import DashboardSettings
from dashboards.insight import Insight, InsightError, insight_rows, to_trends
from dashboards.marts import MartsCopy
from dashboards.questions import Questions

log = logging.getLogger("analyticspro.dashboards")

DAILY_METRICS = ("dau", "wau", "mau", "stickiness", "signups", "new_people", "events", "revenue", "mrr", "sessions")
HOT_METRICS = ("signups", "dau", "events", "revenue")
RETENTION_GRAINS = ("week", "month")
CATALOGUE_TTL_SECONDS = 60.0
REDIS_RETRY_SECONDS = 5.0  # after Redis fails, answer from PostgreSQL this long before trying it again


class WarehouseUnavailable(RuntimeError):
    """PostgreSQL cannot answer; the message says what to do."""


class MartMissing(WarehouseUnavailable):
    """A mart does not exist yet (the marts were never built)."""


def _number(value: Any) -> float:
    return float(value) if isinstance(value, Decimal) else float(value or 0)


def funnel_steps(rows: list[tuple[int, str, int, int]]) -> list[dict[str, Any]]:
    """Conversion and drop-off of each step, from (index, name, persons, drop_off) in step order.

    drop_off is the marts' (docs/metrics.md, "Funnel drop-off": persons at the previous step - persons, 0 at
    step 1), summed over the cohorts asked for; the rate divides it by the persons at the previous step."""
    steps: list[dict[str, Any]] = []
    first = rows[0][2] if rows else 0
    for position, (index, name, persons, drop_off) in enumerate(rows):
        previous = rows[position - 1][2] if position else None
        steps.append(
            {
                "index": index,
                "name": name,
                "persons": persons,
                "conversion_from_previous": 1.0 if position == 0 else ratio(persons, previous),
                "conversion_from_start": ratio(persons, first),
                "drop_off": drop_off,
                "drop_off_rate": ratio(drop_off, previous),
            }
        )
    return steps


class Warehouse:
    """One per process: the pool, the Redis client, the catalogue; every read the API makes."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.keys = HotKeys(settings.base.redis_key_prefix)
        self.pool: asyncpg.Pool | None = None
        self.redis = aioredis.Redis.from_url(
            settings.base.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False
        )
        self._redis_down_until = 0.0
        self._catalogue: tuple[float, dict[str, set[str]]] | None = None
        self._catalogue_lock = asyncio.Lock()
        # the insights engine (insights/): `query(spec)` and the query builder
        self.questions = Questions(settings.base, settings.insight_timeout_ms)
        # the overview's marts, in the process (dashboards/marts.py)
        self.marts = MartsCopy(self.fetch, (MartMissing,), settings.marts_refresh_seconds)

    # -- connections ---------------------------------------------------------------------------------------
    async def open(self) -> None:
        async def keep_session(connection: asyncpg.Connection) -> None:
            """Nothing to reset when a connection goes back to the pool: every statement is a read that leaves no
            session state (asyncpg's default reset is one more round trip per query, and its RESET ALL would undo a
            SET made when the connection opened)."""

        try:
            self.pool = await asyncpg.create_pool(
                self.settings.database_url,
                min_size=1,
                max_size=10,
                command_timeout=60,
                reset=keep_session,
                # parameters vary widely (a day or a year): plan each statement for its own values
                server_settings={"plan_cache_mode": "force_custom_plan"},
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise WarehouseUnavailable(
                f"cannot connect to PostgreSQL as {self.settings.redacted_database_url}: {exc}\n"
                "Run `analyticspro setup` (creates the read-only role and its grants), or set "
                "DASHBOARD_DATABASE_URL to a role that can read the analytics schema."
            ) from exc

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        await self.redis.aclose()

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[asyncpg.Record]:
        if self.pool is None:
            raise WarehouseUnavailable("the dashboards service is not connected to PostgreSQL yet")
        try:
            return await self.pool.fetch(query, *args, timeout=timeout)
        except asyncpg.UndefinedTableError as exc:
            raise MartMissing(
                f"{exc}: the marts are not built yet; run `analyticspro materialize` (or `make demo`)"
            ) from exc
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise WarehouseUnavailable(
                f"PostgreSQL did not answer ({exc}); check that it runs (`scripts/ensure-services.sh`)"
            ) from exc

    # -- Redis, with a short circuit-breaker so a dead Redis costs one failed call per few seconds ------------
    @property
    def redis_available(self) -> bool:
        return clock.monotonic() >= self._redis_down_until

    def redis_failed(self, exc: Exception) -> None:
        if self.redis_available:
            log.warning("Redis unavailable (%s); answering from PostgreSQL for %.0fs", exc, REDIS_RETRY_SECONDS)
        self._redis_down_until = clock.monotonic() + REDIS_RETRY_SECONDS

    async def redis_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The Redis call's answer, or None when Redis is down (never raises)."""
        if not self.redis_available:
            return None
        try:
            return await getattr(self.redis, method)(*args, **kwargs)
        except (RedisError, OSError) as exc:
            self.redis_failed(exc)
            return None

    async def health(self) -> dict[str, Any]:
        postgres = True
        try:
            await self.fetch("select 1", timeout=2)
        except (TimeoutError, WarehouseUnavailable, asyncpg.PostgresError):
            postgres = False
        try:
            redis_ok = bool(await self.redis.ping())
        except (RedisError, OSError):
            redis_ok = False
        return {"status": "ok" if postgres and redis_ok else "degraded", "postgres": postgres, "redis": redis_ok}

    # -- hot metrics ---------------------------------------------------------------------------------------
    async def hot_metrics(self) -> dict[str, Any]:
        """Today's signups, DAU, events and revenue: from Redis (updated by every load), else from the marts."""
        today = utc_today()
        names = [self.keys.metric(name, today) for name in HOT_METRICS]
        extra = [
            self.keys.active_5m,
            self.keys.last_hour("signups"),
            self.keys.last_hour("events"),
            self.keys.updated_at,
        ]
        values = await self.redis_call("mget", *names, *extra)
        if values is not None and all(value is not None for value in values[: len(HOT_METRICS)]):
            decoded = [value.decode() if value is not None else None for value in values]
            metrics = dict(zip(HOT_METRICS, decoded, strict=False))
            active, signups_hour, events_hour, updated = decoded[len(HOT_METRICS) :]
            return {
                "date": today,
                "signups": int(Decimal(metrics["signups"])),
                "dau": int(Decimal(metrics["dau"])),
                "events": int(Decimal(metrics["events"])),
                "revenue": float(Decimal(metrics["revenue"])),
                "active_last_5m": int(active) if active is not None else None,
                "signups_last_hour": int(signups_hour) if signups_hour is not None else None,
                "events_last_hour": int(events_hour) if events_hour is not None else None,
                "updated_at": updated,
                "source": "redis",
            }
        rows = await self.fetch(
            "select metric_name, value, _built_at from analytics.daily_metrics where date = $1 "
            "and metric_name = any($2::text[])",
            today,
            list(HOT_METRICS),
        )
        found = {row["metric_name"]: row["value"] for row in rows}
        built = max((row["_built_at"] for row in rows), default=None)
        return {
            "date": today,
            "signups": int(found.get("signups", 0)),
            "dau": int(found.get("dau", 0)),
            "events": int(found.get("events", 0)),
            "revenue": _number(found.get("revenue", 0)),
            "active_last_5m": None,
            "signups_last_hour": None,
            "events_last_hour": None,
            "updated_at": built.isoformat(timespec="seconds") if built else None,
            "source": "postgres" if values is None else "postgres (Redis has no hot metrics for today yet)",
        }

    # -- marts ---------------------------------------------------------------------------------------------
    async def daily_metrics(self, names: list[str], first: date, last: date) -> list[dict[str, Any]]:
        unknown = sorted(set(names) - set(DAILY_METRICS))
        if unknown:
            raise InsightError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(DAILY_METRICS)}")
        return (await self.marts.get()).daily_metrics(names, first, last)

    async def funnel_names(self) -> list[str]:
        return (await self.marts.get()).funnel_names()

    async def funnel(self, name: str, first: date, last: date, breakdown_by: str | None) -> dict[str, Any]:
        """The funnel of the persons who entered between `first` and `last` (entry cohorts), with drop-off."""
        marts = await self.marts.get()
        rows = marts.funnel_steps(name, first, last)
        if not rows and name not in marts.funnel_names():
            known = ", ".join(marts.funnel_names()) or "none: build the marts first"
            raise InsightError(f"unknown funnel {name!r}; configured funnels: {known}")
        result: dict[str, Any] = {
            "name": name,
            "steps": funnel_steps(rows),
            "breakdown_by": breakdown_by,
            "breakdown": [],
        }
        if breakdown_by:
            known_rows = await self.fetch(
                "select distinct breakdown_by from analytics.fct_funnel_breakdown where funnel_name = $1", name
            )
            known = sorted(row[0] for row in known_rows)
            if breakdown_by not in known:
                raise InsightError(
                    f"funnel {name!r} has no breakdown {breakdown_by!r}; configured: {', '.join(known) or 'none'} "
                    "(add it under vars.funnels in dbt_project.yml)"
                )
            groups = await self.fetch(
                "select breakdown_value, step_index, step_name, sum(persons)::bigint as persons, "
                "sum(drop_off)::bigint as drop_off from analytics.fct_funnel_breakdown "
                "where funnel_name = $1 and breakdown_by = $2 and cohort_date between $3 and $4 "
                "group by 1, 2, 3 order by 1, 2",
                name,
                breakdown_by,
                first,
                last,
            )
            by_value: dict[str, list[tuple[int, str, int, int]]] = {}
            for row in groups:
                by_value.setdefault(row["breakdown_value"], []).append(
                    (row["step_index"], row["step_name"], row["persons"], row["drop_off"])
                )
            ordered = sorted(by_value.items(), key=lambda item: (-item[1][0][2], item[0]))
            result["breakdown"] = [{"value": value, "steps": funnel_steps(steps)} for value, steps in ordered]
        return result

    async def retention(self, grain: str, first: date, last: date) -> list[dict[str, Any]]:
        if grain not in RETENTION_GRAINS:
            raise InsightError(f"retention grain must be one of {', '.join(RETENTION_GRAINS)}; got {grain!r}")
        cohorts: dict[date, dict[str, Any]] = {}
        for start, _period, size, retained, rate in (await self.marts.get()).retention_rows(grain, first, last):
            cohort = cohorts.setdefault(start, {"cohort_start": start, "size": size, "retained": [], "rates": []})
            cohort["retained"].append(retained)
            cohort["rates"].append(rate)
        return list(cohorts.values())

    async def revenue(self, first: date, last: date) -> list[dict[str, Any]]:
        return (await self.marts.get()).revenue_months(first, last)

    # -- the query builder ---------------------------------------------------------------------------------
    async def catalogue(self) -> dict[str, set[str]]:
        """Event names and the property keys each has carried (analytics.dim_event_properties), cached 60 s."""
        cached = self._catalogue
        if cached and clock.monotonic() - cached[0] < CATALOGUE_TTL_SECONDS:
            return cached[1]
        async with self._catalogue_lock:
            cached = self._catalogue
            if cached and clock.monotonic() - cached[0] < CATALOGUE_TTL_SECONDS:
                return cached[1]
            rows = await self.fetch("select event_name, property_key from analytics.dim_event_properties")
            catalogue: dict[str, set[str]] = {}
            for row in rows:
                catalogue.setdefault(row["event_name"], set()).add(row["property_key"])
            self._catalogue = (clock.monotonic(), catalogue)
            return catalogue

    async def insight(self, question: Insight) -> dict[str, Any]:
        """The query builder's question, answered by the insights engine as trends (dashboards/insight.py)."""
        answer = await self.questions.ask(to_trends(question, self.settings.insight_max_days))
        return insight_rows(question, answer)


def day_range(today: date, preset: str) -> tuple[date, date]:
    """A preset's first and last day (inclusive), relative to `today` (UTC)."""
    if preset == "TODAY":
        return today, today
    if preset == "YESTERDAY":
        return today - timedelta(days=1), today - timedelta(days=1)
    if preset.startswith("LAST_") and preset.endswith("_DAYS"):
        days = int(preset.removeprefix("LAST_").removesuffix("_DAYS"))
        return today - timedelta(days=days - 1), today
    if preset == "THIS_MONTH":
        return today.replace(day=1), today
    if preset == "LAST_MONTH":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    if preset == "LAST_12_MONTHS":
        return (today.replace(day=1) - timedelta(days=335)).replace(day=1), today
    raise InsightError(f"unknown date range preset {preset!r}")


def now_utc() -> datetime:
    return datetime.now(UTC)
