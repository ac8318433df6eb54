"""The bad-input corpus, mixed with good events in one batch object, loaded through the real pipeline: every bad
line lands in raw.rejected_events with its reason and payload, every good one in raw.events, and the counts add up.
Re-running the load (and a forced rescan) changes nothing."""

from __future__ import annotations

import psycopg2

from ingestion.events import load_events
from tests.test_validation import BAD_INPUTS, corpus_batch


def test_corpus_loads_with_every_rejection_recorded(own_database, tmp_path):
    folder = tmp_path / "bucket" / "events" / "2026" / "04" / "01"
    folder.mkdir(parents=True)
    data, good, bad = corpus_batch()
    (folder / "mixed.jsonl.gz").write_bytes(data)

    summary = load_events(str(tmp_path / "bucket"), progress=False)
    assert (summary.lines_read, summary.events, summary.rejected, summary.stored) == (good + bad, good, bad, good)
    assert summary.lines_read == summary.events + summary.rejected

    with psycopg2.connect(own_database.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("select message_id from raw.events order by message_id")
        assert [m for (m,) in cursor.fetchall()] == sorted(f"good-{n}" for n in range(good))
        cursor.execute("select source_position, reason, payload, rejected_at is not null from raw.rejected_events")
        rejected = {position: (reason, payload, stamped) for position, reason, payload, stamped in cursor.fetchall()}
        cursor.execute("select lines_read, events, rejected from raw.loaded_objects")
        assert cursor.fetchall() == [(good + bad, good, bad)]
    connection.close()
    # bad input n sits on line 2n + 2 (after good event n)
    for n, (payload, words) in enumerate(BAD_INPUTS):
        reason, stored_payload, stamped = rejected[f"line {2 * n + 2}"]
        assert words in reason and stamped
        assert stored_payload == payload.decode("utf-8", errors="backslashreplace").rstrip("\n")

    again = load_events(str(tmp_path / "bucket"), progress=False)
    assert (again.lines_read, again.stored) == (0, 0)
    rescan = load_events(str(tmp_path / "bucket"), rescan=True, progress=False)
    assert (rescan.lines_read, rescan.events, rescan.rejected, rescan.stored) == (good + bad, good, bad, 0)
    assert rescan.rejected_stored == 0
