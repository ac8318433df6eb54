"""The engine: an in-memory DuckDB holding the columnar copy (store.py), and the one place a spec is answered.

Loading turns the copy into what the questions want: each person id becomes a dense integer key (hashing and
joining integers is several times cheaper than strings), each event name an integer id (the dictionary lives in the
catalogue), time a plain UTC timestamp, and every row gets `rk` = (days since 1970 << 32) + a number that orders the
person's events of that day by (time, message id): its position in the day's file, sorted by (person, time, message
id), or, for the persons a delta touched, its rank among their events of the day. So among one person's events, `rk`
order is time order with ties by message id: "the earliest event" is min(rk), "the events after this one" are rk > its
rk; `rk` is never compared between persons. `refresh()` loads only what changed since the last load — new days, days
written again, and for a day that gained a delta only the persons it touches — inside one transaction, so a question
running meanwhile sees the old or the new copy, never half.

The dashboards service keeps one Engine and refreshes it when the manifest changes; the CLI makes one per command.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from insights import funnels, paths, people, retention, trends
from insights.filters import Catalogue, Compiler
from insights.spec import Spec, SpecError, parse_spec
from insights.store import Manifest, store_dir

SCHEMA = """
create table events (
    person_key integer not null,
    rk bigint not null,
    event_at timestamp not null,
    event_date date not null,
    event_id integer not null,
    is_activity boolean,
    page_path varchar,
    referrer varchar,
    utm_source varchar,
    utm_medium varchar,
    utm_campaign varchar,
    revenue double,
    properties varchar
);
create table person_keys (person_id varchar not null, person_key integer not null);
create table persons (
    person_key integer not null, plan varchar, country varchar, email varchar, user_id varchar, mrr double,
    signup_date date, is_identified boolean
);
"""
COLUMNS = (
    "person_id, event_at, message_id, event_date, event_name, is_activity, page_path, referrer, utm_source, "
    "utm_medium, utm_campaign, revenue, properties"
)
DAY_KEY = "(date_diff('day', date '1970-01-01', event_date)::bigint << 32)"  # rk's high half: days since 1970
KINDS = {
    "funnel": funnels.answer,
    "trends": trends.answer,
    "retention": retention.answer,
    "paths": paths.answer,
    "stickiness": people.stickiness,
    "lifecycle": people.lifecycle,
}


def read_copy(folder: Path) -> Manifest:
    """The copy's manifest; StoreMissing, saying how to make one, when there is no copy yet (both engines)."""
    manifest = Manifest.read(folder)
    if not manifest.generation:
        raise StoreMissing(
            f"no columnar copy of the events in {folder} yet: run `analyticspro materialize` "
            "(or `analyticspro query`), which writes it from PostgreSQL"
        )
    return manifest


def extend_catalogue(catalogue: Catalogue, folder: Path, manifest: Manifest, names: set[str | None]) -> Catalogue:
    """The catalogue with the copy's property keys and ids for event names not seen before (an id, once given, stays:
    the loaded rows carry it). Both engines (this one and spark.py) number events this way."""
    properties: dict[str, dict[str, str]] = {}
    if manifest.catalogue:
        for row in pq.read_table(folder / manifest.catalogue["file"]).to_pylist():
            properties.setdefault(row["event_name"], {})[row["property_key"]] = row["value_types"] or ""
    event_ids = dict(catalogue.event_ids)
    for name in sorted({name for name in names if name is not None} - set(event_ids)):
        event_ids[name] = len(event_ids) + 1
    return Catalogue(event_ids=event_ids, properties=properties)


def answer(spec: Spec, catalogue: Catalogue, fetch: Callable[[str, list], list[tuple]]) -> dict[str, Any]:
    """`spec`'s answer, its statements run by `fetch(statement, params)` (DuckDB's dialect, $n parameters)."""
    return KINDS[spec.kind](spec, Compiler(catalogue), fetch)


class StoreMissing(RuntimeError):
    """There is no columnar copy yet; the message says how to make one."""


