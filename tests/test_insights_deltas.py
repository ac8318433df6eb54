"""The engine taking a copy's deltas (store.py writes the rows changed since a day was written as one more file of
the day; engine.py re-reads only the persons a delta touches): after rounds of re-stitched persons, changed rows,
late events and events at one instant, the engine that took each delta holds, person by person and in `rk` order,
exactly the latest version of every message sorted by (time, message id) — the copy read from scratch in plain
Python — and answers as an engine that loads the whole copy at once; so does an engine that takes several deltas
of a day at once, and one that catches up after an erasure rewrote files it had not read yet. The copy is written
here (PostgreSQL only holds the erasure's lock)."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from insights.engine import Engine
from insights.scrub import scrub_store
from insights.store import EVENT_SCHEMA, Manifest, store_dir

DAYS = [date(2026, 5, 1) + timedelta(days=n) for n in range(3)]
NAMES = ["page", "x_view", "x_signup", "x_buy"]


def _event(rng: random.Random, number: int, person: str, day: date) -> dict:
    # a few instants only, so a person often has several events at one instant (ties go by message id)
    at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=rng.choice([1, 5, 5, 9, 13]))
    name = rng.choice(NAMES)
    return {
        "person_id": person,
        "event_at": at,
        "message_id": f"m{number:05d}-{rng.randrange(10**6):06d}",
        "event_date": day,
        "event_type": "page" if name == "page" else "track",
        "event_name": None if name == "page" else name,
        "is_activity": True,
        "page_path": "/" if name == "page" else None,
        "properties": json.dumps({"v": 0}),
        "user_id": None if person.startswith("anon") else person,
        "anonymous_id": f"anon-{person}" if not person.startswith("anon") else person,
        "previous_person_id": None,
    }


def _write(folder: Path, name: str, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: (r["person_id"], r["event_at"], r["message_id"]))
    columns = {f.name: [row.get(f.name) for row in rows] for f in EVENT_SCHEMA}
    pq.write_table(pa.table(columns, schema=EVENT_SCHEMA), folder / name)


def _held(engine: Engine) -> list[tuple]:
    """(person, time, properties) of every event the engine holds, by person in `rk` order."""
    cursor = engine._db.cursor()
    rows = cursor.execute(
        "select k.person_id, e.event_at, e.properties from events as e join person_keys as k using (person_key) "
        "order by k.person_id, e.rk"
    ).fetchall()
    cursor.close()
    return [(person, at.replace(tzinfo=UTC), properties) for person, at, properties in rows]


def _expected(latest: dict[str, dict]) -> list[tuple]:
    rows = sorted(latest.values(), key=lambda r: (r["person_id"], r["event_at"], r["message_id"]))
    return [(r["person_id"], r["event_at"], r["properties"]) for r in rows]


def _add_delta(folder: Path, manifest: Manifest, latest: dict, generation: int, changed: dict[date, list]) -> None:
    for day, rows in changed.items():
        rows = list({row["message_id"]: row for row in rows}.values())  # one version per message and delta
        latest.update({row["message_id"]: row for row in rows})
        name = f"events/{day}.{generation}.parquet"
        _write(folder, name, rows)
        manifest.days[day.isoformat()]["files"].append(name)
    manifest.generation = generation
    manifest.write(folder)


def _move(row: dict, person: str) -> dict:
    return {**row, "person_id": person, "user_id": person, "previous_person_id": row["person_id"]}


def test_an_engine_taking_deltas_holds_what_a_fresh_load_holds(tmp_path, monkeypatch, settings):
    monkeypatch.setenv("INSIGHTS_DIR", str(tmp_path))
    folder = store_dir(settings)
    rng = random.Random(5)
    (folder / "events").mkdir(parents=True)
    persons = [f"user-{n:02d}" for n in range(12)] + [f"anon-{n:02d}" for n in range(12)]
    latest: dict[str, dict] = {}  # message id -> its latest version: the reference
    manifest = Manifest(generation=1)
    for day in DAYS:
        rows = [_event(rng, len(latest) + n, rng.choice(persons), day) for n in range(120)]
        latest.update({row["message_id"]: row for row in rows})
        name = f"events/{day}.1.parquet"
        _write(folder, name, rows)
        manifest.days[day.isoformat()] = {"files": [name], "rows": len(rows), "tier": "warm"}
    manifest.write(folder)
    engine = Engine(folder, threads=2)
    engine.refresh()
    lagging = Engine(folder, threads=2)  # takes every other round's deltas together
    lagging.refresh()

    for generation in range(2, 6):
        changed: dict[date, list[dict]] = {}
        # an anonymous person identifies: every message of theirs, on every day, moves to a user
        anonymous = rng.choice(sorted({r["person_id"] for r in latest.values() if r["person_id"].startswith("anon")}))
        user = rng.choice(persons[:12])
        for row in [r for r in latest.values() if r["person_id"] == anonymous]:
            changed.setdefault(row["event_date"], []).append(_move(row, user))
        # messages moved before move again, to another person
        for row in [r for r in latest.values() if r["previous_person_id"]][:3]:
            changed.setdefault(row["event_date"], []).append(_move(row, rng.choice(persons[:12])))
        # rows changed in place (same person), and late events, some at an instant the person already has
        for row in rng.sample(sorted(latest.values(), key=lambda r: r["message_id"]), 5):
            edited = {**row, "properties": json.dumps({"v": generation}), "previous_person_id": row["person_id"]}
            changed.setdefault(row["event_date"], []).append(edited)
        for n in range(6):
            day = DAYS[n % 2]
            changed.setdefault(day, []).append(_event(rng, 10_000 * generation + n, rng.choice(persons), day))
        _add_delta(folder, manifest, latest, generation, changed)
        assert engine.refresh()
        assert engine.changes == {"days": 0, "deltas": len(changed)}
        assert _held(engine) == _expected(latest)
        if generation % 2:
            assert lagging.refresh() and lagging.changes["days"] == 0
            assert _held(lagging) == _expected(latest)

    fresh = Engine(folder, threads=2)
    fresh.refresh()
    assert _held(fresh) == _held(engine)
    funnel = {
        "kind": "funnel",
        "from": DAYS[0].isoformat(),
        "to": DAYS[-1].isoformat(),
        "steps": [{"event": "x_view"}, {"event": "x_signup"}, {"event": "x_buy"}],
    }
    paths = {"kind": "paths", "from": DAYS[0].isoformat(), "to": DAYS[-1].isoformat(), "start": {"page": "/"}}
    for spec in (funnel, paths):
        assert engine.ask(spec) == fresh.ask(spec)
    assert engine.ask(funnel)["steps"][0]["persons"] > 0

    # an erasure rewrites files an engine has not read yet: message m is X's in the day's first file, E's in a
    # delta, Z's in the next; the engine that last loaded the day before both must not keep m for X after E is erased
    behind = Engine(folder, threads=2)
    behind.refresh()
    m = next(r for r in latest.values() if r["event_date"] == DAYS[2] and r["person_id"].startswith("user"))
    x, e, z = m["person_id"], "user-erased", "user-z"
    _add_delta(folder, manifest, latest, 6, {DAYS[2]: [_move(m, e), _event(rng, 60_000, e, DAYS[2])]})
    _add_delta(folder, manifest, latest, 7, {DAYS[2]: [_move(latest[m["message_id"]], z)]})
    assert scrub_store(settings, [e], say=lambda _: None) == 2  # E's event and E's version of m
    latest = {key: row for key, row in latest.items() if e not in (row["person_id"], row["user_id"])}
    assert latest[m["message_id"]]["person_id"] == z and x != z
    assert behind.refresh()
    assert behind.changes["days"] == 1  # the erasure renamed every file of the day: read again whole
    assert _held(behind) == _expected(latest)
    files = Manifest.read(folder).days[DAYS[2].isoformat()]["files"]
    previous = pq.read_table(folder / files[-1]).column("previous_person_id").to_pylist()
    assert e not in previous  # nothing of theirs stays on disk, not even as whose a message was
