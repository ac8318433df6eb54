"""Connections the serving assets use: the warehouse (Postgres marts) and Redis."""

from __future__ import annotations

import dagster as dg
import psycopg2
import redis


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL database holding the marts (DATABASE_URL)."""

    database_url: str

    def connect(self) -> psycopg2.extensions.connection:
        return psycopg2.connect(self.database_url)


class RedisResource(dg.ConfigurableResource):
    """Redis for hot metrics (REDIS_URL); every key starts with `key_prefix` (REDIS_KEY_PREFIX) and expires
    after `ttl_seconds` (HOT_METRICS_TTL_SECONDS)."""

    url: str
    key_prefix: str = "analyticspro"
    ttl_seconds: int = 48 * 3600

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)
