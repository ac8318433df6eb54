"""Real-time hot metrics: Redis kept current from the newest rows of raw.events, without rebuilding the marts.

Every run reads only the rows of the dlt loads it has not read yet (the ids of the loads read, kept in Redis: a
load that commits late or out of order, a crashed run's package finished by the next one, is still read once),
folds them into small Redis structures (per-day sets of people, per-day and per-minute counters, the
last activity time of each person), and publishes the numbers under versioned keys. A run therefore costs in
proportion to what arrived, whatever the size of the warehouse.

Published keys (`P` = REDIS_KEY_PREFIX; values are decimal strings; every key expires):

    P:metrics:v1:{signups,dau,events,revenue}:<YYYY-MM-DD>   today and yesterday (UTC), TTL HOT_METRICS_TTL_SECONDS
    P:metrics:v1:{signups,active_people,events,revenue}:last_hour   the last 60 minutes, TTL 180 s
    P:metrics:v1:active_people:last_5m                        people with an activity event in the last 5 minutes
    P:metrics:v1:funnel:default                               JSON: the default funnel, cohorts of the last 30 days
    P:metrics:v1:updated_at                                   when the numbers were last refreshed (ISO-8601 UTC)

Definitions are the marts' (docs/metrics.md): `events` are activity events (track, page, screen), `dau` the
distinct people with one, `signups` the `user_signed_up` track events, `revenue` the `revenue` property of
`purchase_completed`. A person is the user id, else the user id their anonymous id was first seen with (the
warehouse's identity map, plus pairs seen in the newest events: an anonymous visitor counted before signing up
is moved to the user), else the anonymous id. The warehouse's daily_metrics, rebuilt by the marts runs, remain
the reference for closed days.

State lives under `P:hot:v1:*`; if Redis loses it, the next run rebuilds it from raw.events of the last 2 days.
Callers: the `hot_metrics` asset of every Dagster run, and `analyticspro realtime`, which loads new objects and
stream records as they arrive and folds them in within seconds (ingestion/follow.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg2.extensions
import redis

from common.db import table_exists
from common.dbt_vars import activity_event_types, default_funnel_name, metric_events
from common.ratios import ratio
from common.redis_keys import HotKeys

DAY_METRICS = ("signups", "dau", "events", "revenue")
HOUR_METRICS = ("signups", "active_people", "events", "revenue")
WINDOW_TTL_SECONDS = 180  # rolling windows vanish soon after refreshes stop, so they are never stale
STATE_TTL_SECONDS = 49 * 3600
MINUTE_TTL_SECONDS = 2 * 3600
MICROS = Decimal(1_000_000)


@dataclass
class HotUpdate:
    """What one run did."""

    rows_read: int = 0
    rows_counted: int = 0
    loads_read: int = 0
    cursor: str | None = None
    rebuilt: bool = False
    published: dict[str, str] = field(default_factory=dict)


def _format(value: Decimal | int) -> str:
    return format(Decimal(value).normalize(), "f")


LOADS_WINDOW = timedelta(days=2)  # loads committed longer ago than this are never read (their days are closed)
LOADS_KEPT = timedelta(days=3)


def _committed_loads(cursor: psycopg2.extensions.cursor) -> list[tuple[str, float]]:
    """The loads committed within LOADS_WINDOW (id, commit time as epoch seconds), oldest first."""
    if not table_exists(cursor, "raw._dlt_loads"):
        return []
    cursor.execute(
        """
        select load_id, extract(epoch from inserted_at)::float8 from raw._dlt_loads
        where status = 0 and inserted_at > now() - %s order by inserted_at, load_id
        """,
        (LOADS_WINDOW,),
    )
    return cursor.fetchall()


def _reset_state(client: redis.Redis, keys: HotKeys) -> None:
    stale = list(client.scan_iter(keys.state_pattern, count=1000))
    if stale:
        client.delete(*stale)


def update_hot_metrics(
    connection: psycopg2.extensions.connection,
    client: redis.Redis,
    prefix: str,
    ttl_seconds: int,
    now: datetime | None = None,
) -> HotUpdate:
    """Fold the raw.events rows of the committed loads not read yet into Redis and publish every key."""
    now = now or datetime.now(UTC)
    keys = HotKeys(prefix)
    today = now.date()
    days = (today - timedelta(days=1), today)
    update = HotUpdate()
    rebuild = client.get(keys.since) is None  # first run, or Redis lost the state: rebuild from the last two days
    if rebuild:
        _reset_state(client, keys)
        update.rebuilt = True
    since = datetime.combine(days[0], datetime.min.time(), UTC)
    # the committed loads and their rows, read in one snapshot: a load committing meanwhile is read next time
    connection.rollback()
    connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with connection.cursor() as cursor:
            committed = _committed_loads(cursor)
            read = set() if rebuild else set(client.zrange(keys.loads, 0, -1))
            unread = [(load_id, at) for load_id, at in committed if load_id not in read]
            rows: list[tuple] = []
            if (rebuild or unread) and table_exists(cursor, "raw.events"):
                rows = _new_rows(cursor, None if rebuild else [load_id for load_id, _ in unread], since)
    finally:
        connection.rollback()
        connection.set_session(isolation_level="DEFAULT", readonly=False)
    update.rows_read = len(rows)

    def record_read(pipe: redis.client.Pipeline) -> None:
        """In the same Redis transaction as the counts: the loads they include (never counted twice or lost)."""
        if unread:
            pipe.zadd(keys.loads, dict(unread))
        pipe.zremrangebyscore(keys.loads, "-inf", (now - LOADS_KEPT).timestamp())
        pipe.expire(keys.loads, STATE_TTL_SECONDS)
        if rebuild:
            pipe.set(keys.since, now.isoformat(timespec="seconds"), ex=STATE_TTL_SECONDS)
        else:
            pipe.expire(keys.since, STATE_TTL_SECONDS)

    update.rows_counted = _fold(client, keys, rows, days, now, record_read)
    update.loads_read = len(unread)
    update.cursor = committed[-1][0] if committed else None
    update.published = publish(connection, client, keys, days, now, ttl_seconds)
    return update


def _new_rows(cursor: psycopg2.extensions.cursor, load_ids: list[str] | None, since: datetime) -> list[tuple]:
    """The raw rows dated `since` or later of the loads `load_ids` (every load when None), with the warehouse's
    user id of each anonymous id."""
    cursor.execute(
        f"""
        select type, event, user_id, anonymous_id, "timestamp", message_id,
               case when jsonb_typeof(properties -> 'revenue') = 'number' then properties ->> 'revenue' end
        from raw.events
        where "timestamp" >= %(since)s {"and _dlt_load_id = any(%(loads)s)" if load_ids is not None else ""}
        order by "timestamp", message_id
        """,
        {"since": since, "loads": load_ids},
    )
    rows = cursor.fetchall()
    anonymous = sorted({row[3] for row in rows if row[3] is not None})
    warehouse_map: dict[str, str] = {}
    if anonymous and table_exists(cursor, "intermediate.int_identity_map"):
        cursor.execute(
            "select anonymous_id, user_id from intermediate.int_identity_map where anonymous_id = any(%s)",
            (anonymous,),
        )
        warehouse_map = dict(cursor.fetchall())
    return [(*row, warehouse_map.get(row[3])) for row in rows]


def _fold(
    client: redis.Redis,
    keys: HotKeys,
    rows: list[tuple],
    days: tuple[date, date],
    now: datetime,
    also: Callable[[redis.client.Pipeline], None],
) -> int:
    # identity: the warehouse's map, then pairs already learned, then pairs in these rows (first seen wins)
    # the marts' definitions, from dbt_project.yml's vars
    activity_types = activity_event_types()
    signup_event, purchase_event = metric_events()["signup"], metric_events()["purchase"]
    anonymous = sorted({row[3] for row in rows if row[3] is not None})
    learned = dict(zip(anonymous, client.hmget(keys.identity, anonymous), strict=True)) if anonymous else {}
    mapping = {anon: user for anon, user in learned.items() if user is not None}
    for *_first, anon, _at, _message_id, _revenue, warehouse_user in rows:
        if anon is not None and warehouse_user is not None:
            mapping[anon] = warehouse_user
    new_pairs: dict[str, str] = {}
    for _type, _event, user_id, anon, *_rest in rows:
        if anon is not None and user_id is not None and anon not in mapping:
            mapping[anon] = new_pairs[anon] = user_id

    counts: dict[date, dict[str, int]] = {day: defaultdict(int) for day in days}
    minutes: dict[datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    persons: dict[date, set[str]] = {day: set() for day in days}
    seen: dict[str, float] = {}
    hour_ago = now - timedelta(hours=2)
    counted = 0
    for event_type, event, user_id, anon, at, _message_id, revenue, _warehouse_user in rows:
        day = at.astimezone(UTC).date()
        if day not in counts:
            continue  # older than yesterday, or ahead of today: the marts count it
        counted += 1
        person = user_id or mapping.get(anon) or anon
        minute = at.astimezone(UTC).replace(second=0, microsecond=0) if at >= hour_ago else None
        increments = {}
        if event_type in activity_types:
            increments["events"] = 1
            persons[day].add(person)
            seen[person] = max(seen.get(person, 0.0), at.timestamp())
        if event_type == "track" and event == signup_event:
            increments["signups"] = 1
        if event_type == "track" and event == purchase_event and revenue is not None:
            increments["revenue_micros"] = int(Decimal(revenue) * MICROS)
        for name, amount in increments.items():
            counts[day][name] += amount
            if minute is not None:
                minutes[minute][name] += amount

    # an anonymous visitor counted before their first pair arrived becomes the user
    moves = []
    for anon, user in new_pairs.items():
        for day in days:
            if client.sismember(keys.persons(day), anon):
                moves.append(("persons", day, anon, user))
        score = client.zscore(keys.seen, anon)
        if score is not None:
            moves.append(("seen", score, anon, user))

    with client.pipeline(transaction=True) as pipe:
        for kind, where, anon, user in moves:
            if kind == "persons":
                pipe.srem(keys.persons(where), anon)
                pipe.sadd(keys.persons(where), user)
            else:
                pipe.zrem(keys.seen, anon)
                pipe.zadd(keys.seen, {user: where}, gt=True)
        if new_pairs:
            pipe.hset(keys.identity, mapping=new_pairs)
            pipe.expire(keys.identity, STATE_TTL_SECONDS)
        for day in days:
            for name, amount in counts[day].items():
                pipe.hincrby(keys.counts(day), name, amount)
            if persons[day]:
                pipe.sadd(keys.persons(day), *persons[day])
            pipe.expire(keys.counts(day), STATE_TTL_SECONDS)
            pipe.expire(keys.persons(day), STATE_TTL_SECONDS)
        for minute, values in minutes.items():
            for name, amount in values.items():
                pipe.hincrby(keys.minute(minute), name, amount)
            pipe.expire(keys.minute(minute), MINUTE_TTL_SECONDS)
        if seen:
            pipe.zadd(keys.seen, seen, gt=True)
        pipe.zremrangebyscore(keys.seen, "-inf", (now - timedelta(hours=48)).timestamp())
        pipe.expire(keys.seen, STATE_TTL_SECONDS)
        also(pipe)
        pipe.execute()
    return counted


def refresh_windows(client: redis.Redis, prefix: str, now: datetime | None = None) -> dict[str, str]:
    """Publish the rolling windows (last hour, last 5 minutes) from the state alone: Redis only, microseconds;
    the sensors call it on every tick so the windows move on even when nothing arrives."""
    now = now or datetime.now(UTC)
    keys = HotKeys(prefix)
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    minute_keys = [keys.minute(start + timedelta(minutes=i)) for i in range(60)]
    with client.pipeline(transaction=False) as pipe:
        for key in minute_keys:
            pipe.hgetall(key)
        # (now - window, now]: a clock-skewed event stamped in the future is not "active in the last 5 minutes"
        pipe.zcount(keys.seen, f"({(now - timedelta(hours=1)).timestamp()}", now.timestamp())
        pipe.zcount(keys.seen, f"({(now - timedelta(minutes=5)).timestamp()}", now.timestamp())
        *buckets, people_hour, people_5m = pipe.execute()
    totals: dict[str, int] = defaultdict(int)
    for bucket in buckets:
        for name, amount in bucket.items():
            totals[name] += int(amount)
    written = {
        keys.last_hour("signups"): _format(totals["signups"]),
        keys.last_hour("active_people"): _format(people_hour),
        keys.last_hour("events"): _format(totals["events"]),
        keys.last_hour("revenue"): _format(Decimal(totals["revenue_micros"]) / MICROS),
        keys.active_5m: _format(people_5m),
    }
    with client.pipeline(transaction=True) as pipe:
        for key, value in written.items():
            pipe.set(key, value, ex=WINDOW_TTL_SECONDS)
        pipe.execute()
    return written


def publish(
    connection: psycopg2.extensions.connection,
    client: redis.Redis,
    keys: HotKeys,
    days: tuple[date, date],
    now: datetime,
    ttl_seconds: int,
) -> dict[str, str]:
    """Write every published key from the state (and the funnel from the marts) in one transaction."""
    written: dict[str, str] = {}
    for day in days:
        raw = client.hgetall(keys.counts(day))
        written[keys.metric("signups", day)] = _format(int(raw.get("signups", 0)))
        written[keys.metric("dau", day)] = _format(client.scard(keys.persons(day)))
        written[keys.metric("events", day)] = _format(int(raw.get("events", 0)))
        written[keys.metric("revenue", day)] = _format(Decimal(int(raw.get("revenue_micros", 0))) / MICROS)
    funnel = default_funnel(connection)
    if funnel is not None:
        written[keys.funnel] = json.dumps(funnel, separators=(",", ":"))
    written[keys.updated_at] = now.isoformat(timespec="seconds")
    with client.pipeline(transaction=True) as pipe:
        for key, value in written.items():
            pipe.set(key, value, ex=ttl_seconds)
        pipe.execute()
    written.update(refresh_windows(client, keys.prefix, now))
    return written


def default_funnel(connection: psycopg2.extensions.connection, days: int = 30) -> dict | None:
    """The default funnel (common.dbt_vars.default_funnel_name) over the entry cohorts of the last `days` days of the
    latest marts build."""
    name = default_funnel_name()
    with connection.cursor() as cursor:
        if name is None or not table_exists(cursor, "analytics.fct_funnel_steps"):
            return None
        cursor.execute(
            """
            with latest as (select max(cohort_date) as last_cohort from analytics.fct_funnel_steps
                            where funnel_name = %(funnel)s)
            select step_index, step_name, sum(persons)::bigint, min(cohort_date), max(cohort_date)
            from analytics.fct_funnel_steps, latest
            where funnel_name = %(funnel)s and cohort_date > latest.last_cohort - %(days)s
            group by step_index, step_name
            order by step_index
            """,
            {"funnel": name, "days": days},
        )
        rows = cursor.fetchall()
    if not rows:
        return None
    entered = rows[0][2]
    return {
        "cohorts": [rows[0][3].isoformat(), rows[0][4].isoformat()],
        "steps": [{"name": name, "persons": persons} for _index, name, persons, _first, _last in rows],
        "conversion": ratio(rows[-1][2], entered),
    }
