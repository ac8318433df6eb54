"""Launching Dagster runs from a process (the CLI, bench, tests): which daily partitions need a run, on which engine
and executor, and the run itself, recorded in DAGSTER_HOME like a run started from the UI."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date

import dagster as dg
from dagster._core.definitions import reconstruct
from dagster._core.storage.tags import PARTITION_NAME_TAG as PARTITION_TAG

from common.console import say as say_line
from common.settings import get_settings, utc_today
from ingestion.bucket import object_date
from ingestion.events import configured_sources, unloaded_objects
from orchestration.defs.storage import ARCHIVE_JOB
from orchestration.defs.transform.project import analyticspro_dbt_project
from orchestration.engines import current_engine, current_executor, use_engine
from orchestration.instance import prepare_dagster_home
from orchestration.partitions import NEW_DATA_TAGS, partition_range_tags

Say = Callable[[str], None]


def new_data_days(sources: list[str]) -> list[date]:
    """The daily partitions of the batch objects not loaded yet, as far as a listing after the cursor sees (what
    `materialize` says it will fold in; a sweep, when one is due, is the run's load's to make), sorted."""
    settings = get_settings()
    today = utc_today()
    days: set[date] = set()
    for source in sources:
        if not source.startswith("kinesis://"):
            unloaded = unloaded_objects(source)
            days |= {object_date(item, settings.partitions_start_date, today) for item in unloaded}
    return sorted(days)


def forget_reconstructed_jobs() -> None:
    """Dagster keeps the last job it rebuilt from a code pointer for the life of the process (lru_cache on
    ReconstructableJob): a second materialize in one process (an engine or executor changed in between) would run
    the first one's job. Clear it so the job is built from the environment as it is now."""
    for cls in (reconstruct.ReconstructableJob, reconstruct.ReconstructableRepository):
        for name in dir(cls):
            cached = getattr(cls, name, None)
            if callable(getattr(cached, "cache_clear", None)):
                cached.cache_clear()


def run_materialize(
    *,
    window: tuple[date, date] | None = None,
    log_level: str = "INFO",
    full_refresh: bool = False,
    engine: str | None = None,
    say: Say = say_line,
) -> bool:
    """Materialize every load-and-transform asset through Dagster, as one run recorded in DAGSTER_HOME: over the
    daily partitions `window` (first, last) when given (a single-run backfill that rebuilds exactly those dates),
    else today's partition folding in everything new (every object not loaded yet, whatever its day: late data for
    any number of old days in the same run). On the engine given (default ANALYTICSPRO_ENGINE, else postgres) and
    the executor DAGSTER_EXECUTOR names; True when the run succeeded."""
    use_engine(engine or current_engine())
    executor = current_executor()
    prepare_dagster_home()
    say("checking the dbt manifest (dbt parse if models changed)")
    analyticspro_dbt_project(refresh=True)
    if window is None:
        today = utc_today()
        late = [day for day in new_data_days(configured_sources()) if day != today]
        if late:
            shown = ", ".join(d.isoformat() for d in late[:10]) + (
                f" and {len(late) - 10} more" if len(late) > 10 else ""
            )
            say(f"new objects for {len(late)} earlier day(s) ({shown}): folded into today's run")
    say(f"loading Dagster definitions (marts on {os.environ['ANALYTICSPRO_ENGINE']}, {executor} executor)")
    # Deliberately here: the definitions read the dbt manifest prepared just above, and the engine set above.
    from orchestration.definitions import MATERIALIZE_ALL_JOB, build_definitions, resolved_materialize_all_job

    defs = build_definitions()  # from the environment now (not whatever it was when the module was imported)
    job = defs.resolve_job_def(MATERIALIZE_ALL_JOB)
    run_config: dict = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    run_config["ops"] = {"dbt_models": {"config": {"full_refresh": full_refresh}}}
    if window is None:
        span, tags = (
            f"{utc_today()} (and everything new)",
            dict(NEW_DATA_TAGS, **{PARTITION_TAG: utc_today().isoformat()}),
        )
    else:
        first, last = window
        span, tags = (first.isoformat() if first == last else f"{first} .. {last}"), partition_range_tags(first, last)
    steps = "load -> lake -> dbt on spark" if os.environ["ANALYTICSPRO_ENGINE"] == "spark" else "load -> dbt"
    say(f"materializing job {MATERIALIZE_ALL_JOB!r} for the daily partitions {span}: {steps} -> hot metrics")
    with dg.DagsterInstance.get() as instance:
        if executor == "in_process":
            result = job.execute_in_process(instance=instance, run_config=run_config, tags=tags, raise_on_error=False)
        else:  # step processes (or Celery workers, Kubernetes jobs) rebuild the job from its module
            forget_reconstructed_jobs()
            result = dg.execute_job(
                dg.reconstructable(resolved_materialize_all_job),
                instance=instance,
                run_config=run_config,
                tags=tags,
                raise_on_error=False,
            )
    if not result.success:
        failed = [event.step_key for event in result.all_events if event.is_step_failure]
        say(
            f"run {result.run_id} FAILED at {', '.join(failed) or 'run level'}; see the messages above or "
            f"open the run in the Dagster UI (`make dev`)"
        )
        return False
    say(f"run {result.run_id} succeeded")
    return True


def run_archive(say: Say = say_line) -> bool:
    """Run the job `archive_partitions` in this process: fct_events days older than WARM_DAYS to the cold tier."""
    prepare_dagster_home()
    # Deliberately here: the definitions read the dbt manifest (built by an earlier materialize).
    from orchestration.definitions import build_definitions

    defs = build_definitions()
    say(f"moving fct_events days older than WARM_DAYS={get_settings().warm_days} to the cold tier")
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(ARCHIVE_JOB).execute_in_process(instance=instance, raise_on_error=False)
    if not result.success:
        say(f"run {result.run_id} FAILED; see the messages above or open it in the Dagster UI (`make dev`)")
        return False
    say(f"run {result.run_id} succeeded")
    return True
