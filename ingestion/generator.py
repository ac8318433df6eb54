"""Synthetic Segment-spec events for a SaaS product, written the way Kinesis Firehose lands them in S3.

The model is small but has the shape every mart needs: anonymous visitors reading `/`, `/pricing`
and `/signup` with drop-off between steps, signups that stitch the anonymous id to a user id,
trials, purchases and monthly renewals, upgrades, downgrades and churn, weekday seasonality,
retention that decays, people switching devices (new anonymous ids), mobile clients that send
late, and at-least-once delivery (a few events arrive twice with the same messageId).

Output is a pure function of (seed, days, users, end_date): the same arguments give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

PLANS = {"starter": 29, "pro": 99, "business": 299}
PLAN_ORDER = ["starter", "pro", "business"]
COUNTRIES = ["US", "US", "US", "GB", "DE", "FR", "IN", "BR", "CA", "AU", "NL", "ES", "JP"]
USER_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
]
REFERRERS = ["", "", "https://www.google.com/", "https://news.ycombinator.com/", "https://twitter.com/"]
CAMPAIGNS = [None, None, None, ("google", "cpc", "brand"), ("newsletter", "email", "launch-week")]
APP_PAGES = ["/dashboard", "/dashboard", "/reports", "/reports/new", "/settings", "/billing", "/integrations"]
APP_BUTTONS = ["create_report", "share_report", "export_csv", "invite_teammate", "connect_source"]
# Relative traffic by weekday (Mon..Sun): business software is quieter at weekends.
WEEKDAY_WEIGHT = [1.0, 1.05, 1.05, 1.0, 0.9, 0.55, 0.5]
SITE = "https://app.example.com"
BATCH_MAX_EVENTS = 2000


@dataclass
class GeneratedDataset:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    events_written: int = 0  # lines written, duplicates included
    unique_events: int = 0  # distinct messageIds
    visitors: int = 0
    signups: int = 0


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class _Person:
    """One visitor's life in the product; appends events to `sink`."""

    def __init__(self, index: int, seed: int, start: date, days: int, period_end: datetime, sink: list):
        self.rng = random.Random(f"{seed}:{index}")
        self.index = index
        self.start = start
        self.days = days
        self.period_end = period_end
        self.sink = sink
        self.anonymous_id = _uuid(self.rng)
        self.user_id: str | None = None
        octets = (
            self.rng.randint(11, 223),
            self.rng.randint(0, 255),
            self.rng.randint(0, 255),
            self.rng.randint(1, 254),
        )
        self.ip = ".".join(map(str, octets))
        self.user_agent = self.rng.choice(USER_AGENTS)
        self.country = self.rng.choice(COUNTRIES)
        self.mobile_app = "iPhone" in self.user_agent or "Android" in self.user_agent
        # A few phones have a wrong clock; Segment's clock-skew rule (ingestion/validation.py) undoes it.
        # Drawn from a generator of its own so the rest of the simulation is unchanged.
        clock = random.Random(f"{seed}:{index}:clock")
        wrong = self.mobile_app and clock.random() < 0.05
        self.clock_skew = timedelta(minutes=clock.choice([-180, -30, -4, 3, 45, 600])) if wrong else timedelta(0)
        self.traits: dict = {}
        self.plan = "free"
        self.mrr = 0

    # -- event helpers -------------------------------------------------------------------
    def _emit(self, ts: datetime, kind: str, campaign: tuple | None = None, **fields) -> datetime:
        if ts >= self.period_end:
            return ts
        rng = self.rng
        # Clients batch for a few seconds; mobile apps are sometimes offline for hours.
        delay = timedelta(milliseconds=rng.randint(50, 4000))
        if self.mobile_app and rng.random() < 0.04:
            delay += timedelta(minutes=rng.randint(30, 36 * 60))
        sent_at = min(ts + delay, self.period_end - timedelta(milliseconds=500))
        sent_at = max(sent_at, ts)
        received_at = sent_at + timedelta(milliseconds=rng.randint(20, 400))
        event = {"type": kind, "messageId": _uuid(rng), "anonymousId": self.anonymous_id}
        if self.user_id:
            event["userId"] = self.user_id
        event.update(fields)
        event["context"] = {
            "ip": self.ip,
            "userAgent": self.user_agent,
            "library": {
                "name": "analytics.js" if not self.mobile_app else "analytics-ios",
                "version": "5.2.0",
            },
        }
        if campaign:  # utm fields live in context.campaign in the Segment spec
            event["context"]["campaign"] = dict(zip(("source", "medium", "name"), campaign, strict=True))
        # What a Segment-compatible collector stores: the client's clock (originalTimestamp, sentAt), the
        # server's (receivedAt), and timestamp = receivedAt - (sentAt - originalTimestamp).
        original, sent, received = _iso(ts + self.clock_skew), _iso(sent_at + self.clock_skew), _iso(received_at)
        event["originalTimestamp"] = original
        event["timestamp"] = _iso(_parse_iso(received) - (_parse_iso(sent) - _parse_iso(original)))
        event["sentAt"] = sent
        event["receivedAt"] = received
        self.sink.append(event)
        return ts + timedelta(seconds=rng.randint(5, 90))

    def page(self, ts: datetime, path: str, referrer: str = "", campaign=None) -> datetime:
        props = {
            "path": path,
            "url": SITE + path,
            "title": path.strip("/").title() or "Home",
            "referrer": referrer,
        }
        return self._emit(ts, "page", campaign=campaign, name=props["title"], properties=props)

    def track(self, ts: datetime, name: str, props: dict | None = None) -> datetime:
        return self._emit(ts, "track", event=name, properties=props or {})

    def identify(self, ts: datetime) -> datetime:
        return self._emit(ts, "identify", traits=dict(self.traits))

    # -- lifecycle ------------------------------------------------------------------------
    def live(self, arrival_day: int) -> bool:
        rng = self.rng
        ts = datetime.combine(self.start + timedelta(days=arrival_day), time(), UTC) + _time_of_day(rng)
        campaign = rng.choice(CAMPAIGNS)
        ts = self.page(ts, "/", referrer=rng.choice(REFERRERS), campaign=campaign)
        signed_up_at = None
        # Funnel: home -> pricing -> signup page -> signed up, with realistic drop-off.
        if rng.random() < 0.55:
            ts = self.page(ts, "/pricing")
            if rng.random() < 0.25:
                ts = self.track(ts, "button_clicked", {"button_id": "compare_plans", "path": "/pricing"})
            if rng.random() < 0.5:
                ts = self.track(ts, "button_clicked", {"button_id": "start_free_trial", "path": "/pricing"})
                ts = self.page(ts, "/signup")
                if rng.random() < 0.62:
                    ts = self.track(ts, "form_submitted", {"form_id": "signup", "path": "/signup"})
                    signed_up_at = ts
        elif rng.random() < 0.08:
            ts = self.page(ts, "/signup")
            if rng.random() < 0.5:
                ts = self.track(ts, "form_submitted", {"form_id": "signup", "path": "/signup"})
                signed_up_at = ts
        # Some visitors come back another day, still anonymous, and some of those sign up then.
        if signed_up_at is None and rng.random() < 0.25:
            day = arrival_day + rng.randint(1, 10)
            if day < self.days:
                ts = datetime.combine(self.start + timedelta(days=day), time(), UTC) + _time_of_day(rng)
                ts = self.page(ts, "/")
                ts = self.page(ts, "/pricing")
                if rng.random() < 0.3:
                    ts = self.page(ts, "/signup")
                    ts = self.track(ts, "form_submitted", {"form_id": "signup", "path": "/signup"})
                    signed_up_at = ts
        if signed_up_at is None or ts >= self.period_end:
            return False
        self._sign_up(ts)
        return True

    def _sign_up(self, ts: datetime) -> None:
        rng = self.rng
        self.user_id = f"user_{self.index:06d}"
        self.traits = {
            "email": f"{self.user_id}@example.com",
            "plan": "free",
            "mrr": 0,
            "signup_date": ts.date().isoformat(),
            "country": self.country,
        }
        method = rng.choice(["email", "email", "google", "github"])
        ts = self.track(ts, "user_signed_up", {"method": method, "plan": "free"})
        ts = self.identify(ts)
        trial_end = None
        if rng.random() < 0.8:
            ts = self.track(ts, "trial_started", {"plan": "pro", "trial_days": 14})
            trial_end = ts + timedelta(days=rng.choice([7, 10, 14, 14]))
        # Engagement: each person has an activity level; activity decays after signup.
        engagement = rng.betavariate(2, 3)
        will_pay = trial_end is not None and rng.random() < 0.25 + 0.5 * engagement
        paid_day = None
        signup_day = (ts.date() - self.start).days
        day = signup_day
        self._session(ts + timedelta(minutes=2), engagement)
        while True:
            day += 1
            if day >= self.days:
                break
            day_start = datetime.combine(self.start + timedelta(days=day), time(), UTC)
            age = day - signup_day
            weekday = WEEKDAY_WEIGHT[(self.start + timedelta(days=day)).weekday()]
            p_active = weekday * (0.12 + 0.75 * engagement * (0.4 + 0.6 * math.exp(-age / 6)))
            if self.plan != "free":
                p_active = min(0.95, p_active * 1.6)
            billing_today = False
            if will_pay and paid_day is None and trial_end is not None and day_start.date() >= trial_end.date():
                paid_day = day
                billing_today = True
            elif paid_day is not None and self.plan != "free" and (day - paid_day) % 30 == 0:
                billing_today = True
            if billing_today or rng.random() < p_active:
                at = day_start + _time_of_day(rng)
                at = self._session(at, engagement)
                if billing_today:
                    self._bill(at, first=(day == paid_day))
                elif self.plan != "free" and rng.random() < 0.03:
                    self._change_plan(at)
                elif self.plan != "free" and rng.random() < 0.015:
                    self._cancel(at)

    def _session(self, ts: datetime, engagement: float) -> datetime:
        rng = self.rng
        if rng.random() < 0.04:  # a new device or browser: a fresh anonymous id, stitched by userId
            self.anonymous_id = _uuid(rng)
        if rng.random() < 0.1:
            ts = self.identify(ts)
        for _ in range(1 + int(rng.expovariate(1 / (1 + 5 * engagement)))):
            r = rng.random()
            if r < 0.55:
                ts = self.page(ts, rng.choice(APP_PAGES))
            elif r < 0.85:
                ts = self.track(ts, "button_clicked", {"button_id": rng.choice(APP_BUTTONS)})
            elif r < 0.95:
                ts = self.track(ts, "form_submitted", {"form_id": rng.choice(["report", "settings", "invite"])})
            else:
                ts = self.track(ts, "report_created", {"report_type": rng.choice(["funnel", "trend", "retention"])})
        return ts

    def _bill(self, ts: datetime, first: bool) -> None:
        rng = self.rng
        if first:
            self.plan = rng.choices(PLAN_ORDER, weights=[5, 4, 1])[0]
            self.mrr = PLANS[self.plan]
        ts = self.track(
            ts,
            "purchase_completed",
            {
                "order_id": f"ord_{self.index:06d}_{ts:%Y%m%d}",
                "plan": self.plan,
                "revenue": float(self.mrr),
                "currency": "USD",
                "billing_period": "monthly",
                "renewal": not first,
            },
        )
        if first:
            self.traits.update(plan=self.plan, mrr=self.mrr)
            self.identify(ts)

    def _change_plan(self, ts: datetime) -> None:
        rng = self.rng
        position = PLAN_ORDER.index(self.plan)
        upgrade = position == 0 or (position < 2 and rng.random() < 0.65)
        new_plan = PLAN_ORDER[position + 1] if upgrade else PLAN_ORDER[position - 1]
        props = {
            "previous_plan": self.plan,
            "plan": new_plan,
            "previous_mrr": self.mrr,
            "mrr": PLANS[new_plan],
        }
        self.plan, self.mrr = new_plan, PLANS[new_plan]
        ts = self.track(ts, "subscription_changed", props)
        self.traits.update(plan=self.plan, mrr=self.mrr)
        self.identify(ts)

    def _cancel(self, ts: datetime) -> None:
        props = {
            "plan": self.plan,
            "previous_mrr": self.mrr,
            "mrr": 0,
            "reason": self.rng.choice(["too_expensive", "missing_feature", "switched_tool", "no_longer_needed"]),
        }
        self.plan, self.mrr = "free", 0
        ts = self.track(ts, "subscription_canceled", props)
        self.traits.update(plan="free", mrr=0)
        self.identify(ts)


