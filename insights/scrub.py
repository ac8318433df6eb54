"""Erasure in the columnar copy (`analyticspro forget`, warehouse/erasure.py): the files holding a person's rows are
written again without them, under new names (store.py has the copy's layout)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common.locks import advisory_lock
from common.settings import Settings
from insights.store import INSIGHTS_LOCK, MANIFEST, Manifest, remove_unlisted, store_dir, write_parquet


def scrub_store(settings: Settings, identities: list[str], say: Callable[[str], None] = print) -> int:
    """Erasure (`analyticspro forget`): rewrite every file of the copy holding a row of these person, user or
    anonymous ids without it (and without the id as a row's `previous_person_id`), and delete the old files at once
    (no grace period: nothing of theirs may stay on disk). Every file of a day it touches gets a new name, so an
    engine holding the day reads it again whole rather than taking the files as deltas. Returns the rows removed. An
    engine holding the copy in memory drops them at its next refresh."""
    folder = store_dir(settings)
    if not (folder / MANIFEST).exists():
        return 0
    removed = 0
    wanted = pa.array(sorted(set(identities)), pa.string())
    with advisory_lock(settings.database_url, INSIGHTS_LOCK, say=say):
        manifest = Manifest.read(folder)
        generation = manifest.generation + 1
        entries = [(f"events/{day}", entry) for day, entry in manifest.days.items()]
        entries += [("persons", manifest.persons)] if manifest.persons else []
        changed = False
        for stem, entry in entries:
            scrubbed: dict[int, pa.Table] = {}
            for position, name in enumerate(entry["files"]):
                table = pq.read_table(folder / name)
                theirs = pc.is_in(table.column("person_id"), value_set=wanted)
                for column in ("user_id", "anonymous_id"):
                    if column in table.column_names:
                        theirs = pc.or_(theirs, pc.fill_null(pc.is_in(table.column(column), value_set=wanted), False))
                count = pc.sum(pc.cast(theirs, pa.int64())).as_py() or 0
                mentioned = False
                if "previous_person_id" in table.column_names:
                    previous = table.column("previous_person_id")
                    named = pc.fill_null(pc.is_in(previous, value_set=wanted), False)
                    if pc.any(named).as_py():
                        mentioned = True
                        blanked = pc.if_else(named, pa.scalar(None, pa.string()), previous)
                        index = table.schema.get_field_index("previous_person_id")
                        table = table.set_column(index, "previous_person_id", blanked)
                if count or mentioned:
                    scrubbed[position] = table.filter(pc.invert(theirs))
                    removed += count
            if not scrubbed:
                continue
            changed = True
            files = []
            for position, name in enumerate(entry["files"]):
                files.append(f"{stem}.{generation}.{position}.parquet")
                if position in scrubbed:
                    write_parquet(folder, files[-1], scrubbed[position])
                else:  # unchanged, under a new name (a link: no copy of the bytes)
                    os.link(folder / name, folder / files[-1])
            entry["files"] = files
            # the next sync writes it again in full from PostgreSQL (or the scrubbed archive)
            entry.update(fingerprint="", built_at=None)
        if changed:
            manifest.generation = generation
            manifest.write(folder)
        if removed:
            say(f"insights: removed {removed:,} row(s) from the columnar copy")
        remove_unlisted(folder, manifest, grace_seconds=0)
    return removed
