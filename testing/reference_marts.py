"""A second, independent computation of every mart, in pandas, from the deduplicated events.

It shares nothing with the dbt models but the written definitions (docs/metrics.md): it starts from
the events that testing/reference.py parsed from the batch files, and computes persons, sessions,
dim_users, daily_metrics, the default funnel, cohort retention, fct_mrr and revenue_monthly.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from statistics import median

import pandas as pd

from testing.reference import anonymous_id_of, parse_ts

ACTIVITY = {"track", "page", "screen"}
SESSION_TIMEOUT = timedelta(minutes=30)
DEFAULT_FUNNEL = [
    ("Landing page", lambda e: e["event_type"] == "page" and e["page_path"] == "/"),
    ("Signed up", lambda e: e["event_name"] == "user_signed_up"),
    ("Trial started", lambda e: e["event_name"] == "trial_started"),
    ("Purchase", lambda e: e["event_name"] == "purchase_completed"),
]


def q6(value) -> Decimal:
    """numeric(20, 6) as PostgreSQL rounds it (half away from zero)."""
    return Decimal(value).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _number(value) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(str(value))


def event_frame(events: dict[str, dict]) -> pd.DataFrame:
    """One row per event with the stitched person and the fields the marts use."""
    first_pair: dict[str, tuple] = {}
    for event in events.values():
        anon, user = anonymous_id_of(event), event.get("userId")
        if anon and user:
            key = (parse_ts(event["timestamp"]), event["messageId"], user)
            if anon not in first_pair or key < first_pair[anon]:
                first_pair[anon] = key
    rows = []
    for event in events.values():
        props = event.get("properties") or {}
        context = event.get("context") or {}
        referrer = props.get("referrer")
        if referrer is None:
            referrer = (context.get("page") or {}).get("referrer")
        campaign = context.get("campaign") or {}
        user, anon = event.get("userId"), anonymous_id_of(event)
        person = user or (first_pair[anon][2] if anon in first_pair else anon)
        kind = event["type"]
        at = parse_ts(event["timestamp"])
        rows.append(
            {
                "message_id": event["messageId"],
                "person_id": person,
                "user_id": user,
                "anonymous_id": anon,
                "event_type": kind,
                "event_name": event.get("event") if kind == "track" else (kind if kind in ("page", "screen") else None),
                "event_at": at,
                "event_date": at.date(),
                "is_activity": kind in ACTIVITY,
                "page_path": props.get("path"),
                "referrer": referrer or None,
                "utm_source": campaign.get("source"),
                "utm_medium": campaign.get("medium"),
                "utm_campaign": campaign.get("name"),
                "revenue": _number(props.get("revenue")),
                "traits": event.get("traits") if kind == "identify" else None,
                "properties": props,
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values(["event_at", "message_id"], kind="stable").reset_index(drop=True)


def sessions(frame: pd.DataFrame) -> pd.DataFrame:
    activity = frame[frame.is_activity].sort_values(["person_id", "event_at", "message_id"], kind="stable")
    out = []
    for person, group in activity.groupby("person_id", sort=False):
        current: list[dict] = []
        previous_at = None
        for event in group.to_dict("records"):
            if previous_at is not None and event["event_at"] - previous_at > SESSION_TIMEOUT:
                out.append(_session(person, current))
                current = []
            current.append(event)
            previous_at = event["event_at"]
        out.append(_session(person, current))
    return pd.DataFrame(out)


def _first(events: list[dict], field: str):
    return next((e[field] for e in events if e[field] is not None), None)


def _session(person: str, events: list[dict]) -> dict:
    pages = [e for e in events if e["event_type"] == "page"]
    return {
        "person_id": person,
        "session_start": events[0]["event_at"],
        "session_end": events[-1]["event_at"],
        "session_date": events[0]["event_at"].date(),
        "event_count": len(events),
        "page_views": len(pages),
        "landing_page": pages[0]["page_path"] if pages else None,
        "referrer": _first(events, "referrer"),
        "utm_source": _first(events, "utm_source"),
        "utm_medium": _first(events, "utm_medium"),
        "utm_campaign": _first(events, "utm_campaign"),
    }


def dim_users(frame: pd.DataFrame) -> pd.DataFrame:
    out = []
    for person, group in frame.groupby("person_id"):
        activity = group[group.is_activity]
        signups = group[(group.event_type == "track") & (group.event_name == "user_signed_up")]
        traits: dict = {}
        for value in group[group.event_type == "identify"].traits:
            if isinstance(value, dict):
                traits.update(value)
        out.append(
            {
                "person_id": person,
                "first_seen_at": group.event_at.min(),
                "last_seen_at": group.event_at.max(),
                "first_activity_at": activity.event_at.min() if len(activity) else None,
                "last_activity_at": activity.event_at.max() if len(activity) else None,
                "signed_up_at": signups.event_at.min() if len(signups) else None,
                "email": traits.get("email"),
                "plan": traits.get("plan"),
                "country": traits.get("country"),
                "mrr": _number(traits.get("mrr")),
                "activity_events": len(activity),
            }
        )
    return pd.DataFrame(out).set_index("person_id")


def mrr_changes(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for event in frame.to_dict("records"):
        value = None
        if event["event_type"] == "identify" and isinstance(event["traits"], dict):
            value = _number(event["traits"].get("mrr"))
        elif event["event_type"] == "track" and event["event_name"] == "subscription_canceled":
            value = Decimal(0)
        elif event["event_type"] == "track" and event["event_name"] == "subscription_changed":
            value = _number(event["properties"].get("mrr"))
        if value is not None:
            rows.append((event["person_id"], event["event_at"], event["message_id"], value))
    changes = pd.DataFrame(rows, columns=["person_id", "changed_at", "message_id", "mrr"])
    return changes.sort_values(["person_id", "changed_at", "message_id"], kind="stable")


def _mrr_on(changes: pd.DataFrame, day: date) -> dict[str, Decimal]:
    """Each person's MRR at the end of `day`: the last value set on or before it."""
    until = changes[changes.changed_at.map(lambda t: t.date() <= day)]
    return {person: group.mrr.iloc[-1] for person, group in until.groupby("person_id")}