def _time_of_day(rng: random.Random) -> timedelta:
    # Busy during (UTC) working hours, quiet at night.
    hour = min(23.99, max(0.0, rng.gauss(14, 4.5)))
    return timedelta(seconds=int(hour * 3600) + rng.randint(0, 59))


def _arrival_days(rng: random.Random, days: int, users: int, start: date) -> list[int]:
    # Weekday seasonality and gentle growth.
    weights = [WEEKDAY_WEIGHT[(start + timedelta(days=d)).weekday()] * (1 + 0.01 * d) for d in range(days)]
    return rng.choices(range(days), weights=weights, k=users)


def iter_events(*, days: int, users: int, seed: int, end_date: date) -> Iterator[dict]:
    """Every distinct event, in no particular order."""
    start = end_date - timedelta(days=days - 1)
    period_end = datetime.combine(end_date + timedelta(days=1), time(), UTC)
    arrivals = _arrival_days(random.Random(seed), days, users, start)
    for index, arrival_day in enumerate(arrivals):
        sink: list[dict] = []
        _Person(index, seed, start, days, period_end, sink).live(arrival_day)
        yield from sink


def generate(
    out_dir: str | Path,
    *,
    days: int = 30,
    users: int = 3000,
    seed: int = 42,
    end_date: date | None = None,
    duplicate_rate: float = 0.003,
    progress: Callable[[str], None] | None = None,
) -> GeneratedDataset:
    """Write gzipped JSON-lines batch files under `out_dir/events/YYYY/MM/DD/HH/`."""
    if days < 1 or users < 1:
        raise ValueError("--days and --users must be at least 1")
    end_date = end_date or datetime.now(UTC).date()
    out = Path(out_dir)
    result = GeneratedDataset(out_dir=out, visitors=users)
    events = list(iter_events(days=days, users=users, seed=seed, end_date=end_date))
    result.unique_events = len(events)
    result.signups = sum(1 for e in events if e.get("event") == "user_signed_up")
    # At-least-once delivery: a few events are delivered again, in a later batch.
    dup_rng = random.Random(f"{seed}:duplicates")
    duplicates = [e for e in events if dup_rng.random() < duplicate_rate]
    delivered = [(e["receivedAt"], 0, e) for e in events]
    delivered += [(e["receivedAt"], 1, e) for e in duplicates]
    delivered.sort(key=lambda item: (item[0][:13], item[1], item[0], item[2]["messageId"]))
    by_hour: dict[str, list[dict]] = defaultdict(list)
    for received_at, _, event in delivered:
        by_hour[received_at[:13]].append(event)
    for n, (hour, batch_events) in enumerate(sorted(by_hour.items())):
        folder = out / "events" / hour[0:4] / hour[5:7] / hour[8:10] / hour[11:13]
        folder.mkdir(parents=True, exist_ok=True)
        for part, offset in enumerate(range(0, len(batch_events), BATCH_MAX_EVENTS)):
            chunk = batch_events[offset : offset + BATCH_MAX_EVENTS]
            name = f"analyticspro-events-{hour.replace('-', '').replace('T', '')}-{part:04d}.jsonl.gz"
            path = folder / name
            path.write_bytes(_gzip_lines(chunk))
            result.files.append(path)
            result.events_written += len(chunk)
        if progress and (n % 100 == 0 or n == len(by_hour) - 1):
            progress(f"wrote {n + 1}/{len(by_hour)} hourly folders, {result.events_written:,} events")
    return result


def _gzip_lines(events: list[dict]) -> bytes:
    raw = "".join(json.dumps(e, separators=(",", ":"), sort_keys=False) + "\n" for e in events).encode()
    buffer = io.BytesIO()
    # mtime=0 and no file name in the header: same input, same bytes.
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw)
    return buffer.getvalue()