class Engine:
    def __init__(self, folder: Path | None = None, threads: int | None = None) -> None:
        self.folder = folder or store_dir()
        self._db = duckdb.connect(":memory:", config={"threads": threads or os.cpu_count() or 1})
        self._db.execute(SCHEMA)
        # the database's own connection only hands out cursors; loading has a connection of its own, so a refresh
        # and any number of questions never share one (a DuckDB connection is not for two threads at once)
        self._loader = self._db.cursor()
        self._cursors = threading.Lock()
        self._refreshing = threading.Lock()
        self.generation = 0
        self.loaded: dict[str, tuple[str, ...]] = {}  # day -> its files
        self.persons_files: tuple[str, ...] = ()
        self.catalogue = Catalogue()
        self.events = 0
        self._next_person = 0
        self.load_seconds = 0.0
        self.phases: dict[str, float] = {}  # seconds by phase of the last refresh
        self.changes: dict[str, int] = {}  # what the last refresh loaded: whole days, and days that took a delta

    # -- loading ------------------------------------------------------------------------------------------------------
    def refresh(self, say: Callable[[str], None] | None = None) -> bool:
        """Load what changed in the copy since the last call; True when anything did."""
        with self._refreshing:
            manifest = read_copy(self.folder)
            if manifest.generation == self.generation:
                return False
            started = time.monotonic()
            wanted = {day: tuple(entry["files"]) for day, entry in manifest.days.items()}
            # a day whose files are the loaded ones and more takes only the new ones (deltas: store.py)
            extended = {
                day: files
                for day, files in wanted.items()
                if manifest.format >= 2
                and day in self.loaded
                and len(files) > len(self.loaded[day])
                and files[: len(self.loaded[day])] == self.loaded[day]
            }
            stale = sorted(day for day in self.loaded if wanted.get(day) != self.loaded[day] and day not in extended)
            new = sorted(day for day in wanted if self.loaded.get(day) != wanted[day] and day not in extended)
            if say and (new or extended):
                say(f"insights: loading {len(new)} day(s) of events into the engine, and changes to {len(extended)}")
            added = [name for day in new for name in wanted[day]]
            added += [name for day, files in extended.items() for name in files[len(self.loaded[day]) :]]
            catalogue = self._catalogue(manifest, added)
            persons = tuple(manifest.persons["files"]) if manifest.persons else self.persons_files
            # one transaction: a question meanwhile sees the copy before or after, persons and catalogue included
            with self._transaction():
                self._load_days(stale, {day: wanted[day] for day in new}, extended, catalogue)
                self.phases = {"days": round(time.monotonic() - started, 2)}
                if persons != self.persons_files:
                    self._load_persons(persons)
                    self.phases["persons"] = round(time.monotonic() - started - self.phases["days"], 2)
            self.catalogue, self.persons_files = catalogue, persons
            for day in stale:
                self.loaded.pop(day, None)
            self.loaded.update({day: wanted[day] for day in new})
            self.loaded.update(extended)
            self.changes = {"days": len(new), "deltas": len(extended)}
            self.generation = manifest.generation
            self.events = self._loader.execute("select count(*) from events").fetchone()[0]
            self.load_seconds = time.monotonic() - started
            return True

    def _files(self, names: list[str]) -> list[str]:
        return [str(self.folder / name) for name in names]

    def _catalogue(self, manifest: Manifest, new_files: list[str]) -> Catalogue:
        """The catalogue with the event names of `new_files` (the engine's own is replaced once they are loaded)."""
        files = self._files(new_files)
        found = (
            self._loader.execute(
                "select distinct event_name from read_parquet($1, union_by_name = true)", [files]
            ).fetchall()
            if files
            else []
        )
        return extend_catalogue(self.catalogue, self.folder, manifest, {name for (name,) in found})

    def _load_days(
        self,
        stale: list[str],
        new: dict[str, tuple[str, ...]],
        extended: dict[str, tuple[str, ...]],
        catalogue: Catalogue,
    ) -> None:
        """Inside refresh's transaction: drop the stale days, load the new ones, apply the deltas."""
        db = self._loader
        single = [files[0] for files in new.values() if len(files) == 1]
        several = [name for files in new.values() if len(files) > 1 for name in files]
        parts, params = [], []
        if single:  # a day in one file is sorted by (person, time, message id): its row number orders it
            params.append(self._files(single))
            parts.append(
                f"select {COLUMNS}, {DAY_KEY} + file_row_number as rk "
                f"from read_parquet(${len(params)}, file_row_number = true, union_by_name = true)"
            )
        if several:  # a day and the rows changed since: the latest version of each message, numbered in that order
            params.append(self._files(several))
            files = len(params)
            parts.append(
                f"""select {COLUMNS}, {DAY_KEY} + row_number() over (
                    partition by event_date order by person_id, event_at, message_id) as rk
                from read_parquet(${files}, filename = true, union_by_name = true)
                qualify row_number() over (
                    partition by event_date, message_id order by list_position(${files}, filename) desc) = 1"""
            )
        if stale:
            db.execute("delete from events where event_date in (select unnest($1::date[]))", [stale])
        if new or extended:
            db.execute("create or replace temp table event_names (event_name varchar, event_id integer)")
            db.executemany("insert into event_names values (?, ?)", list(catalogue.event_ids.items()))
        if new:
            db.execute(f"create or replace temp table staged as {' union all '.join(parts)}", params)
            self._add_person_keys("staged")
            self._insert_staged()
        if extended:
            self._apply_deltas(extended)

    def _insert_staged(self) -> None:
        self._loader.execute(
            """
            insert into events
            select k.person_key, s.rk, make_timestamp(epoch_us(s.event_at)), s.event_date,
                   coalesce(n.event_id, 0), s.is_activity, s.page_path, s.referrer, s.utm_source,
                   s.utm_medium, s.utm_campaign, s.revenue, s.properties
            from staged as s
            join person_keys as k on k.person_id = s.person_id
            left join event_names as n on n.event_name = s.event_name  -- identify, alias, group: id 0
            """
        )
        self._loader.execute("drop table staged")

    def _apply_deltas(self, extended: dict[str, tuple[str, ...]]) -> None:
        """Days loaded before that have new files of rows changed since (store.py's deltas). Only the persons a
        delta touches on its day are read again — those of its rows, and those its rows' messages belonged to
        (`previous_person_id`) — all their rows of that day, the latest version of each message; their rows in the
        engine are replaced and numbered again. `rk` then orders their day by (time, message id) as before: it
        is an order within a person, never compared between persons."""
        db = self._loader
        every = [(path, position) for files in extended.values() for position, path in enumerate(self._files(files))]
        fresh = self._files([name for day, files in extended.items() for name in files[len(self.loaded[day]) :]])
        db.execute("create or replace temp table day_files (filename varchar, position integer)")
        db.executemany("insert into day_files values (?, ?)", every)
        db.execute(
            """
            create or replace temp table touched as
            select distinct t.person_id, r.event_date
            from read_parquet($1, union_by_name = true) as r,
                 unnest([r.person_id, r.previous_person_id]) as t(person_id)
            where t.person_id is not null
            """,
            [fresh],
        )
        # every later version of a message on these days (the deltas are small: their message ids are few)
        db.execute(
            """
            create or replace temp table later as
            select r.message_id, r.event_date, f.position
            from read_parquet($1, filename = true, union_by_name = true) as r join day_files as f using (filename)
            """,
            [[name for name, position in every if position > 0]],
        )
        db.execute(
            f"""
            create or replace temp table staged as
            select {COLUMNS}, {DAY_KEY} + row_number() over (
                partition by person_id, event_date order by event_at, message_id) as rk
            from (
                select r.*, f.position
                from read_parquet($1, filename = true, union_by_name = true) as r
                join day_files as f using (filename)
                semi join touched as t on t.person_id = r.person_id and t.event_date = r.event_date
            ) as c
            where not exists (
                select 1 from later as v
                where v.message_id = c.message_id and v.event_date = c.event_date and v.position > c.position
            )
            """,
            [[name for name, _position in every]],
        )
        self._add_person_keys("staged")
        db.execute(
            """
            delete from events as e using (
                select k.person_key, t.event_date from touched as t join person_keys as k using (person_id)
            ) as t
            where e.person_key = t.person_key and e.event_date = t.event_date
            """
        )
        self._insert_staged()
        db.execute("drop table touched; drop table later; drop table day_files")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction on the loading connection: a question meanwhile sees all of a load or none of it."""
        self._loader.execute("begin")
        try:
            yield
        except BaseException:
            self._loader.execute("rollback")
            raise
        self._loader.execute("commit")

    def _add_person_keys(self, relation: str) -> None:
        """Give every person id of `relation` not seen before the next integer keys."""
        self._loader.execute(
            f"""
            insert into person_keys
            select person_id, $1 + row_number() over (order by person_id)
            from (select distinct person_id from {relation} where person_id is not null) as ids
            where person_id not in (select person_id from person_keys)
            """,
            [self._next_person],
        )
        self._next_person = self._loader.execute("select coalesce(max(person_key), 0) from person_keys").fetchone()[0]

    def _load_persons(self, names: tuple[str, ...]) -> None:
        """The persons' fields: from the files the engine has not read when the loaded ones are still listed first
        (store.py adds the persons changed since as one more file), else all of them again. Inside refresh's
        transaction."""
        db = self._loader
        loaded = self.persons_files
        more = bool(loaded) and names[: len(loaded)] == loaded
        db.execute(  # a person in several files: the latest file's row
            """
            create or replace temp table staged_persons as
            select * from read_parquet($1, filename = true)
            qualify row_number() over (partition by person_id order by list_position($1, filename) desc) = 1
            """,
            [self._files(list(names[len(loaded) :] if more else names))],
        )
        self._add_person_keys("staged_persons")
        if more:
            db.execute(
                "delete from persons where person_key in "
                "(select k.person_key from staged_persons join person_keys as k using (person_id))"
            )
        else:
            db.execute("delete from persons")
        db.execute(
            """
            insert into persons
            select k.person_key, s.plan, s.country, s.email, s.user_id, s.mrr, s.signup_date, s.is_identified
            from staged_persons as s join person_keys as k on k.person_id = s.person_id
            """
        )
        db.execute("drop table staged_persons")

    # -- answering ----------------------------------------------------------------------------------------------------
    def run(self, spec: Spec, timeout_seconds: float | None = None) -> dict[str, Any]:
        """The answer to `spec` (see docs/metrics.md, "Insights"); SpecError when it names what does not exist, or
        when it runs longer than `timeout_seconds` (it is interrupted)."""
        if not self.generation:
            self.refresh()
        with self._cursors:  # a connection of its own: questions run side by side, and beside a refresh
            cursor = self._db.cursor()
        timer = threading.Timer(timeout_seconds, cursor.interrupt) if timeout_seconds else None
        try:

            def fetch(statement: str, params: list[object]) -> list[tuple]:
                return cursor.execute(statement, params).fetchall()

            if timer is not None:
                timer.start()
            return answer(spec, self.catalogue, fetch)
        except duckdb.InterruptException:
            raise SpecError(
                f"the question ran longer than {timeout_seconds:g}s (INSIGHT_TIMEOUT_MS) and was stopped: narrow the "
                "date range or the steps' filters"
            ) from None
        finally:
            if timer is not None:
                timer.cancel()
            cursor.close()

    def check(self, spec: Spec) -> None:
        """Compile `spec` without running it: SpecError when it names an event or property that does not exist."""
        answer(spec, self.catalogue, lambda statement, params: [])

    def ask(self, data: object, max_days: int = 366) -> dict[str, Any]:
        """parse_spec then run: the answer to a question given as parsed JSON."""
        return self.run(parse_spec(data, max_days))

    def days(self) -> tuple[date, date] | None:
        """The first and last day the engine holds."""
        with self._cursors:
            cursor = self._db.cursor()
        with cursor:
            first, last = cursor.execute("select min(event_date), max(event_date) from events").fetchone()
        return (first, last) if first else None


__all__ = ["Engine", "SpecError", "StoreMissing", "answer", "extend_catalogue", "read_copy"]