def daily_metrics(frame: pd.DataFrame, session_frame: pd.DataFrame, users: pd.DataFrame) -> dict:
    first_day, last_day = frame.event_date.min(), frame.event_date.max()
    activity = frame[frame.is_activity]
    active_by_day = activity.groupby("event_date").person_id.agg(set).to_dict()
    changes = mrr_changes(frame)
    first_activity = users.first_activity_at.dropna().map(lambda t: t.date()).value_counts().to_dict()
    session_starts = session_frame.session_date.value_counts().to_dict()
    result: dict[tuple[date, str], Decimal] = {}
    day = first_day
    while day <= last_day:

        def active_within(days: int, end: date = day) -> int:
            people: set[str] = set()
            for offset in range(days):
                people |= active_by_day.get(end - timedelta(days=offset), set())
            return len(people)

        dau, wau, mau = len(active_by_day.get(day, ())), active_within(7), active_within(30)
        of_day = frame[frame.event_date == day]
        purchases = of_day[(of_day.event_type == "track") & (of_day.event_name == "purchase_completed")]
        values = {
            "dau": dau,
            "wau": wau,
            "mau": mau,
            "stickiness": Decimal(dau) / Decimal(mau) if mau else 0,
            "signups": int(((of_day.event_type == "track") & (of_day.event_name == "user_signed_up")).sum()),
            "new_people": first_activity.get(day, 0),
            "events": int(of_day.is_activity.sum()),
            "revenue": sum((r for r in purchases.revenue if r is not None), Decimal(0)),
            "mrr": sum(_mrr_on(changes, day).values(), Decimal(0)),
            "sessions": session_starts.get(day, 0),
        }
        for name, value in values.items():
            result[(day, name)] = q6(value)
        day += timedelta(days=1)
    return result


def funnel_steps(frame: pd.DataFrame, window: timedelta = timedelta(days=14)) -> dict:
    """(cohort_date, step_index) -> (persons, median seconds from previous) for the default funnel."""
    records = frame.to_dict("records")
    by_person: dict[str, list[list[datetime]]] = defaultdict(lambda: [[] for _ in DEFAULT_FUNNEL])
    for event in records:
        for index, (_, matches) in enumerate(DEFAULT_FUNNEL):
            if matches(event):
                by_person[event["person_id"]][index].append(event["event_at"])
    reached: dict[tuple[date, int], list] = defaultdict(list)
    for times in by_person.values():
        if not times[0]:
            continue
        entry = min(times[0])
        previous = entry
        reached[(entry.date(), 1)].append(None)
        for index in range(1, len(DEFAULT_FUNNEL)):
            candidates = [t for t in times[index] if previous <= t <= entry + window]
            if not candidates:
                break
            at = min(candidates)
            reached[(entry.date(), index + 1)].append((at - previous).total_seconds())
            previous = at
    return {key: (len(values), median(values) if key[1] > 1 else None) for key, values in reached.items()}


