"""How AnalyticsPro's schedules and sensors are declared: in UTC, and running as soon as the code location loads
(a fresh deployment needs nobody to switch them on in the UI)."""

from __future__ import annotations

from typing import Any

import dagster as dg


def utc_schedule(cron_schedule: str, **target: Any) -> Any:
    """@dg.schedule on `cron_schedule` in UTC, running by default; `target` names the job (job= or job_name=)."""
    return dg.schedule(
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        **target,
    )


def running_sensor(job_name: str, minimum_interval_seconds: int) -> Any:
    """@dg.sensor for `job_name`, evaluated every `minimum_interval_seconds`, running by default."""
    return dg.sensor(
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
