"""The Celery app `analyticspro worker` runs (`celery -A orchestration.celery_app worker`): dagster-celery's app
and tasks, with one change: its pool processes may start processes of their own.

Celery's prefork pool marks its processes daemonic, and Python forbids a daemonic process to start children, yet
a step does: the bucket load parses in a process pool (ingestion/chunks.py) and dlt normalizes in one. The
pool's processes are still ended by their worker (and the load's processes follow their parent when it dies).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import process as mp_process
from typing import Any

from celery.signals import worker_process_init
from dagster_celery.app import app, execute_job, execute_plan, resume_job

__all__ = ["app", "execute_job", "execute_plan", "resume_job"]


@worker_process_init.connect
def allow_child_processes(**_: Any) -> None:
    """A pool process starts: clear its daemon flag, and give it the standard library's kind of authentication key
    (billiard's refuses to be handed to a process the standard library spawns). Billiard's process object is the
    standard library's current process too, so one change serves both."""
    process = multiprocessing.current_process()
    process._config["daemon"] = False  # noqa: SLF001
    process._config["authkey"] = mp_process.AuthenticationString(bytes(process.authkey))  # noqa: SLF001
