"""Exports of query-builder questions: the exact answer (the insights engine's) as CSV in the bucket, written by the
Dagster job `export_insight` so the run, its logs and its outcome are in the Dagster UI like every other run.

The API starts each export as its own process (`python -m orchestration.defs.exports <id> <question>`), which
executes the job against the Dagster instance (DAGSTER_HOME) with the tag analyticspro/export_id; exports
queue on a PostgreSQL advisory lock, one at a time. exportStatus reads the run from the instance: its status,
and the tags the job sets as it goes (phase, rows, location). The CSV lands at
`<EVENTS_BUCKET_URL>/exports/insight-<id>.csv` with the columns bucket, group, events, persons.
"""

import csv
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import asdict
from datetime import date
from typing import Any

import dagster as dg
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from common.locks import advisory_lock
from common.storage import bucket_filesystem
from dashboards.config import DashboardSettings
from dashboards.insight import EXPORT_MAX_DAYS, Filter, Insight, InsightError, insight_rows, to_trends
from insights.engine import Engine
from insights.store import store_dir

EXPORT_TAG = "analyticspro/export_id"
PHASE_TAG = "analyticspro/export_phase"
ROWS_TAG = "analyticspro/export_rows"
LOCATION_TAG = "analyticspro/export_location"
EXPORT_LOCK = "analyticspro.export"
CSV_COLUMNS = ("bucket", "group", "events", "persons")

_started: dict[str, subprocess.Popen] = {}
_started_lock = threading.Lock()


def question_to_json(question: Insight) -> str:
    payload = asdict(question)
    payload["date_from"] = question.date_from.isoformat()
    payload["date_to"] = question.date_to.isoformat()
    return json.dumps(payload, sort_keys=True)


def question_from_json(text: str) -> Insight:
    payload = json.loads(text)
    return Insight(
        event=payload["event"],
        date_from=date.fromisoformat(payload["date_from"]),
        date_to=date.fromisoformat(payload["date_to"]),
        filters=tuple(Filter(**item) for item in payload["filters"]),
        group_by=payload["group_by"],
        sample=None,
    )


def export_location(settings: DashboardSettings, export_id: str) -> str:
    return f"{settings.base.events_bucket_url.rstrip('/')}/exports/insight-{export_id}.csv"


def write_export(
    settings: DashboardSettings, export_id: str, question: Insight, say=print, tag=None
) -> tuple[str, int]:
    """Answer the question exactly with the insights engine (over every event) and write the CSV; returns (location,
    rows)."""
    tag = tag or (lambda tags: None)
    tag({PHASE_TAG: "queued"})
    with advisory_lock(settings.database_url, EXPORT_LOCK, say=say):
        tag({PHASE_TAG: "querying"})
        engine = Engine(store_dir(settings.base))
        engine.refresh()
        rows = insight_rows(question, engine.run(to_trends(question, EXPORT_MAX_DAYS)))["rows"]
    tag({PHASE_TAG: "writing"})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        bucket, group = row["bucket"], row["group"]
        writer.writerow(
            (
                "" if bucket is None else bucket.isoformat(),
                "" if group is None else group,
                row["events"],
                row["persons"],
            )
        )
    location = export_location(settings, export_id)
    fs = bucket_filesystem(settings.base)
    parent = location.rsplit("/", 1)[0]
    if "://" not in location:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(location, "w") as handle:
        handle.write(buffer.getvalue())
    say(f"export {export_id}: {len(rows):,} rows written to {location}")
    tag({PHASE_TAG: "done", ROWS_TAG: str(len(rows)), LOCATION_TAG: location})
    return location, len(rows)


def start_export(settings: DashboardSettings, question: Insight) -> dict[str, Any]:
    """Start the export's process; it creates the Dagster run. Returns the job as exportStatus shows it."""
    with _started_lock:  # poll() reaps the processes of finished exports (no zombies)
        for process in _started.values():
            process.poll()
    export_id = uuid.uuid4().hex
    environment = dict(os.environ)
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestration.defs.exports", export_id, question_to_json(question)],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    with _started_lock:
        _started[export_id] = process
    return {"id": export_id, "status": "QUEUED", "run_id": None, "location": None, "rows": None, "message": None}


def export_status(settings: DashboardSettings, export_id: str) -> dict[str, Any]:
    if not export_id.isalnum() or len(export_id) > 64:
        raise InsightError(f"{export_id!r} is not an export id")
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=RunsFilter(tags={EXPORT_TAG: export_id}), limit=1)
        failure = _failure(instance, runs[0].run_id) if runs and runs[0].status == DagsterRunStatus.FAILURE else None
    with _started_lock:
        process = _started.get(export_id)
    if not runs:
        if process is None:
            raise InsightError(f"no export {export_id!r}: start one with exportInsight")
        code = process.poll()
        if code not in (None, 0):
            return {
                "id": export_id, "status": "FAILURE", "run_id": None, "location": None, "rows": None,
                "message": f"the export process exited with code {code} before its run started; see the API's log",
            }  # fmt: skip
        return {"id": export_id, "status": "QUEUED", "run_id": None, "location": None, "rows": None, "message": None}
    if process is not None and process.poll() is not None:
        with _started_lock:
            _started.pop(export_id, None)
    run = runs[0]
    status = {
        DagsterRunStatus.SUCCESS: "SUCCESS",
        DagsterRunStatus.FAILURE: "FAILURE",
        DagsterRunStatus.CANCELED: "FAILURE",
        DagsterRunStatus.QUEUED: "QUEUED",
        DagsterRunStatus.NOT_STARTED: "QUEUED",
    }.get(run.status, "STARTED")
    tags = run.tags
    message = tags.get(PHASE_TAG)
    if status == "FAILURE":
        message = f"the export failed: {failure or 'see the run'} (run {run.run_id} in the Dagster UI, `make dev`)"
    return {
        "id": export_id,
        "status": status,
        "run_id": run.run_id,
        "location": tags.get(LOCATION_TAG) if status == "SUCCESS" else None,
        "rows": int(tags[ROWS_TAG]) if ROWS_TAG in tags else None,
        "message": message,
    }


def _failure(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The first error message of a failed run (from its step failure event)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data if record.dagster_event else None
        error = data.error if data is not None else None
        while error is not None and error.cause is not None:  # the root cause, not Dagster's wrapper
            error = error.cause
        if error is not None:
            return error.message.strip().splitlines()[-1]
    return None