def _period_start(day: date, grain: str) -> date:
    return day - timedelta(days=day.weekday()) if grain == "week" else day.replace(day=1)


def _period_number(start: date, period: date, grain: str) -> int:
    if grain == "week":
        return (period - start).days // 7
    return (period.year - start.year) * 12 + period.month - start.month


def cohort_retention(frame: pd.DataFrame, users: pd.DataFrame) -> dict:
    last_day = frame.event_date.max()
    active_days = frame[frame.is_activity].groupby("person_id").event_date.agg(set).to_dict()
    result = {}
    for grain in ("week", "month"):
        cohorts: dict[date, list[str]] = defaultdict(list)
        for person, row in users.iterrows():
            cohort_at = row.signed_up_at if pd.notna(row.signed_up_at) else row.first_activity_at
            if pd.notna(cohort_at):
                cohorts[_period_start(cohort_at.date(), grain)].append(person)
        for start, people in cohorts.items():
            last_n = _period_number(start, _period_start(last_day, grain), grain)
            periods = {
                person: {
                    _period_number(start, _period_start(d, grain), grain)
                    for d in active_days.get(person, ())
                    if _period_start(d, grain) >= start
                }
                for person in people
            }
            for n in range(last_n + 1):
                retained = sum(1 for p in people if n in periods[p])
                unbounded = sum(1 for p in people if periods[p] and max(periods[p]) >= n)
                result[(grain, start, n)] = (len(people), retained, unbounded)
    return result


def _months(first: date, last: date) -> list[date]:
    months, month = [], first.replace(day=1)
    while month <= last:
        months.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return months


def fct_mrr(frame: pd.DataFrame) -> dict:
    changes = mrr_changes(frame)
    months = _months(frame.event_date.min(), frame.event_date.max())
    result = {}
    for person, group in changes.groupby("person_id"):
        history = list(zip(group.changed_at, group.mrr, strict=True))
        previous, paid_before, started = Decimal(0), False, False
        for month in months:
            month_end = (month + timedelta(days=32)).replace(day=1)
            set_before = [value for at, value in history if at.date() < month_end]
            value = set_before[-1] if set_before else Decimal(0)
            if not started and value > 0:
                started = True
            if started:
                if previous == 0 and value > 0:
                    category = "reactivation" if paid_before else "new"
                elif previous > 0 and value == 0:
                    category = "churn"
                elif value > previous:
                    category = "expansion"
                elif value < previous:
                    category = "contraction"
                else:
                    category = None
                result[(person, month)] = (q6(value), q6(previous), category)
            paid_before = paid_before or value > 0
            previous = value
    return result


def revenue_monthly(frame: pd.DataFrame, mrr_rows: dict) -> dict:
    months = _months(frame.event_date.min(), frame.event_date.max())
    result = {}
    for month in months:
        rows = [v for (_, m), v in mrr_rows.items() if m == month]
        mrr = sum((v[0] for v in rows), Decimal(0))
        start_mrr = sum((v[1] for v in rows), Decimal(0))
        moved = defaultdict(lambda: Decimal(0))
        counted = defaultdict(int)
        for value, previous, category in rows:
            if category:
                moved[category] += abs(value - previous)
                counted[category] += 1
        customers = sum(1 for v in rows if v[0] > 0)
        start_customers = sum(1 for v in rows if v[1] > 0)
        logo_churn = Decimal(counted["churn"]) / start_customers if start_customers else None
        arpu = mrr / customers if customers else None
        result[month] = {
            "mrr": q6(mrr),
            "arr": q6(mrr * 12),
            "new_mrr": q6(moved["new"]),
            "expansion_mrr": q6(moved["expansion"]),
            "contraction_mrr": q6(moved["contraction"]),
            "churned_mrr": q6(moved["churn"]),
            "reactivation_mrr": q6(moved["reactivation"]),
            "customers": customers,
            "new_customers": counted["new"],
            "churned_customers": counted["churn"],
            "logo_churn_rate": q6(logo_churn) if logo_churn is not None else None,
            "revenue_churn_rate": q6((moved["churn"] + moved["contraction"]) / start_mrr) if start_mrr else None,
            "net_revenue_retention": (
                q6((start_mrr + moved["expansion"] - moved["contraction"] - moved["churn"]) / start_mrr)
                if start_mrr
                else None
            ),
            "arpu": q6(arpu) if arpu is not None else None,
            "ltv": q6(arpu / logo_churn) if logo_churn and arpu is not None else None,
        }
    return result
